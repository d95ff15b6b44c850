"""Pixels for the preview: a stored instance as an 8-bit picture, window/level applied.

Needs the ``preview`` extra (numpy, pylibjpeg for compressed syntaxes, textual-image);
the rest of the UI works without it and says how to install it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

INSTALL = "the preview needs the preview extra: pip install 'qrclient[preview]'"
_MODULES = ("numpy", "PIL", "textual_image")


def missing() -> str | None:
    """Why there is no preview (how to install it), or None when there is one."""
    absent = [name for name in _MODULES if importlib.util.find_spec(name) is None]
    return f"{INSTALL} (missing: {', '.join(absent)})" if absent else None


class PreviewError(ValueError):
    """This file has no picture to show: one line saying why."""


def picture(path: Path) -> tuple[Image, str]:
    """The first frame of ``path`` as an 8-bit picture, and a caption: its number, size
    and the window/level used (the data set's own, else its full range)."""
    import numpy as np
    import pydicom
    from PIL import Image as PILImage
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
    except (OSError, InvalidDicomError) as exc:
        raise PreviewError(f"cannot read {path.name}: {exc}") from None
    if "PixelData" not in dataset:
        raise PreviewError(f"{path.name} has no pixels (a {dataset.get('Modality', '?')} object)")
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # a syntax without a decoder, damaged data: say which
        syntax = dataset.file_meta.get("TransferSyntaxUID", "?")
        name = getattr(syntax, "name", syntax)
        raise PreviewError(f"cannot decode {path.name} ({name}): {exc}") from None
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    number = dataset.get("InstanceNumber", "")
    size = f"{dataset.get('Columns', '?')}x{dataset.get('Rows', '?')}"
    if samples == 3:
        image = PILImage.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB")
        return image, f"#{number} {size} colour"
    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        values = apply_voi_lut(values, dataset, index=0).astype(np.float64)
        centre, width = _first(dataset.WindowCenter), _first(dataset.WindowWidth)
        window = f"W {width:g} / L {centre:g}"
    else:
        window = "full range"
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255 if high > low else values * 0
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 255 - scaled  # MONOCHROME1: the smallest value is white
    image = PILImage.fromarray(scaled.astype(np.uint8), "L")
    return image, f"#{number} {size} {window}"


def _first(value: object) -> float:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return float(value[0])
    return float(str(value))


def series_order(paths: Sequence[Path]) -> list[Path]:
    """Files in InstanceNumber order (then by name); headers only are read."""
    import pydicom

    def key(path: Path) -> tuple[int, str]:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[0x00200013])
            return int(header.get("InstanceNumber", 0) or 0), path.name
        except Exception:  # unreadable: last, the preview says why when it gets there
            return 1 << 31, path.name

    return sorted(paths, key=key)

"""The demo PACS's sample archive: a few patients, studies and modalities, small images.

Deterministic (UIDs hashed in the ``qrclient-demo`` namespace) and built in memory in
a fraction of a second: the images are drawn row by row from a few filled ellipses.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from qrclient.demo.synthetic import (
    BITS_STORED,
    Archive,
    Implementation,
    InstanceSpec,
    PatientSpec,
    SeriesSpec,
    StudySpec,
    all_instances,
    build_dataset,
    build_series,
    hashed_uid,
)

NAMESPACE = "qrclient-demo"
IMAGE_SIZE = 64
IMPLEMENTATION = Implementation(hashed_uid(NAMESPACE, "implementation"), "QRCLIENT_DEMO")

# (modality, series description, image count)
_SeriesRow = tuple[str, str, int]
# (date, time, study description, series rows)
_StudyRow = tuple[str, str, str, tuple[_SeriesRow, ...]]
# (patient id, name, birth date, sex, charset, study rows)
_PatientRow = tuple[str, str, str, str, str | None, tuple[_StudyRow, ...]]

# Non-ASCII names in two character sets; shared name prefixes (DOE*) for wildcards.
# fmt: off
_PATIENTS: tuple[_PatientRow, ...] = (
    ("DEMO001", "DOE^JANE", "19800312", "F", None, (
        ("20230114", "091500", "CT CHEST", (("CT", "AXIAL", 8), ("CT", "CORONAL", 4))),
        ("20240302", "143000", "MR BRAIN", (("MR", "T1 SAG", 5), ("MR", "T2 AX", 5))),
    )),
    ("DEMO002", "MÜLLER^JÜRGEN", "19550707", "M", "ISO_IR 100", (
        ("20220610", "080000", "CR CHEST", (("CR", "PA", 1), ("CR", "LAT", 1))),
        ("20241120", "161000", "CT ABDOMEN", (("CT", "PORTAL VENOUS", 6),)),
    )),
    ("DEMO003", "山田^花子", "19921105", "F", "ISO_IR 192", (
        ("20250115", "103000", "US THYROID", (("US", "THYROID", 4),)),
    )),
    ("DEMO004", "DOE^JOHN", "19701224", "M", None, (
        ("20210930", "120000", "DX HAND", (("DX", "LEFT HAND", 2), ("DX", "RIGHT HAND", 2))),
        ("20230505", "074500", "MR KNEE", (("MR", "PD FS COR", 5),)),
    )),
    ("DEMO005", "GARCÍA^SOFÍA", "19881002", "F", "ISO_IR 192", (
        ("20250820", "133000", "US ABDOMEN", (("US", "LIVER", 4), ("US", "KIDNEYS", 3))),
    )),
)
# fmt: on


def sample_archive() -> Archive:
    """The manifest of the demo archive."""
    patients: list[PatientSpec] = []
    for pid, name, birth, sex, charset, study_rows in _PATIENTS:
        studies: list[StudySpec] = []
        for s_no, (date, time, s_desc, series_rows) in enumerate(study_rows, start=1):
            key: tuple[object, ...] = (pid, "study", s_no)
            size = (IMAGE_SIZE, IMAGE_SIZE)
            series = tuple(
                build_series(NAMESPACE, key, se_no, mod, se_desc, count, size)
                for se_no, (mod, se_desc, count) in enumerate(series_rows, start=1)
            )
            studies.append(
                StudySpec(
                    study_instance_uid=hashed_uid(NAMESPACE, *key),
                    study_date=date,
                    study_time=time,
                    accession_number=f"A{pid[-3:]}{s_no:02d}",
                    study_id=str(s_no),
                    description=s_desc,
                    series=series,
                )
            )
        patients.append(PatientSpec(pid, name, birth, sex, charset, tuple(studies)))
    return tuple(patients)


@dataclass(frozen=True)
class _Ellipse:
    """A filled ellipse in pixel coordinates, drawn with one sample value."""

    cx: float
    cy: float
    rx: float
    ry: float
    value: int


def _phantom(modality: str, number: int) -> Sequence[_Ellipse]:
    """Shapes that look like the modality's subject; they move from image to image."""
    c = IMAGE_SIZE / 2
    shift = 3 * math.sin(number)
    if modality == "CT":  # a trunk: body, two lungs that change size, a spine
        lung = 9 + (number % 4)
        return (
            _Ellipse(c, c + 2, 28, 20, 1000),
            _Ellipse(c - 12, c, lung, lung + 4, 150),
            _Ellipse(c + 12, c, lung, lung + 4, 150),
            _Ellipse(c, c + 15, 4, 4, 2600),
        )
    if modality == "MR":  # a head: skull, brain, ventricles
        return (
            _Ellipse(c, c, 26, 30, 600),
            _Ellipse(c, c, 23, 27, 1500),
            _Ellipse(c - 5, c + shift, 3, 8, 3000),
            _Ellipse(c + 5, c + shift, 3, 8, 3000),
        )
    if modality == "US":  # a bright fan with a dark lesion
        return (_Ellipse(c + shift, c + 6, 6, 5, 100),)
    # CR / DX: an object in front of a bright detector
    return (
        _Ellipse(c, c, 30, 30, 3600),
        _Ellipse(c, c + 4, 16, 26, 1400),
        _Ellipse(c + shift, c - 10, 4, 12, 2400),
    )


def _speckle(row: int, number: int) -> list[int]:
    """Deterministic ultrasound-like noise for one row (a small LCG, no random state)."""
    state = (row * 7919 + number * 104729) & 0xFFFF
    values = []
    for _ in range(IMAGE_SIZE):
        state = (state * 25173 + 13849) & 0xFFFF
        values.append(1200 + (state >> 6))
    return values


def pixels(modality: str, number: int) -> bytes:
    """One 64x64 image as little-endian 16-bit samples."""
    size = IMAGE_SIZE
    image = array("H")
    shapes = _phantom(modality, number)
    for y in range(size):
        row = [0] * size
        if modality == "US":
            half = min(size / 2, 4 + y * 0.6)  # the fan widens with depth
            x0, x1 = int(size / 2 - half), int(size / 2 + half)
            row[x0:x1] = _speckle(y, number)[x0:x1]
        for shape in shapes:
            dy = (y + 0.5 - shape.cy) / shape.ry
            if abs(dy) < 1:
                half = shape.rx * math.sqrt(1 - dy * dy)
                x0 = max(0, math.ceil(shape.cx - half - 0.5))
                x1 = min(size, math.floor(shape.cx + half - 0.5) + 1)
                row[x0:x1] = [shape.value] * max(0, x1 - x0)
        image.extend(row)
    if sys.byteorder == "big":
        image.byteswap()
    return image.tobytes()


@dataclass(frozen=True)
class SampleInstance:
    """One instance of the sample archive with its place in the hierarchy."""

    patient: PatientSpec
    study: StudySpec
    series: SeriesSpec
    spec: InstanceSpec
    dataset: Dataset


def sample_instances(archive: Archive) -> list[SampleInstance]:
    """Every instance of ``archive`` as a full dataset, held in memory."""
    result = []
    for patient, study, series, instance in all_instances(archive):
        ds = build_dataset(
            patient,
            study,
            series,
            instance,
            pixels=pixels(series.modality, instance.instance_number),
            implementation=IMPLEMENTATION,
        )
        ds.WindowCenter = 1 << (BITS_STORED - 1)
        ds.WindowWidth = 1 << BITS_STORED
        ds.InstitutionName = "QRCLIENT DEMO"
        result.append(SampleInstance(patient, study, series, instance, ds))
    return result

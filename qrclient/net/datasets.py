"""Data sets on the wire: encoded and decoded in the transfer syntax of their context.

Decoding is lazy (pydicom converts a value when it is first read), so the structural
walk over the element headers (:mod:`qrclient.net.walk`) checks up front that every
length fits: a truncated or malformed identifier is a protocol error here, not a
surprise for whoever reads it later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from io import BytesIO
from typing import TYPE_CHECKING

from qrclient.net.errors import ProtocolError
from qrclient.net.identifier import Identifier
from qrclient.net.walk import UNDEFINED, Element, scan_dataset

if TYPE_CHECKING:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag
    from pydicom.uid import UID

    _Reader = tuple[
        type[Dataset], type[RawDataElement], type[BaseTag], Callable[..., Dataset], type[UID]
    ]

# pydicom is imported where it is used: it takes some 70 ms, and a retrieve whose
# identifiers are Identifiers never needs it.


def encode_dataset(dataset: Dataset | Identifier, transfer_syntax: str) -> bytes:
    """Encode ``dataset`` for a context that accepted ``transfer_syntax``."""
    if isinstance(dataset, Identifier):
        return dataset.encode(transfer_syntax)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import UID

    uid = UID(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = uid.is_little_endian
    buffer.is_implicit_VR = uid.is_implicit_VR
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def decode_dataset(data: bytes, transfer_syntax: str) -> Dataset:
    """Decode a received identifier; one that does not parse is a protocol error.

    Values stay raw until read (as with pydicom's reader). Flat data sets, nearly every
    C-FIND identifier, are built from the walk's element list directly, which is
    several times cheaper than a second pass through pydicom's reader.
    """
    Dataset, RawDataElement, BaseTag, read_dataset, UID = _reader()
    uid = UID(transfer_syntax)
    explicit = not uid.is_implicit_VR
    elements: list[Element] = []
    try:
        scan_dataset(
            data, 0, len(data), explicit=explicit, little=uid.is_little_endian, every=elements
        )
        if uid.is_little_endian and not any(_nested(e) for e in elements):
            return Dataset(
                {
                    BaseTag(tag): RawDataElement(
                        BaseTag(tag),
                        vr.decode("ascii") if explicit else None,
                        length,
                        data[offset : offset + length],
                        offset,
                        not explicit,
                        True,
                    )
                    for tag, vr, offset, length in elements
                }
            )
        return read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    except Exception as exc:
        raise ProtocolError(
            f"the peer sent a data set that does not decode ({exc})",
            "the peer's DICOM stack is broken; the log of -v helps its vendor",
        ) from exc


def _nested(element: Element) -> bool:
    """A sequence (or undefined length): its items are left to pydicom's reader."""
    return element[1] == b"SQ" or element[3] == UNDEFINED


@functools.cache
def _reader() -> _Reader:
    """What decoding needs from pydicom, imported once (a match costs no import)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.filereader import read_dataset
    from pydicom.tag import BaseTag
    from pydicom.uid import UID

    return Dataset, RawDataElement, BaseTag, read_dataset, UID

"""Data sets on the wire: encoded and decoded in the transfer syntax of their context.

Decoding is lazy (pydicom converts a value when it is first read), so the structural
walk over the element headers (:mod:`qrclient.net.walk`) checks up front that every
length fits: a truncated or malformed identifier is a protocol error here, not a
surprise for whoever reads it later.
"""

from __future__ import annotations

from io import BytesIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from qrclient.net.errors import ProtocolError
from qrclient.net.walk import UNDEFINED, Element, scan_dataset


def encode_dataset(dataset: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``dataset`` for a context that accepted ``transfer_syntax``."""
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
    uid = UID(transfer_syntax)
    explicit = not uid.is_implicit_VR
    elements: list[Element] = []
    try:
        scan_dataset(
            data, 0, len(data), explicit=explicit, little=uid.is_little_endian, every=elements
        )
        if uid.is_little_endian and not any(_nested(e) for e in elements):
            return Dataset({BaseTag(e[0]): _raw(data, e, explicit) for e in elements})
        return read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    except Exception as exc:
        raise ProtocolError(
            f"the peer sent a data set that does not decode ({exc})",
            "the peer's DICOM stack is broken; the log of -v helps its vendor",
        ) from exc


def _nested(element: Element) -> bool:
    """A sequence (or undefined length): its items are left to pydicom's reader."""
    return element[1] == b"SQ" or element[3] == UNDEFINED


def _raw(data: bytes, element: Element, explicit: bool) -> RawDataElement:
    tag, vr, offset, length = element
    return RawDataElement(
        BaseTag(tag),
        vr.decode("ascii") if explicit else None,
        length,
        data[offset : offset + length],
        offset,
        not explicit,
        True,
    )

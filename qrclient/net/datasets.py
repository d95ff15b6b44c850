"""Data sets on the wire: encoded and decoded in the transfer syntax of their context.

Decoding is lazy (pydicom converts a value when it is first read), so a structural walk
over the element headers checks up front that every length fits: a truncated or
malformed identifier is a protocol error here, not a surprise for whoever reads it.
"""

from __future__ import annotations

import struct
from io import BytesIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from qrclient.net.errors import ProtocolError

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV")
)
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")


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
    C-FIND identifier, are built from the structural walk directly, which is several
    times cheaper than a second pass through pydicom's reader.
    """
    uid = UID(transfer_syntax)
    try:
        if uid.is_little_endian:
            collector = _Collector()
            check_structure(data, explicit=not uid.is_implicit_VR, collector=collector)
            if not collector.nested:
                return Dataset({element.tag: element for element in collector.elements})
        return read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    except Exception as exc:
        raise ProtocolError(
            f"the peer sent a data set that does not decode ({exc})",
            "the peer's DICOM stack is broken; the log of -v helps its vendor",
        ) from exc


class _Collector:
    """Top-level elements met by the walk; ``nested`` once a sequence was seen."""

    def __init__(self) -> None:
        self.elements: list[RawDataElement] = []
        self.nested = False


def check_structure(data: bytes, *, explicit: bool, collector: _Collector | None = None) -> None:
    """Walk element headers (little endian) and raise ValueError where lengths do not fit."""
    end = _walk(data, 0, len(data), explicit, until=None, collector=collector)
    if end != len(data):
        raise ValueError(f"{len(data) - end} stray bytes after the last element")


def _walk(
    data: bytes,
    offset: int,
    end: int,
    explicit: bool,
    until: int | None,
    collector: _Collector | None = None,
) -> int:
    """Walk elements from ``offset``; stop at ``end`` or after the ``until`` delimiter."""
    while offset < end:
        if offset + 8 > end:
            raise ValueError(f"element header cut short at byte {offset}")
        group, element = _TAG.unpack_from(data, offset)
        tag = group << 16 | element
        if group == 0xFFFE:  # item or delimiter: always tag + 4-byte length
            length = _U32.unpack_from(data, offset + 4)[0]
            offset += 8
            if tag == until:
                return offset
            raise ValueError(f"unexpected item tag ({group:04X},{element:04X}) at byte {offset}")
        vr = data[offset + 4 : offset + 6]
        if explicit and vr in _LONG_VRS:
            if offset + 12 > end:
                raise ValueError(f"element header cut short at byte {offset}")
            length = _U32.unpack_from(data, offset + 8)[0]
            offset += 12
        elif explicit:
            length = _U16.unpack_from(data, offset + 6)[0]
            offset += 8
        else:
            length = _U32.unpack_from(data, offset + 4)[0]
            offset += 8
            vr = b"SQ" if length == _UNDEFINED else vr
        if length == _UNDEFINED:
            offset = _walk_items(data, offset, end, explicit and vr != b"UN")
            if collector is not None:
                collector.nested = True
        elif offset + length > end:
            raise ValueError(
                f"({group:04X},{element:04X}) claims {length} bytes, {end - offset} are left"
            )
        else:
            if explicit and vr == b"SQ":
                _walk_items(data, offset, offset + length, explicit)
                if collector is not None:
                    collector.nested = True
            elif collector is not None:
                collector.elements.append(
                    RawDataElement(
                        BaseTag(tag),
                        vr.decode("ascii") if explicit else None,
                        length,
                        data[offset : offset + length],
                        offset,
                        not explicit,
                        True,
                    )
                )
            offset += length
    if until is not None:
        raise ValueError("a sequence or item is not closed")
    return offset


def _walk_items(data: bytes, offset: int, end: int, explicit: bool) -> int:
    """Walk sequence items to the sequence delimiter (or ``end`` for a defined length)."""
    while offset < end:
        if offset + 8 > end:
            raise ValueError(f"item header cut short at byte {offset}")
        group, element = _TAG.unpack_from(data, offset)
        tag = group << 16 | element
        length = _U32.unpack_from(data, offset + 4)[0]
        offset += 8
        if tag == _SEQUENCE_END:
            return offset
        if tag != _ITEM:
            raise ValueError(f"({group:04X},{element:04X}) where a sequence item was expected")
        if length == _UNDEFINED:
            offset = _walk(data, offset, end, explicit, until=_ITEM_END)
        elif offset + length > end:
            raise ValueError(f"sequence item claims {length} bytes, {end - offset} are left")
        else:
            _walk(data, offset, offset + length, explicit, until=None)
            offset += length
    return offset

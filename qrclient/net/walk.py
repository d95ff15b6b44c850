"""Structural walk over a data set, reading element headers only.

One walker for everything received: C-FIND identifiers (checked before pydicom decodes
them lazily) and stored instances (any byte order, encapsulated pixel data whose items
are opaque fragments, also inside an icon sequence). Values are skipped by their
lengths, so pixel data costs nothing and a memory-mapped file is never read past its
headers. On the way it can pick up the values of a few top-level tags, or list every
top-level element.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Container

from qrclient.net.dictionary import LONG_VRS
from qrclient.net.uids import DEFLATED_LE, EXPLICIT_BE, IMPLICIT_LE

Buffer = bytes | mmap.mmap
# (tag, VR or b"" in implicit VR, offset of the value, length or UNDEFINED)
Element = tuple[int, bytes, int, int]

UNDEFINED = 0xFFFFFFFF
# Sequences nested deeper than this are refused: real data sets (structured report
# trees included) stay far below it, and every level costs the walk (and pydicom's
# reader after it) a few Python stack frames.
MAX_DEPTH = 64
_LONG_VRS = frozenset(vr.encode() for vr in LONG_VRS)  # as read from the data

_UNDEFINED = UNDEFINED
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_ENCAPSULATED_VRS = (b"OB", b"OW")  # with an undefined length: pixel data fragments


def scan_dataset(
    data: Buffer,
    start: int,
    end: int,
    *,
    explicit: bool,
    little: bool,
    wanted: Container[int] = (),
    every: list[Element] | None = None,
) -> dict[int, bytes]:
    """Check ``data[start:end]`` is one complete data set; return the ``wanted`` values.

    Only top-level elements are collected (by tag, raw bytes); ``every`` receives each
    top-level element's header. Raises ValueError where a length overruns, an item or
    sequence is not closed, or bytes are left over.
    """
    walker = _Walker(data, little)
    found: dict[int, bytes] = {}
    walker.elements(
        start, end, explicit, closed_by_item_end=False, wanted=wanted, found=found, every=every
    )
    return found


def scan_values(
    data: Buffer, start: int, transfer_syntax: str, wanted: Container[int]
) -> dict[int, bytes]:
    """``scan_dataset`` of ``data[start:]`` in ``transfer_syntax`` (a deflated one is
    inflated first); ValueError if it is not one complete data set."""
    if transfer_syntax == DEFLATED_LE:
        try:
            inflated = zlib.decompress(data[start:], -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise ValueError(f"the deflated data set does not inflate ({exc})") from None
        return scan_dataset(inflated, 0, len(inflated), explicit=True, little=True, wanted=wanted)
    return scan_dataset(
        data,
        start,
        len(data),
        explicit=transfer_syntax != IMPLICIT_LE,
        little=transfer_syntax != EXPLICIT_BE,
        wanted=wanted,
    )


def _structs(order: str) -> tuple[struct.Struct, struct.Struct, struct.Struct, struct.Struct]:
    """Tag, 32-bit length, and a whole element header in one unpack: the short explicit
    form (its VR and 2-byte length; a long VR's 4-byte length follows) or the implicit one."""
    return (
        struct.Struct(f"{order}HH"),
        struct.Struct(f"{order}L"),
        struct.Struct(f"{order}HH2sH"),
        struct.Struct(f"{order}HHL"),
    )


_LITTLE, _BIG = _structs("<"), _structs(">")  # made once: a walk per received instance


class _Walker:
    def __init__(self, data: Buffer, little: bool) -> None:
        self.data = data
        self.depth = 0  # sequences (or encapsulated pixel data) the walk is inside
        self.tag, self.u32, self.explicit_header, self.implicit_header = _LITTLE if little else _BIG

    def elements(
        self,
        offset: int,
        end: int,
        explicit: bool,
        *,
        closed_by_item_end: bool,
        wanted: Container[int] = (),
        found: dict[int, bytes] | None = None,
        every: list[Element] | None = None,
    ) -> int:
        """Walk elements to ``end`` (or to the item delimiter); return the offset after."""
        data, u32 = self.data, self.u32
        header = (self.explicit_header if explicit else self.implicit_header).unpack_from
        vr = b""
        while offset < end:
            if offset + 8 > end:
                raise ValueError(f"element header cut short at byte {offset}")
            if explicit:
                group, element, vr, length = header(data, offset)
            else:
                group, element, length = header(data, offset)
            tag = group << 16 | element
            if group == 0xFFFE:
                if closed_by_item_end and tag == _ITEM_END:
                    return offset + 8
                raise ValueError(f"unexpected ({group:04X},{element:04X}) at byte {offset}")
            if vr in _LONG_VRS:
                if offset + 12 > end:
                    raise ValueError(f"element header cut short at byte {offset}")
                length = u32.unpack_from(data, offset + 8)[0]
                offset += 12
            else:
                offset += 8
            if every is not None:
                every.append((tag, vr, offset, length))
            if length == _UNDEFINED:
                if vr in _ENCAPSULATED_VRS:
                    offset = self.items(offset, end, None, delimited=True)
                else:  # a sequence; an undefined-length UN holds implicit VR items
                    offset = self.items(offset, end, explicit and vr != b"UN", delimited=True)
                continue
            if offset + length > end:
                raise ValueError(
                    f"({group:04X},{element:04X}) claims {length} bytes, {end - offset} are left"
                )
            if vr == b"SQ":
                self.items(offset, offset + length, explicit, delimited=False)
            elif found is not None and tag in wanted:
                found[tag] = bytes(data[offset : offset + length])
            offset += length
        if closed_by_item_end:
            raise ValueError("a sequence item is not closed")
        return offset

    def items(self, offset: int, end: int, explicit: bool | None, *, delimited: bool) -> int:
        """Walk sequence items (``explicit`` None: opaque pixel data fragments)."""
        if self.depth == MAX_DEPTH:
            raise ValueError(f"sequences nested deeper than {MAX_DEPTH} levels at byte {offset}")
        self.depth += 1
        offset = self._items(offset, end, explicit, delimited=delimited)
        self.depth -= 1
        return offset

    def _items(self, offset: int, end: int, explicit: bool | None, *, delimited: bool) -> int:
        data, u32 = self.data, self.u32
        while offset < end:
            if offset + 8 > end:
                raise ValueError(f"item header cut short at byte {offset}")
            group, element = self.tag.unpack_from(data, offset)
            tag = group << 16 | element
            length = u32.unpack_from(data, offset + 4)[0]
            offset += 8
            if tag == _SEQUENCE_END:
                return offset
            if tag != _ITEM:
                raise ValueError(f"({group:04X},{element:04X}) where an item was expected")
            if length == _UNDEFINED and explicit is not None:
                offset = self.elements(offset, end, explicit, closed_by_item_end=True)
            elif length == _UNDEFINED or offset + length > end:
                raise ValueError(f"an item at byte {offset - 8} overruns its sequence")
            else:
                if explicit is not None:
                    self.elements(offset, offset + length, explicit, closed_by_item_end=False)
                offset += length
        if delimited:
            raise ValueError("a sequence is not closed")
        return offset

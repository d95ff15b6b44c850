"""The identifier of a C-FIND, C-GET or C-MOVE request, encoded without pydicom.

An identifier is a flat list of attributes given as text (a matching value, or empty
to ask for the attribute back). Encoding it is a few struct calls; building a pydicom
Dataset for it meant importing pydicom (some 70 ms) before the first request could
go out. The bytes equal pydicom's for the same data set (tests/test_identifier.py).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from qrclient.net.dictionary import LONG_VRS
from qrclient.net.text import SPECIFIC_CHARACTER_SET
from qrclient.net.uids import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE

UTF8 = "ISO_IR 192"

_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_FLOATS = frozenset(("FL", "FD"))
_TEXT_VRS = frozenset(
    ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI")
) | {"UR", "UT"}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute: its value as text (``\\`` between values), ``""`` to ask for it."""

    tag: int
    vr: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Identifier:
    attributes: tuple[Attribute, ...]

    @classmethod
    def of(cls, attributes: Iterable[Attribute]) -> Identifier:
        """Attributes in tag order, Specific Character Set added where a value needs it."""
        ordered = {a.tag: a for a in attributes}
        if SPECIFIC_CHARACTER_SET not in ordered and any(
            not a.value.isascii() for a in ordered.values()
        ):
            ordered[SPECIFIC_CHARACTER_SET] = Attribute(SPECIFIC_CHARACTER_SET, "CS", UTF8)
        return cls(tuple(ordered[tag] for tag in sorted(ordered)))

    def value(self, tag: int) -> str | None:
        """The value given for ``tag``; None if the identifier does not hold it."""
        return next((a.value for a in self.attributes if a.tag == tag), None)

    def encode(self, transfer_syntax: str) -> bytes:
        """The identifier in ``transfer_syntax``; ValueError for one it cannot write."""
        if transfer_syntax == DEFLATED_LE:
            deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
            return deflate.compress(self.encode(EXPLICIT_LE)) + deflate.flush()
        if transfer_syntax not in (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE):
            raise ValueError(f"cannot encode an identifier in transfer syntax {transfer_syntax}")
        order = ">" if transfer_syntax == EXPLICIT_BE else "<"
        explicit = transfer_syntax != IMPLICIT_LE
        charset = self.value(SPECIFIC_CHARACTER_SET) or ""
        codec = "utf-8" if charset == UTF8 else "latin-1" if charset == "ISO_IR 100" else "ascii"
        parts: list[bytes] = []
        for attribute in self.attributes:
            value = _value_bytes(attribute, codec, order)
            group, element = attribute.tag >> 16, attribute.tag & 0xFFFF
            if not explicit:
                parts.append(struct.pack(f"{order}HHL", group, element, len(value)))
            elif attribute.vr in LONG_VRS:
                vr = attribute.vr.encode()
                parts.append(struct.pack(f"{order}HH2s2xL", group, element, vr, len(value)))
            elif len(value) <= 0xFFFF:
                vr = attribute.vr.encode()
                parts.append(struct.pack(f"{order}HH2sH", group, element, vr, len(value)))
            else:
                raise ValueError(f"a {attribute.vr} value of {len(value)} bytes is too long")
            parts.append(value)
        return b"".join(parts)


def _value_bytes(attribute: Attribute, codec: str, order: str) -> bytes:
    text, vr = attribute.value, attribute.vr
    if not text:
        return b""
    number = _NUMBERS.get(vr)
    if number is not None:
        convert = float if vr in _FLOATS else int
        items = [convert(item) for item in text.split("\\")]
        return struct.pack(f"{order}{len(items)}{number}", *items)
    if vr not in _TEXT_VRS:
        raise ValueError(f"a {vr} attribute cannot carry a value in an identifier")
    data = text.encode(codec)
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data

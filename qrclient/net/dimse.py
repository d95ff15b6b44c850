"""DIMSE command sets (PS3.7 section 9 and annex E): our own small codec.

Command sets are always Implicit VR Little Endian, group 0000 only, with a fixed list of
elements, so a table-driven codec is short and avoids building a pydicom Dataset for
every one of the thousands of responses a C-FIND or C-GET produces.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Literal

from qrclient.net.errors import ProtocolError

Kind = Literal["UI", "US", "UL", "AE", "LO", "AT"]


class CommandField(IntEnum):
    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    C_CANCEL_RQ = 0x0FFF


class Priority(IntEnum):
    MEDIUM = 0
    HIGH = 1
    LOW = 2


NO_DATASET = 0x0101
HAS_DATASET = 0x0000

_ELEMENT = struct.Struct("<HHL")
_GROUP_LENGTH = struct.Struct("<HHLL")  # (0000,0000) UL and its value
_TAG = struct.Struct("<HH")
_US = struct.Struct("<H")
_UL = struct.Struct("<L")


@dataclass(slots=True)
class Command:
    """A decoded command set; attributes not present in the message stay ``None``."""

    command_field: int
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    affected_sop_class_uid: str | None = None
    requested_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    requested_sop_instance_uid: str | None = None
    priority: int | None = None
    command_data_set_type: int = NO_DATASET
    status: int | None = None
    offending_element: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    move_destination: str | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    @property
    def has_dataset(self) -> bool:
        return self.command_data_set_type != NO_DATASET

    @property
    def name(self) -> str:
        try:
            return CommandField(self.command_field).name.replace("_", "-")
        except ValueError:
            return f"command 0x{self.command_field:04X}"

    def summary(self) -> dict[str, object]:
        """The non-empty attributes, for logs and traces."""
        out: dict[str, object] = {"command": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("command_field", "unknown") and value is not None:
                out[f.name] = value
        return out


# element number in group 0000 -> (attribute of Command, value representation)
_TABLE: dict[int, tuple[str, Kind]] = {
    0x0002: ("affected_sop_class_uid", "UI"),
    0x0003: ("requested_sop_class_uid", "UI"),
    0x0100: ("command_field", "US"),
    0x0110: ("message_id", "US"),
    0x0120: ("message_id_being_responded_to", "US"),
    0x0600: ("move_destination", "AE"),
    0x0700: ("priority", "US"),
    0x0800: ("command_data_set_type", "US"),
    0x0900: ("status", "US"),
    0x0901: ("offending_element", "AT"),
    0x0902: ("error_comment", "LO"),
    0x0903: ("error_id", "US"),
    0x1000: ("affected_sop_instance_uid", "UI"),
    0x1001: ("requested_sop_instance_uid", "UI"),
    0x1020: ("remaining", "US"),
    0x1021: ("completed", "US"),
    0x1022: ("failed", "US"),
    0x1023: ("warning", "US"),
    0x1030: ("move_originator_ae_title", "AE"),
    0x1031: ("move_originator_message_id", "US"),
}


def _encode_us(value: object) -> bytes:
    return _US.pack(value)


def _encode_ul(value: object) -> bytes:
    return _UL.pack(value)


def _encode_at(value: object) -> bytes:
    assert isinstance(value, tuple)
    return b"".join(_TAG.pack(tag >> 16, tag & 0xFFFF) for tag in value)


# Text values are decoded and encoded as Latin-1: one character per byte, so any bytes
# a peer sends decode, and echoing them back (a response's Affected SOP Instance UID)
# gives the peer its own bytes again instead of failing on one that is not ASCII.
# Whether a value is valid (a UID, an AE title) is for whoever uses it to check.
_TEXT_CODEC = "latin-1"


def _encode_uid(value: object) -> bytes:
    raw = str(value).encode(_TEXT_CODEC)
    return raw + b"\x00" if len(raw) % 2 else raw


def _encode_text(value: object) -> bytes:
    raw = str(value).encode(_TEXT_CODEC)
    return raw + b" " if len(raw) % 2 else raw


def _decode_us(raw: bytes) -> object:
    if len(raw) != 2:
        raise ValueError(f"US value of {len(raw)} bytes")
    return raw[0] | raw[1] << 8


def _decode_ul(raw: bytes) -> object:
    if len(raw) != 4:
        raise ValueError(f"UL value of {len(raw)} bytes")
    return int.from_bytes(raw, "little")


def _decode_at(raw: bytes) -> object:
    if len(raw) % 4:
        raise ValueError(f"AT value of {len(raw)} bytes")
    return tuple((group << 16) | element for group, element in _TAG.iter_unpack(raw))


def _decode_text(raw: bytes) -> object:
    return raw.decode(_TEXT_CODEC).rstrip("\x00 ").lstrip(" ")


_CODECS: dict[Kind, tuple[Callable[[object], bytes], Callable[[bytes], object]]] = {
    "US": (_encode_us, _decode_us),
    "UL": (_encode_ul, _decode_ul),
    "AT": (_encode_at, _decode_at),
    "UI": (_encode_uid, _decode_text),
    "AE": (_encode_text, _decode_text),
    "LO": (_encode_text, _decode_text),
}
# Per message these tables replace a branch on the kind for every element: a C-GET
# brings three command sets per instance.
_ENCODERS = tuple(
    (element, name, _CODECS[kind][0]) for element, (name, kind) in sorted(_TABLE.items())
)
_DECODERS = {element: (name, _CODECS[kind][1]) for element, (name, kind) in _TABLE.items()}


def encode_command(command: Command) -> bytes:
    """Encode a command set, group length first, elements in ascending order."""
    parts: list[bytes] = []
    for element, name, encode in _ENCODERS:
        value = getattr(command, name)
        if value is not None:
            raw = encode(value)
            parts.append(_ELEMENT.pack(0, element, len(raw)))
            parts.append(raw)
    body = b"".join(parts)
    return _GROUP_LENGTH.pack(0, 0, 4, len(body)) + body


def decode_command(data: bytes) -> Command:
    """Decode a command set, raising ProtocolError on anything that does not parse."""
    values: dict[str, object] = {}
    unknown: dict[int, bytes] = {}
    offset, end = 0, len(data)
    header, header_size = _ELEMENT.unpack_from, _ELEMENT.size
    try:
        while offset < end:
            group, element, length = header(data, offset)
            if group != 0 and values:
                # DCMTK (Orthanc) appends a pending C-GET-RSP's Failed SOP Instance UID
                # List (group 0008) to the command set itself; the command is complete.
                break
            offset += header_size
            if group != 0 or offset + length > end:
                raise ValueError(f"element ({group:04X},{element:04X}) of length {length}")
            raw = data[offset : offset + length]
            offset += length
            if element == 0:
                continue
            entry = _DECODERS.get(element)
            if entry is None:
                unknown[element] = raw
            else:
                values[entry[0]] = entry[1](raw)
    except (struct.error, ValueError) as exc:
        raise ProtocolError(
            f"the peer sent a command set that does not decode ({exc})",
            "the peer's DICOM stack is broken; the log of -v helps its vendor",
        ) from exc
    if "command_field" not in values:
        raise ProtocolError(
            "the peer sent a command set without CommandField", "the peer's DICOM stack is broken"
        )
    command = Command(**values)  # type: ignore[arg-type]
    command.unknown = unknown
    return command


def expect_response(command: Command, expected: CommandField, message_id: int) -> None:
    """Refuse a response of the wrong kind, or to a message we never sent."""
    if command.command_field != expected:
        raise ProtocolError(
            f"the peer sent {command.name} where {expected.name.replace('_', '-')} was expected",
            "the peer's DICOM stack is broken",
        )
    if command.message_id_being_responded_to != message_id:
        raise ProtocolError(
            f"the peer answered message {command.message_id_being_responded_to}, "
            f"but we sent {message_id}",
            "the peer's DICOM stack is broken",
        )


def response_to(
    request: Command, command_field: CommandField, status: int, comment: str | None = None
) -> Command:
    """The response to a C-STORE or C-ECHO request, echoing what PS3.7 says it must;
    ``comment`` is its Error Comment (up to 64 characters)."""
    return Command(
        command_field=command_field,
        message_id_being_responded_to=request.message_id,
        affected_sop_class_uid=request.affected_sop_class_uid,
        affected_sop_instance_uid=request.affected_sop_instance_uid,
        status=status,
        error_comment=comment,
    )

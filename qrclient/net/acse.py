"""A-ASSOCIATE-RQ, -AC and -RJ, encoded and decoded (PS3.8 9.3.2 to 9.3.4, PS3.7 annex D).

Each PDU is a frozen dataclass whose ``encode`` gives the whole PDU; ``decode_associate_rq``,
``decode_associate_ac`` and ``decode_associate_rj`` take a PDU body as
:class:`qrclient.net.pdu.PduReader` hands it out. Decoding is strict: whatever a peer
sends either decodes or raises :class:`ProtocolError` saying what is wrong. Items of a
type PS3.8 does not define are skipped, as PS3.8 9.3.1 asks, and so are the user
information sub-items we do not use (asynchronous operations window, user identity...).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from qrclient.net.errors import ProtocolError
from qrclient.net.pdu import HEADER, HEADER_LENGTH, PduType

# A presentation context's result (PS3.8 9.3.3.2).
ACCEPTANCE = 0
USER_REJECTION = 1
NO_REASON = 2
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

_PROTOCOL_VERSION = 1
# Protocol version, reserved, called AE title, calling AE title, 32 reserved bytes.
_FIXED = struct.Struct(">H2x16s16s32x")
_ITEM = struct.Struct(">BxH")  # item type, reserved, item length
_UID_LENGTH = struct.Struct(">H")
_MAXIMUM_LENGTH = struct.Struct(">L")
_AE_LENGTH = 16
_UID_MAX = 64
_HINT = "the peer's DICOM stack is broken"

_APPLICATION_CONTEXT_ITEM = 0x10
_CONTEXT_RQ_ITEM = 0x20
_CONTEXT_AC_ITEM = 0x21
_ABSTRACT_SYNTAX_ITEM = 0x30
_TRANSFER_SYNTAX_ITEM = 0x40
_USER_INFORMATION_ITEM = 0x50
_MAXIMUM_LENGTH_ITEM = 0x51
_IMPLEMENTATION_CLASS_UID_ITEM = 0x52
_ROLE_SELECTION_ITEM = 0x54
_IMPLEMENTATION_VERSION_NAME_ITEM = 0x55
_EXTENDED_NEGOTIATION_ITEM = 0x56
# Every item type PS3.8 and PS3.7 define: one of these out of its place is an error,
# any other type is skipped.
_DEFINED = frozenset({0x10, 0x20, 0x21, 0x30, 0x40, 0x50, *range(0x51, 0x5A)})


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU role selection for one SOP class (PS3.7 D.3.3.4): the roles supported."""

    sop_class: str
    scu: bool
    scp: bool


@dataclass(frozen=True, slots=True)
class ExtendedNegotiation:
    """SOP class extended negotiation (PS3.7 D.3.3.5): the service class's own bytes."""

    sop_class: str
    info: bytes


@dataclass(frozen=True, slots=True)
class UserInformation:
    """The user information item; empty strings and None stand for absent sub-items."""

    max_pdu: int | None = None  # maximum length received; 0 means no limit
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    roles: tuple[RoleSelection, ...] = ()
    extended: tuple[ExtendedNegotiation, ...] = ()

    def encode(self) -> bytes:
        # In increasing item type order (PS3.8 9.3.1).
        parts = []
        if self.max_pdu is not None:
            if not 0 <= self.max_pdu <= 0xFFFFFFFF:
                raise ValueError(f"maximum length {self.max_pdu} does not fit in 32 bits")
            parts.append(_item(_MAXIMUM_LENGTH_ITEM, _MAXIMUM_LENGTH.pack(self.max_pdu)))
        if self.implementation_class_uid:
            uid = _encode_uid(self.implementation_class_uid, "implementation class UID")
            parts.append(_item(_IMPLEMENTATION_CLASS_UID_ITEM, uid))
        for role in self.roles:
            uid = _encode_uid(role.sop_class, "SOP class UID")
            value = _UID_LENGTH.pack(len(uid)) + uid + bytes((role.scu, role.scp))
            parts.append(_item(_ROLE_SELECTION_ITEM, value))
        if self.implementation_version_name:
            name = _encode_text(self.implementation_version_name, "implementation version name")
            if len(name) > 16:
                raise ValueError(f"implementation version name {name!r} is over 16 characters")
            parts.append(_item(_IMPLEMENTATION_VERSION_NAME_ITEM, name))
        for extended in self.extended:
            uid = _encode_uid(extended.sop_class, "SOP class UID")
            value = _UID_LENGTH.pack(len(uid)) + uid + extended.info
            parts.append(_item(_EXTENDED_NEGOTIATION_ITEM, value))
        return _item(_USER_INFORMATION_ITEM, b"".join(parts))

    def role(self, sop_class: str) -> RoleSelection | None:
        """The role selection sub-item for this SOP class (the last, if repeated)."""
        return next((r for r in reversed(self.roles) if r.sop_class == sop_class), None)


@dataclass(frozen=True, slots=True)
class ProposedContext:
    """A presentation context in an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    def encode(self) -> bytes:
        if not self.transfer_syntaxes:
            raise ValueError(f"presentation context {self.context_id} has no transfer syntax")
        abstract = _encode_uid(self.abstract_syntax, "abstract syntax UID")
        sub_items = [_item(_ABSTRACT_SYNTAX_ITEM, abstract)]
        sub_items.extend(
            _item(_TRANSFER_SYNTAX_ITEM, _encode_uid(ts, "transfer syntax UID"))
            for ts in self.transfer_syntaxes
        )
        return _item(_CONTEXT_RQ_ITEM, _context_header(self.context_id, 0) + b"".join(sub_items))


@dataclass(frozen=True, slots=True)
class ContextResult:
    """The answer to one presentation context in an A-ASSOCIATE-AC (PS3.8 9.3.3.2).

    ``transfer_syntax`` is the accepted one; for a rejected context it is not significant
    and may be None (no transfer syntax sub-item).
    """

    context_id: int
    result: int
    transfer_syntax: str | None

    def encode(self) -> bytes:
        syntax = b""
        if self.transfer_syntax is not None:
            uid = _encode_uid(self.transfer_syntax, "transfer syntax UID")
            syntax = _item(_TRANSFER_SYNTAX_ITEM, uid)
        elif self.result == ACCEPTANCE:
            raise ValueError(f"accepted presentation context {self.context_id} needs a syntax")
        if not 0 <= self.result <= 0xFF:
            raise ValueError(f"presentation context result {self.result} is not a byte")
        return _item(_CONTEXT_AC_ITEM, _context_header(self.context_id, self.result) + syntax)


@dataclass(frozen=True, slots=True)
class AssociateRequest:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2)."""

    called_ae: str
    calling_ae: str
    application_context: str
    contexts: tuple[ProposedContext, ...]
    user: UserInformation

    def encode(self) -> bytes:
        return _encode_pdu(PduType.ASSOCIATE_RQ, self, self.contexts)


@dataclass(frozen=True, slots=True)
class AssociateAccept:
    """A-ASSOCIATE-AC (PS3.8 9.3.3); the AE titles echo the request's, unchecked."""

    called_ae: str
    calling_ae: str
    application_context: str
    results: tuple[ContextResult, ...]
    user: UserInformation

    def encode(self) -> bytes:
        return _encode_pdu(PduType.ASSOCIATE_AC, self, self.results)


@dataclass(frozen=True, slots=True)
class AssociateReject:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4); errors.describe_rejection says what the values mean."""

    result: int  # 1 permanent, 2 transient
    source: int  # 1 service user, 2 service provider (ACSE), 3 service provider (presentation)
    reason: int

    def encode(self) -> bytes:
        return HEADER.pack(PduType.ASSOCIATE_RJ, 4) + bytes(
            (0, self.result, self.source, self.reason)
        )


# -- encoding helpers ------------------------------------------------------------------


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} of {len(value)} bytes exceeds 65535")
    return _ITEM.pack(item_type, len(value)) + value


def _context_header(context_id: int, result: int) -> bytes:
    if not 1 <= context_id <= 0xFF:
        raise ValueError(f"presentation context ID {context_id} is not 1 to 255")
    return bytes((context_id, 0, result, 0))


def _encode_text(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} is not ASCII") from None


def _encode_uid(uid: str, what: str) -> bytes:
    raw = _encode_text(uid, what)
    if not 0 < len(raw) <= _UID_MAX:
        raise ValueError(f"{what} {uid!r} is not 1 to {_UID_MAX} characters")
    return raw  # not padded (PS3.8 annex F)


def _encode_ae(title: str, what: str) -> bytes:
    raw = _encode_text(title, what)
    if not raw.strip(b" ") or len(raw) > _AE_LENGTH:
        raise ValueError(f"{what} {title!r} is not 1 to {_AE_LENGTH} characters")
    return raw.ljust(_AE_LENGTH, b" ")


def _encode_pdu(
    pdu_type: int,
    pdu: AssociateRequest | AssociateAccept,
    contexts: tuple[ProposedContext, ...] | tuple[ContextResult, ...],
) -> bytes:
    """A-ASSOCIATE-RQ or -AC: fixed fields, application context, contexts, user info."""
    fixed = _FIXED.pack(
        _PROTOCOL_VERSION,
        _encode_ae(pdu.called_ae, "called AE title"),
        _encode_ae(pdu.calling_ae, "calling AE title"),
    )
    application = _encode_uid(pdu.application_context, "application context UID")
    items = b"".join(
        (
            _item(_APPLICATION_CONTEXT_ITEM, application),
            *(context.encode() for context in contexts),
            pdu.user.encode(),
        )
    )
    return HEADER.pack(pdu_type, len(fixed) + len(items)) + fixed + items


# -- decoding --------------------------------------------------------------------------


class _Malformed(Exception):
    """What is wrong with a PDU; the decode_ functions raise it as ProtocolError."""


def decode_associate_rq(body: bytes) -> AssociateRequest:
    """An A-ASSOCIATE-RQ from its PDU body; ProtocolError if it is malformed."""
    try:
        called, calling, application, contexts, user = _decode_pdu(
            body, _CONTEXT_RQ_ITEM, _decode_proposed
        )
        return AssociateRequest(
            _decode_ae(called, "called AE title"),
            _decode_ae(calling, "calling AE title"),
            application,
            contexts,
            user,
        )
    except _Malformed as exc:
        raise ProtocolError(f"the peer's A-ASSOCIATE-RQ does not decode ({exc})", _HINT) from None


def decode_associate_ac(body: bytes) -> AssociateAccept:
    """An A-ASSOCIATE-AC from its PDU body; ProtocolError if it is malformed."""
    try:
        called, calling, application, results, user = _decode_pdu(
            body, _CONTEXT_AC_ITEM, _decode_result
        )
    except _Malformed as exc:
        raise ProtocolError(f"the peer's A-ASSOCIATE-AC does not decode ({exc})", _HINT) from None
    # Reserved fields that echo the request's AE titles: never tested (PS3.8 9.3.3).
    return AssociateAccept(
        called.decode("latin-1").strip(" \x00"),
        calling.decode("latin-1").strip(" \x00"),
        application,
        results,
        user,
    )


def decode_associate_rj(body: bytes) -> AssociateReject:
    """An A-ASSOCIATE-RJ from its PDU body; ProtocolError unless it is 4 bytes."""
    if len(body) != 4:
        raise ProtocolError(
            f"the peer's A-ASSOCIATE-RJ does not decode ({len(body)} bytes, not 4)", _HINT
        )
    return AssociateReject(body[1], body[2], body[3])


_Context = TypeVar("_Context", ProposedContext, ContextResult)


def _decode_pdu(
    body: bytes, context_type: int, decode_context: Callable[[bytes, int, int], _Context]
) -> tuple[bytes, bytes, str, tuple[_Context, ...], UserInformation]:
    """The fields and items A-ASSOCIATE-RQ and -AC share; AE titles are left raw."""
    if len(body) < _FIXED.size:
        raise _Malformed(f"{len(body)} bytes, fewer than its {_FIXED.size} fixed ones")
    _, called, calling = _FIXED.unpack_from(body)
    application: str | None = None
    contexts: dict[int, _Context] = {}
    user: UserInformation | None = None
    for item_type, at, start, end in _items(body, _FIXED.size, len(body)):
        if item_type == _APPLICATION_CONTEXT_ITEM:
            if application is not None:
                raise _Malformed("a second application context item")
            application = _decode_uid(body[start:end], "application context name")
        elif item_type == context_type:
            context = decode_context(body, start, end)
            if context.context_id in contexts:
                raise _Malformed(f"presentation context ID {context.context_id} appears twice")
            contexts[context.context_id] = context
        elif item_type == _USER_INFORMATION_ITEM:
            if user is not None:
                raise _Malformed("a second user information item")
            user = _decode_user(body, start, end)
        elif item_type in _DEFINED:
            raise _Malformed(f"an item of type 0x{item_type:02X} at byte {at}, out of place")
    if application is None:
        raise _Malformed("no application context item")
    if not contexts:
        raise _Malformed("no presentation context item")
    if user is None:
        raise _Malformed("no user information item")
    return called, calling, application, tuple(contexts.values()), user


def _items(body: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, PDU offset, value start, value end) of each item in ``body[start:end]``.

    The items must fill the span exactly: a length that overruns it, or bytes left over
    that cannot hold an item header, are errors.
    """
    offset = start
    while offset < end:
        at = offset + HEADER_LENGTH  # offsets in messages count from the PDU's first byte
        if end - offset < _ITEM.size:
            raise _Malformed(f"{end - offset} stray bytes at byte {at}, too few for an item")
        item_type, length = _ITEM.unpack_from(body, offset)
        value = offset + _ITEM.size
        if value + length > end:
            raise _Malformed(
                f"item 0x{item_type:02X} at byte {at} claims {length} bytes, {end - value} remain"
            )
        yield item_type, at, value, value + length
        offset = value + length


def _decode_proposed(body: bytes, start: int, end: int) -> ProposedContext:
    if end - start < 4:
        raise _Malformed(f"a presentation context item of {end - start} bytes")
    context_id = body[start]
    if context_id == 0:  # IDs are odd, 1 to 255 (PS3.8 9.3.2.2)
        raise _Malformed("a presentation context ID 0")
    abstract: str | None = None
    syntaxes: list[str] = []
    for item_type, at, value, value_end in _items(body, start + 4, end):
        if item_type == _ABSTRACT_SYNTAX_ITEM:
            if abstract is not None:
                raise _Malformed(f"presentation context {context_id} has two abstract syntaxes")
            abstract = _decode_uid(body[value:value_end], "abstract syntax")
        elif item_type == _TRANSFER_SYNTAX_ITEM:
            syntaxes.append(_decode_uid(body[value:value_end], "transfer syntax"))
        elif item_type in _DEFINED:
            raise _Malformed(f"an item of type 0x{item_type:02X} at byte {at}, out of place")
    if abstract is None:
        raise _Malformed(f"presentation context {context_id} has no abstract syntax")
    if not syntaxes:
        raise _Malformed(f"presentation context {context_id} has no transfer syntax")
    return ProposedContext(context_id, abstract, tuple(syntaxes))


def _decode_result(body: bytes, start: int, end: int) -> ContextResult:
    if end - start < 4:
        raise _Malformed(f"a presentation context item of {end - start} bytes")
    context_id, result = body[start], body[start + 2]
    syntaxes: list[str] = []
    for item_type, at, value, value_end in _items(body, start + 4, end):
        if item_type == _TRANSFER_SYNTAX_ITEM:
            raw = body[value:value_end]
            # Not significant when rejected (PS3.8 9.3.3.2); some stacks send it empty.
            if raw.strip(b" \x00") or result == ACCEPTANCE:
                syntaxes.append(_decode_uid(raw, "transfer syntax"))
        elif item_type in _DEFINED:
            raise _Malformed(f"an item of type 0x{item_type:02X} at byte {at}, out of place")
    if len(syntaxes) > 1:
        raise _Malformed(f"presentation context {context_id} has {len(syntaxes)} transfer syntaxes")
    if result == ACCEPTANCE and not syntaxes:
        raise _Malformed(f"presentation context {context_id} is accepted without transfer syntax")
    return ContextResult(context_id, result, syntaxes[0] if syntaxes else None)


def _decode_user(body: bytes, start: int, end: int) -> UserInformation:
    max_pdu: int | None = None
    class_uid: str | None = None
    version: str | None = None
    # Several for one SOP class are no error: DCMTK answers role selection once per
    # accepted presentation context.
    roles: list[RoleSelection] = []
    extended: list[ExtendedNegotiation] = []
    for item_type, at, value_start, value_end in _items(body, start, end):
        value = body[value_start:value_end]
        if item_type == _MAXIMUM_LENGTH_ITEM:
            if max_pdu is not None:
                raise _Malformed("a second maximum length sub-item")
            if len(value) != _MAXIMUM_LENGTH.size:
                raise _Malformed(f"a maximum length sub-item of {len(value)} bytes, not 4")
            (max_pdu,) = _MAXIMUM_LENGTH.unpack(value)
        elif item_type == _IMPLEMENTATION_CLASS_UID_ITEM:
            if class_uid is not None:
                raise _Malformed("a second implementation class UID sub-item")
            class_uid = _informational(value)
        elif item_type == _IMPLEMENTATION_VERSION_NAME_ITEM:
            if version is not None:
                raise _Malformed("a second implementation version name sub-item")
            version = _informational(value)
        elif item_type == _ROLE_SELECTION_ITEM:
            sop_class, rest = _sop_class_prefix(value, at, "role selection")
            if len(rest) != 2 or not set(rest) <= {0, 1}:
                raise _Malformed(f"the role selection sub-item at byte {at} has bad roles")
            roles.append(RoleSelection(sop_class, bool(rest[0]), bool(rest[1])))
        elif item_type == _EXTENDED_NEGOTIATION_ITEM:
            sop_class, rest = _sop_class_prefix(value, at, "extended negotiation")
            extended.append(ExtendedNegotiation(sop_class, rest))
        # Sub-items we do not use (asynchronous operations window, user identity, ...)
        # or do not know are skipped.
    return UserInformation(
        max_pdu,
        class_uid or "",
        version or "",
        tuple(roles),
        tuple(extended),
    )


def _sop_class_prefix(value: bytes, at: int, what: str) -> tuple[str, bytes]:
    """The SOP class UID a role selection or extended negotiation sub-item starts with."""
    if len(value) < _UID_LENGTH.size:
        raise _Malformed(f"the {what} sub-item at byte {at} is {len(value)} bytes long")
    (length,) = _UID_LENGTH.unpack_from(value)
    end = _UID_LENGTH.size + length
    if end > len(value):
        raise _Malformed(f"the {what} sub-item at byte {at} has a UID longer than itself")
    return _decode_uid(value[_UID_LENGTH.size : end], "SOP class UID"), value[end:]


def _informational(raw: bytes) -> str:
    """The peer's implementation class UID or version name: shown, never acted on, so
    odd bytes in them are replaced rather than refusing the association."""
    return raw.decode("ascii", "replace").rstrip("\x00 ")


def _decode_text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _Malformed(f"the {what} {raw!r} is not ASCII") from None
    return text.rstrip("\x00 ")  # UIDs may be padded with a NUL, or a space by some


def _decode_uid(raw: bytes, what: str) -> str:
    uid = _decode_text(raw, what).lstrip(" ")
    if not uid:
        raise _Malformed(f"an empty {what}")
    if len(uid) > _UID_MAX:
        raise _Malformed(f"the {what} has {len(uid)} characters, over {_UID_MAX}")
    return uid


def _decode_ae(raw: bytes, what: str) -> str:
    title = _decode_text(raw, what).strip(" ")
    if not title:
        raise _Malformed(f"a blank {what}")
    if any(not " " <= c <= "~" or c == "\\" for c in title):
        raise _Malformed(f"the {what} {title!r} has characters AE titles may not have")
    return title

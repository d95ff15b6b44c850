"""Property tests of the upper-layer and DIMSE parsers (hypothesis).

Whatever bytes a peer sends, parsing either succeeds or raises the typed error of the
network core (qrclient.net.errors): never IndexError, struct.error, UnicodeDecodeError
or a pynetdicom exception. Valid input round-trips.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import fields
from typing import TypeVar

import anyio
import pytest
from anyio.abc import ByteStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrclient.net import (
    ContextRequest,
    DicomNetworkError,
    ProtocolError,
    Settings,
    Timeouts,
)
from qrclient.net.acse import AssociateAccept, decode_associate_rq
from qrclient.net.association import Association
from qrclient.net.dimse import (
    _TABLE,
    Command,
    CommandField,
    decode_command,
    encode_command,
    response_to,
)
from qrclient.net.listener import StorageListener
from qrclient.net.negotiation import Refused, answer_request, propose, read_answer
from qrclient.net.pdu import (
    HEADER,
    HEADER_LENGTH,
    PDV_OVERHEAD,
    PduReader,
    PduType,
    encode_p_data,
    parse_pdvs,
)
from qrclient.net.presentation import DEFAULT_TRANSFER_SYNTAXES, NegotiatedContext
from qrclient.net.uids import VERIFICATION
from tests.fakepeer import associate_rq

# Mutated UIDs are the point; pydicom need not warn about each one.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")
MAX_PDU = 16384
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
T = TypeVar("T")
# Whole-association examples run an event loop each: fewer of them, no deadline.
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class MemoryStream(ByteStream):
    """A peer's bytes, handed out in the given chunks; what we send is recorded."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        if not self.chunks:
            raise anyio.EndOfStream
        chunk = self.chunks.pop(0)
        if len(chunk) > max_bytes:
            self.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        self.sent.append(bytes(item))

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def typed(call: Callable[[], T]) -> T | DicomNetworkError:
    """The result of ``call``, or the typed error it raised (anything else propagates)."""
    try:
        return call()
    except DicomNetworkError as exc:
        return exc


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the given offsets (as TCP may deliver it)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 overwrite, 1 insert, 2 delete."""
    buffer = bytearray(data)
    for kind, position, value in edits:
        where = position % (len(buffer) + 1)
        if kind == 0 and where < len(buffer):
            buffer[where] = value
        elif kind == 1:
            buffer.insert(where, value)
        elif where < len(buffer):
            del buffer[where]
    return bytes(buffer)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1,
    max_size=8,
)


# -- P-DATA-TF and PDVs ------------------------------------------------------------------


@given(st.binary(max_size=600))
def test_pdv_parser_on_random_bytes(body: bytes) -> None:
    pdvs = typed(lambda: parse_pdvs(body))
    if isinstance(pdvs, DicomNetworkError):
        assert isinstance(pdvs, ProtocolError)
        assert pdvs.hint
        return
    # Accepted only when the lengths add up exactly.
    assert sum(PDV_OVERHEAD + len(p.data) for p in pdvs) == len(body)


@given(
    context_id=st.integers(1, 255).filter(lambda i: i % 2 == 1),
    is_command=st.booleans(),
    payload=st.binary(max_size=3000),
    peer_max_pdu=st.sampled_from([0, 7, 8, 100, 4096, 16384]),
)
def test_p_data_round_trips(
    context_id: int, is_command: bool, payload: bytes, peer_max_pdu: int
) -> None:
    pdus = list(encode_p_data(context_id, is_command, payload, peer_max_pdu))
    joined = b""
    for number, raw in enumerate(pdus):
        pdu_type, length = HEADER.unpack_from(raw)
        assert pdu_type == PduType.P_DATA_TF
        assert length == len(raw) - HEADER_LENGTH
        if peer_max_pdu:
            assert length <= max(peer_max_pdu, PDV_OVERHEAD + 1)
        (pdv,) = parse_pdvs(raw[HEADER_LENGTH:])
        assert (pdv.context_id, pdv.is_command) == (context_id, is_command)
        assert pdv.is_last == (number == len(pdus) - 1)
        joined += pdv.data
    assert joined == payload


@given(payload=st.binary(min_size=1, max_size=400), edits=EDITS)
def test_mutated_p_data_is_parsed_or_refused(
    payload: bytes, edits: list[tuple[int, int, int]]
) -> None:
    (raw,) = encode_p_data(1, True, payload, 0)
    body = mutate(raw[HEADER_LENGTH:], edits)
    pdvs = typed(lambda: parse_pdvs(body))
    if isinstance(pdvs, DicomNetworkError):
        return
    assert sum(PDV_OVERHEAD + len(p.data) for p in pdvs) == len(body)


# -- the PDU reader ------------------------------------------------------------------------


async def read_all(reader: PduReader) -> list[tuple[int, bytes]]:
    out = []
    while True:
        try:
            out.append(await reader.read())
        except DicomNetworkError as exc:
            error = exc
            break
    assert error.hint
    return out


@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_pdu_reader_on_random_bytes(data: bytes, cuts: list[int]) -> None:
    read = anyio.run(read_all, PduReader(MemoryStream(chunked(data, cuts)), MAX_PDU))
    # Whatever it handed out are whole PDUs taken from the front of the stream.
    consumed = b"".join(HEADER.pack(t, len(b)) + b for t, b in read)
    assert data.startswith(consumed)


@given(
    pdus=st.lists(st.tuples(st.sampled_from(list(PduType)), st.binary(max_size=300)), max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_pdu_reader_round_trips_in_any_chunking(
    pdus: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = b"".join(HEADER.pack(t, len(b)) + b for t, b in pdus)
    read = anyio.run(read_all, PduReader(MemoryStream(chunked(data, cuts)), MAX_PDU))
    assert read == pdus


@given(
    pdus=st.lists(st.tuples(st.sampled_from(list(PduType)), st.binary(max_size=300)), max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
    greed=st.lists(st.integers(1, 3), min_size=1, max_size=10),
)
def test_pdu_reader_keeps_every_byte_when_receiving_before_asking(
    pdus: list[tuple[int, bytes]], cuts: list[int], greed: list[int]
) -> None:
    # Receiving several chunks before taking PDUs out: a PDU may then end several
    # chunks back, and what follows it must stay buffered in order.
    data = b"".join(HEADER.pack(t, len(b)) + b for t, b in pdus)
    stream = MemoryStream(chunked(data, cuts))
    reader = PduReader(stream, MAX_PDU)

    async def read_greedily() -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for step in itertools.cycle(greed):
            while (item := reader.next_buffered()) is not None:
                out.append((item[0], bytes(item[1])))
            if len(out) == len(pdus):
                return out
            assert stream.chunks, f"{len(out)} of {len(pdus)} PDUs when the bytes ran out"
            for _ in range(min(step, len(stream.chunks))):
                await reader.receive_more()
        raise AssertionError("unreachable")

    assert anyio.run(read_greedily) == pdus


@given(pdu_type=st.sampled_from(list(PduType)), length=st.integers(1 << 21, (1 << 32) - 1))
def test_pdu_reader_refuses_lengths_beyond_the_maximum_before_reading_them(
    pdu_type: int, length: int
) -> None:
    stream = MemoryStream([HEADER.pack(pdu_type, length), b"\x00" * 1000])

    async def first() -> None:
        await PduReader(stream, MAX_PDU).read()

    with pytest.raises(ProtocolError, match=f"PDU of {length} bytes"):
        anyio.run(first)
    # Refused on the header alone: the rest of the stream was never asked for.
    assert stream.chunks == [b"\x00" * 1000]


# -- DIMSE command sets ---------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_command_decoder_on_random_bytes(data: bytes) -> None:
    command = typed(lambda: decode_command(data))
    if isinstance(command, DicomNetworkError):
        assert isinstance(command, ProtocolError)
        assert command.hint
        return
    assert isinstance(command.command_field, int)


UIDS = st.from_regex(r"[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){0,6}", fullmatch=True)
AE_TITLES = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)
US = st.integers(0, 0xFFFF)


def command_values() -> st.SearchStrategy[dict[str, object]]:
    by_kind: dict[str, st.SearchStrategy[object]] = {
        "UI": UIDS,
        "US": US,
        "AE": AE_TITLES,
        "LO": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ]{0,30}[A-Za-z0-9]", fullmatch=True),
        "AT": st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=3).map(tuple),
    }
    optional = {
        name: st.none() | by_kind[kind]
        for name, kind in _TABLE.values()
        if name not in ("command_field", "command_data_set_type")
    }
    return st.fixed_dictionaries(
        {"command_field": US, "command_data_set_type": st.sampled_from([0x0000, 0x0101])},
        optional=optional,
    )


@given(command_values())
def test_command_round_trips(values: dict[str, object]) -> None:
    command = Command(**values)  # type: ignore[arg-type]
    back = decode_command(encode_command(command))
    for f in fields(Command):
        if f.name != "unknown":
            assert getattr(back, f.name) == getattr(command, f.name), f.name
    assert back.unknown == {}


def test_a_command_set_with_dcmtks_trailing_identifier_is_decoded() -> None:
    """DCMTK (Orthanc 1.10) appends a pending C-GET-RSP's Failed SOP Instance UID List
    to the command set's own PDV; the command group itself is complete and valid."""
    pending = Command(
        command_field=0x8010, message_id_being_responded_to=2, status=0xFF00, failed=1
    )
    uid = b"1.2.3.4\x00"
    trailing = struct.pack("<HHL", 8, 0, 4) + struct.pack("<L", 8 + len(uid))
    trailing += struct.pack("<HHL", 8, 0x58, len(uid)) + uid
    back = decode_command(encode_command(pending) + trailing)
    assert (back.command_field, back.status, back.failed) == (0x8010, 0xFF00, 1)


@given(values=command_values(), edits=EDITS)
def test_mutated_command_sets_decode_or_are_refused(
    values: dict[str, object], edits: list[tuple[int, int, int]]
) -> None:
    data = mutate(encode_command(Command(**values)), edits)  # type: ignore[arg-type]
    result = typed(lambda: decode_command(data))
    assert isinstance(result, Command | ProtocolError)


@given(values=command_values(), edits=EDITS)
def test_whatever_decodes_can_be_echoed_in_a_response(
    values: dict[str, object], edits: list[tuple[int, int, int]]
) -> None:
    """A response echoes the request's UIDs (PS3.7): whatever bytes they hold, the
    response encodes, and carries the peer's own bytes back."""
    data = mutate(encode_command(Command(**values)), edits)  # type: ignore[arg-type]
    request = typed(lambda: decode_command(data))
    if isinstance(request, DicomNetworkError):
        return
    echoed = decode_command(encode_command(response_to(request, CommandField.C_STORE_RSP, 0)))
    assert echoed.affected_sop_class_uid == request.affected_sop_class_uid
    assert echoed.affected_sop_instance_uid == request.affected_sop_instance_uid


def test_a_non_ascii_uid_is_echoed_byte_for_byte() -> None:
    raw = b"1.2.\xe9\xff.3"
    request = encode_command(Command(CommandField.C_ECHO_RQ, message_id=1))
    element = struct.pack("<HHL", 0, 0x0002, len(raw)) + raw
    request = (
        struct.pack("<HHLL", 0, 0, 4, len(request) - 12 + len(element)) + element + request[12:]
    )
    answer = encode_command(response_to(decode_command(request), CommandField.C_ECHO_RSP, 0))
    assert element in answer


# -- association negotiation on both sides ----------------------------------------------------


def valid_ac(called: str = "PEER", calling: str = "QRCLIENT") -> bytes:
    """The A-ASSOCIATE-AC a well-behaved peer answers our Verification proposal with."""
    rq = associate_rq(called, calling, [VERIFICATION])
    # An acceptor echoes the RQ's fixed fields; its items: application context, one
    # accepted context (ID 1, Explicit VR Little Endian) and the user information.
    start = HEADER_LENGTH + 68
    fixed = rq[HEADER_LENGTH:start]
    (application_length,) = struct.unpack_from(">H", rq, start + 2)
    application = rq[start : start + 4 + application_length]
    syntax = b"1.2.840.10008.1.2.1\x00"
    transfer = b"\x40\x00" + struct.pack(">H", len(syntax)) + syntax
    context = b"\x21\x00" + struct.pack(">H", 4 + len(transfer)) + b"\x01\x00\x00\x00" + transfer
    user = b"\x51\x00\x00\x04" + struct.pack(">L", 16384)
    user_item = b"\x50\x00" + struct.pack(">H", len(user)) + user
    body = fixed + application + context + user_item
    return HEADER.pack(PduType.ASSOCIATE_AC, len(body)) + body


def negotiate(answer: bytes) -> tuple[AssociateAccept, list[NegotiatedContext]]:
    """What we make of ``answer`` (a whole PDU) to our Verification proposal."""
    request = propose("PEER", "QRCLIENT", MAX_PDU, [ContextRequest(VERIFICATION)])
    return read_answer(request, answer[0], answer[HEADER_LENGTH:])


def test_the_valid_ac_used_below_is_accepted() -> None:
    accept, contexts = negotiate(valid_ac())
    assert [c.accepted for c in contexts] == [True]
    assert accept.user.max_pdu == 16384


@SLOW
@given(edits=EDITS)
def test_a_mutated_associate_ac_is_accepted_or_refused_typed(
    edits: list[tuple[int, int, int]],
) -> None:
    answer = typed(lambda: negotiate(mutate(valid_ac(), edits)))
    if isinstance(answer, DicomNetworkError):
        assert answer.message
        assert answer.hint
        return
    # Accepted: then it still makes sense (the one proposed context, a proposed syntax).
    _, contexts = answer
    assert [c.context_id for c in contexts] == [1]
    assert all(c.transfer_syntax in DEFAULT_TRANSFER_SYNTAXES for c in contexts if c.accepted)


@SLOW
@given(st.binary(max_size=300))
def test_random_bytes_as_associate_ac_are_refused_typed(body: bytes) -> None:
    try:
        negotiate(HEADER.pack(PduType.ASSOCIATE_AC, len(body)) + body)
    except DicomNetworkError:
        return
    raise AssertionError("random bytes were accepted as an A-ASSOCIATE-AC")


class AllowAll:
    def allows(self, calling_ae: str, address: str) -> bool:
        return True

    async def store(self, association: Association, context_id: int, command: object) -> Answer:
        return Answer()


class Answer:
    status = 0
    comment = None

    def settle(self) -> None:
        pass


@SLOW
@given(edits=EDITS)
def test_the_listener_answers_any_mutated_associate_rq_that_decodes(
    edits: list[tuple[int, int, int]],
) -> None:
    """What decodes as an A-ASSOCIATE-RQ gets an AC or RJ that encodes (the rest is
    aborted: test_the_listener_survives_any_bytes_before_association)."""
    data = mutate(associate_rq("QRLISTEN", "HOSTILE", [VERIFICATION]), edits)
    try:
        request = decode_associate_rq(data[HEADER_LENGTH:])
    except ProtocolError:
        return
    answer = answer_request(
        request, ae_title="QRLISTEN", address="127.0.0.1", allows=AllowAll().allows, max_pdu=MAX_PDU
    )
    sent = answer.answer.encode()
    if isinstance(answer, Refused):
        assert sent[0] == PduType.ASSOCIATE_RJ
        assert request.called_ae != "QRLISTEN"
    else:
        assert sent[0] == PduType.ASSOCIATE_AC
        assert [c.context_id for c in answer.contexts] == sorted(
            c.context_id for c in request.contexts
        )


class SilentAfter(MemoryStream):
    """The peer's bytes, then silence (never closing): only our deadlines end it."""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            await anyio.sleep_forever()
        return await super().receive(max_bytes)


PRE_ASSOCIATION_BOUND = 5.0  # seconds any example may take; the deadline is far shorter


async def listener_handles(chunks: list[bytes], silent: bool) -> tuple[StorageListener, bytes]:
    """Run the listener's whole handling of one connection on ``chunks``."""
    timeouts = Timeouts(association=0.05, dimse=0.05, network=0.05)
    settings = Settings(calling_ae="QRLISTEN", timeouts=timeouts)
    listener = StorageListener("QRLISTEN", AllowAll(), settings=settings)
    stream = SilentAfter(chunks) if silent else MemoryStream(chunks)
    with anyio.fail_after(PRE_ASSOCIATION_BOUND):
        await listener._handle(stream)  # returns: the connection is then closed
    return listener, b"".join(stream.sent)


def sent_pdu_types(sent: bytes) -> list[int]:
    """The types of the whole PDUs in ``sent``, which must hold nothing else."""
    types, offset = [], 0
    while offset < len(sent):
        pdu_type, length = HEADER.unpack_from(sent, offset)
        offset += HEADER_LENGTH + length
        types.append(pdu_type)
    assert offset == len(sent)
    return types


ASSOCIATE_RQ_BYTES = st.one_of(
    st.builds(
        mutate, st.just(associate_rq("QRLISTEN", "HOSTILE", [VERIFICATION, CT_IMAGE])), EDITS
    ),
    st.binary(max_size=400).map(lambda body: HEADER.pack(PduType.ASSOCIATE_RQ, len(body)) + body),
    st.binary(max_size=400),
)


@SLOW
@given(
    data=ASSOCIATE_RQ_BYTES, cuts=st.lists(st.integers(0, 2000), max_size=6), silent=st.booleans()
)
def test_the_listener_survives_any_bytes_before_association(
    data: bytes, cuts: list[int], silent: bool
) -> None:
    """Random or garbled A-ASSOCIATE-RQ bytes, in any chunks, then the peer closes or goes
    silent: the listener never raises, answers only with whole A-ASSOCIATE-AC, -RJ or
    A-ABORT PDUs (more only once associated), and is done within the bound."""
    listener, sent = anyio.run(listener_handles, chunked(data, cuts), silent)
    types = sent_pdu_types(sent)
    if types and types[0] == PduType.ASSOCIATE_AC:
        assert set(types[1:]) <= {PduType.P_DATA_TF, PduType.RELEASE_RP, PduType.ABORT}
    else:
        assert set(types) <= {PduType.ASSOCIATE_RJ, PduType.ABORT}, types
    assert not any("internal error" in r.reason for r in listener.refusals)

"""Hostile or broken peers, scripted (tests/fakepeer.py): what Orthanc never does.

Each case must end the association with a typed error that says what happened and what
to change: never a crash, a hang (every test is bounded by ``fail_after``) or a task
left running. Both sides are covered: our association to a broken PACS, and a broken
or hostile peer connecting to our storage listener.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pydicom
import pytest
from anyio.abc import ByteStream
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from qrclient.jobs.retrieve import move_listener
from qrclient.net import (
    AssociationAborted,
    ContextRequest,
    DicomNetworkError,
    DicomTimeout,
    Peer,
    ProtocolError,
    Settings,
    Timeouts,
    open_association,
)
from qrclient.net import association as association_module
from qrclient.net.acse import UserInformation
from qrclient.net.association import MAX_DATASET_IN_MEMORY, Association, PeerReleased
from qrclient.net.dimse import Command, CommandField
from qrclient.net.errors import DataSetTooLarge
from qrclient.net.events import Event, ReleasedByPeer, record
from qrclient.net.listener import (
    MAX_ASSOCIATE_RQ,
    MAX_REFUSALS,
    MAX_UNASSOCIATED,
    StorageListener,
)
from qrclient.net.presentation import NegotiatedContext
from qrclient.net.uids import VERIFICATION
from qrclient.net.walk import MAX_DEPTH
from qrclient.ops.echo import echo
from qrclient.ops.find import find, find_values
from qrclient.ops.get import SubOperations, c_get
from qrclient.ops.move import MoveRouter, c_move
from qrclient.ops.progress import Progress
from qrclient.ops.query import Query, build_query, parse_key
from qrclient.ops.storing import TOO_LARGE, Arrival, receive_instance
from qrclient.present.events import describe_event
from qrclient.store import Store
from qrclient.vocabulary import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, Level, Model
from tests.fakepeer import (
    HEADER,
    PeerConnection,
    Script,
    associate_rq,
    c_store_rq,
    encode_command_set,
    fake_peer,
    hostile_client,
    p_data,
    response,
)

pytestmark = pytest.mark.anyio

LIMIT = 5.0  # seconds any case may take: the failures under test are all immediate
CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.8.498.77"


def running_tasks() -> int:
    return len(anyio.get_running_tasks())


def assert_explained(error: BaseException) -> None:
    """A typed network error with a one-line message and a hint."""
    assert isinstance(error, DicomNetworkError), repr(error)
    assert error.message, repr(error)
    assert error.hint, repr(error)
    assert "\n" not in str(error)


async def drain(conn: PeerConnection) -> None:
    """Read what qrclient still sends (A-ABORT, or A-RELEASE answered) until it closes."""
    while True:
        pdu_type, _ = await conn.read_pdu()
        if pdu_type == 5:
            await conn.send_raw(pdu(6, b"\x00" * 4))


# -- as the requestor: our association to a broken PACS ---------------------------------


def after_echo_rq(hostile: bytes) -> Script:
    """Accept, read the C-ECHO-RQ, answer ``hostile``."""

    async def script(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        await conn.send_raw(hostile)
        await drain(conn)

    return script


def as_association_answer(hostile: bytes) -> Script:
    """Answer the A-ASSOCIATE-RQ with ``hostile``."""

    async def script(conn: PeerConnection) -> None:
        await conn.read_pdu()
        await conn.send_raw(hostile)
        await drain(conn)

    return script


def accepting(**answer: object) -> Script:
    """Accept with a hostile A-ASSOCIATE-AC (see PeerConnection.accept)."""

    async def script(conn: PeerConnection) -> None:
        await conn.accept(**answer)  # type: ignore[arg-type]
        await drain(conn)

    return script


def pdu(pdu_type: int, body: bytes) -> bytes:
    return HEADER.pack(pdu_type, len(body)) + body


def pdv(context_id: int, control: int, data: bytes, length: int | None = None) -> bytes:
    size = len(data) + 2 if length is None else length
    return struct.pack(">LBB", size, context_id, control) + data


def command(**values: object) -> bytes:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return encode_command_set(ds)


def echo_rsp(message_id: int, command_field: int = 0x8030) -> bytes:
    ds = response(command_field, message_id, 0, VERIFICATION)
    return p_data(1, 0x03, encode_command_set(ds))


def element(tag_element: int, value: bytes, length: int | None = None) -> bytes:
    size = len(value) if length is None else length
    return struct.pack("<HHL", 0, tag_element, size) + value


REQUESTOR_CASES = [
    pytest.param(
        as_association_answer(pdu(2, b"\xff" * 40)),
        ProtocolError,
        "A-ASSOCIATE-AC does not decode",
        id="associate-ac-garbage",
    ),
    pytest.param(
        as_association_answer(pdu(0x09, b"\x00" * 4)),
        ProtocolError,
        "unknown PDU type 0x09",
        id="unknown-pdu-type-as-answer",
    ),
    pytest.param(
        as_association_answer(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        ProtocolError,
        "speaks HTTP, not DICOM (it answered 'HTTP/1.1 400 Bad Request')",
        id="http-server-on-the-port",
    ),
    pytest.param(
        as_association_answer(pdu(4, pdv(1, 3, b"\x00" * 8))),
        ProtocolError,
        "answered A-ASSOCIATE-RQ with PDU type 0x04",
        id="p-data-before-associate-ac",
    ),
    pytest.param(
        as_association_answer(b"\x02\x00\xff\xff\xff\xff"),
        ProtocolError,
        "beyond the",
        id="associate-ac-of-4-gb",
    ),
    pytest.param(
        accepting(extra_ids=(99,)),
        ProtocolError,
        "presentation context 99, never proposed",
        id="ac-accepts-a-context-never-proposed",
    ),
    pytest.param(
        accepting(syntax="1.2.840.10008.1.2.4.50"),
        ProtocolError,
        "transfer syntax 1.2.840.10008.1.2.4.50",
        id="ac-accepts-a-transfer-syntax-never-proposed",
    ),
    pytest.param(
        after_echo_rq(pdu(0x0A, b"\x00" * 4)),
        ProtocolError,
        "unknown PDU type 0x0A",
        id="unknown-pdu-type",
    ),
    pytest.param(
        after_echo_rq(pdu(1, b"\x00" * 4)),
        ProtocolError,
        "unexpected PDU type 0x01",
        id="associate-rq-during-the-association",
    ),
    pytest.param(
        after_echo_rq(b"\x04\x00\x7f\xff\xff\xff"),
        ProtocolError,
        "beyond the",
        id="p-data-of-2-gb",
    ),
    pytest.param(
        after_echo_rq(b"\x04\x00\x00\x11\x00\x06"),
        ProtocolError,
        "beyond the",
        id="p-data-just-over-the-maximum",
    ),
    pytest.param(
        after_echo_rq(pdu(4, b"")),
        ProtocolError,
        "without any PDV",
        id="p-data-without-pdv",
    ),
    pytest.param(
        after_echo_rq(pdu(4, pdv(1, 3, b"\x00" * 10, length=1000))),
        ProtocolError,
        "PDV length 1000 does not fit",
        id="pdv-longer-than-its-pdu",
    ),
    pytest.param(
        after_echo_rq(pdu(4, pdv(1, 3, b"", length=1))),
        ProtocolError,
        "PDV length 1 does not fit",
        id="pdv-shorter-than-its-header",
    ),
    pytest.param(
        after_echo_rq(pdu(4, pdv(1, 3, b"\x00" * 8) + b"\x00\x00\x00")),
        ProtocolError,
        "ends inside a PDV header",
        id="pdv-lengths-leave-trailing-bytes",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x03, b"\x01\x02\x03")),
        ProtocolError,
        "command set that does not decode",
        id="command-set-garbage",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x03, element(0x0100, b"\x30\x80", length=0xFFFF))),
        ProtocolError,
        "command set that does not decode",
        id="command-element-longer-than-the-set",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x03, element(0x0100, b"\x30\x80\x00\x00"))),
        ProtocolError,
        "US value of 4 bytes",
        id="command-field-of-4-bytes",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x03, struct.pack("<HHL", 8, 0x10, 0))),
        ProtocolError,
        "command set that does not decode (element (0008,0010)",
        id="command-set-outside-group-0000",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x03, b"\x00" * 70_000)),
        ProtocolError,
        "command set of over 65536 bytes",
        id="command-set-of-70-kb",
    ),
    pytest.param(
        after_echo_rq(pdu(4, pdv(1, 0x01, b"\x00" * 40_000)) * 2 + echo_rsp(1)),
        ProtocolError,
        "command set of over 65536 bytes",
        id="command-set-of-80-kb-in-fragments",
    ),
    pytest.param(
        after_echo_rq(pdu(4, pdv(1, 0x01, b"") * 100) + echo_rsp(1)),
        ProtocolError,
        "split a message into 65 fragments for 0 bytes",
        id="command-set-in-empty-fragments",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x03, command(MessageIDBeingRespondedTo=1, Status=0))),
        ProtocolError,
        "without CommandField",
        id="command-set-without-command-field",
    ),
    pytest.param(
        after_echo_rq(echo_rsp(0xFFFE)),
        ProtocolError,
        "C-ECHO-RSP for message 65534",
        id="response-to-a-message-never-sent",
    ),
    pytest.param(
        after_echo_rq(echo_rsp(0, command_field=0x8020)),
        ProtocolError,
        "with C-FIND-RSP",
        id="response-of-the-wrong-kind",
    ),
    pytest.param(
        after_echo_rq(p_data(1, 0x02, b"\x00" * 8)),
        ProtocolError,
        "data set fragment where a command was expected",
        id="data-set-instead-of-command",
    ),
    pytest.param(
        after_echo_rq(p_data(7, 0x03, command(CommandField=0x8030))),
        ProtocolError,
        "presentation context 7, which was not accepted",
        id="pdv-on-a-context-never-accepted",
    ),
    pytest.param(
        after_echo_rq(pdu(4, pdv(1, 1, b"\x00" * 4)) + pdu(4, pdv(1, 2, b"\x00" * 4))),
        ProtocolError,
        "interleaved another fragment into a command set",
        id="command-set-continued-as-data-set",
    ),
    pytest.param(
        after_echo_rq(pdu(5, b"\x00" * 4)),
        PeerReleased,
        "released the association before answering",
        id="release-instead-of-answer",
    ),
    pytest.param(
        after_echo_rq(pdu(7, b"\x00\x00\x02\x06")),
        AssociationAborted,
        "invalid PDU parameter value",
        id="abort-from-the-provider",
    ),
]


@pytest.mark.parametrize(("script", "kind", "words"), REQUESTOR_CASES)
async def test_a_broken_pacs_ends_the_association_with_a_clear_error(
    script: Script, kind: type[DicomNetworkError], words: str
) -> None:
    before = running_tasks()
    async with fake_peer(script) as (port, conns):
        with anyio.fail_after(LIMIT), pytest.raises(DicomNetworkError) as caught:
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)]
            ) as assoc:
                await echo(assoc)
        with anyio.fail_after(LIMIT):
            await conns[0].closed.wait()
    log = conns[0].log
    assert log[-1] == "closed-by-client"
    if kind is ProtocolError and "command-0030" in log:
        assert "pdu-07" in log, log  # associated: we told the peer with A-ABORT
    assert running_tasks() == before
    assert isinstance(caught.value, kind), repr(caught.value)
    assert words in caught.value.message
    assert_explained(caught.value)


async def test_a_peer_that_hangs_up_mid_pdu_is_an_abort() -> None:
    async def half(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        await conn.send_raw(echo_rsp(1)[:9])
        await conn.stream.send_eof()
        await drain(conn)

    async with fake_peer(half) as (port, _):
        with anyio.fail_after(LIMIT), pytest.raises(AssociationAborted) as caught:
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)]
            ) as assoc:
                await echo(assoc)
    assert "closed the connection" in caught.value.message
    assert_explained(caught.value)


async def test_a_pdu_that_stops_mid_way_is_a_named_timeout() -> None:
    """The header promises more than ever comes: the timeout names itself and its option."""

    async def stall(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        await conn.send_raw(echo_rsp(1)[:16])
        await drain(conn)

    error, conn = await echo_timing_out(stall, Timeouts(dimse=0.3, network=0.3))
    assert error.which == "dimse"
    assert "--dimse-timeout" in error.hint
    assert "pdu-07" in conn.log


async def echo_timing_out(
    script: Script, timeouts: Timeouts
) -> tuple[DicomTimeout, PeerConnection]:
    """A C-ECHO to the peer ``script`` plays, which must end in a timeout; the timeout
    and the peer's connection once we closed it."""
    settings = Settings(timeouts=timeouts)
    async with fake_peer(script) as (port, conns):
        with anyio.fail_after(LIMIT), pytest.raises(DicomTimeout) as caught:
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)], settings
            ) as assoc:
                await echo(assoc)
        with anyio.fail_after(LIMIT):
            await conns[0].closed.wait()
    return caught.value, conns[0]


# -- C-STORE sub-operations that try to climb out of the store ---------------------------

# The peer writes values pydicom would warn about: that is the point.
UNCHECKED_VALUES = pytest.mark.filterwarnings(
    "ignore:Invalid value for VR", "ignore:The value length"
)
CLIMBING_UIDS = [
    "../../../../tmp/evil",
    "/etc/passwd",
    "1.2.3\x00.4",
    "1.2.3/../../4",
    "1." + "2" * 80,
    "CON",
    "..",
    "",
]
REFUSED = len(CLIMBING_UIDS) + 1  # see hostile_instances
CLIMBING_PATIENT_IDS = [
    "../../../../outside",
    "/etc",
    "a\x00b",
    "..",
    "CON",
    "NUL.txt",
    "x" * 64,
    "..\\..\\windows",
]


def instance(uid: str, patient_id: str, number: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = uid
    ds.PatientID = patient_id
    ds.StudyInstanceUID = f"{ROOT}.1"
    ds.SeriesInstanceUID = f"{ROOT}.1.{number % 2}"
    ds.InstanceNumber = number
    return ds


def hostile_instances() -> Iterator[tuple[str, Dataset]]:
    """(UID announced by the C-STORE-RQ, data set): REFUSED bad UIDs, then bad patient IDs."""
    for number, uid in enumerate(CLIMBING_UIDS):
        yield uid, instance(uid, "PAT", number)
    # A valid UID announced, a climbing one in the data set.
    yield f"{ROOT}.3.1", instance("../../../evil", "PAT", 99)
    for number, patient_id in enumerate(CLIMBING_PATIENT_IDS):
        uid = f"{ROOT}.2.{number}"
        yield uid, instance(uid, patient_id, number)


def encode_instance(ds: Dataset) -> bytes:
    # pydicom refuses to write some of these values itself; write them raw, as a peer can.
    raw = encode(ds, False, True)
    assert raw is not None
    return bytes(raw)


def files_outside(top: Path, store_root: Path) -> list[Path]:
    return [p for p in top.rglob("*") if p.is_file() and not p.is_relative_to(store_root)]


def assert_store_true(store: Store, expected: set[str]) -> None:
    """Every file is inside the root, parses, and the index matches the files."""
    assert store.verify() == []
    stored = {i.sop_instance_uid: i for i in store.instances()}
    assert set(stored) == expected
    for uid, item in stored.items():
        path = (store.root / item.path).resolve()
        assert path.is_relative_to(store.root.resolve())
        assert pydicom.dcmread(path).SOPInstanceUID == uid
        assert ".." not in Path(item.path).parts
    assert not any((store.root / ".qrclient" / "incoming").iterdir())


@UNCHECKED_VALUES
async def test_c_get_with_climbing_uids_writes_nothing_outside_the_store(tmp_path: Path) -> None:
    statuses: list[int] = []

    async def climbing(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        storage = next(i for i, uid in conn.contexts.items() if uid == CT)
        for number, (uid, ds) in enumerate(hostile_instances(), start=1):
            store_rq = c_store_rq(number, CT, uid)
            store_rq.CommandDataSetType = 0x0000
            await conn.send_raw(p_data(storage, 0x03, encode_command_set(store_rq)))
            await conn.send_raw(p_data(storage, 0x02, encode_instance(ds)))
            _, answer, _ = await conn.read_message()
            statuses.append(int(answer.Status))
        final = response(0x8010, int(request.MessageID), 0, str(request.AffectedSOPClassUID))
        await conn.send_message(context_id, final)
        await drain(conn)

    with Store.open(tmp_path / "store") as store:
        async with fake_peer(climbing) as (port, _):
            with anyio.fail_after(LIMIT * 2):
                async with open_association(
                    Peer("FAKE", "127.0.0.1", port),
                    [ContextRequest(STUDY_ROOT_GET), ContextRequest(CT, scp_role=True)],
                ) as assoc:
                    identifier = Dataset()
                    identifier.QueryRetrieveLevel = "STUDY"
                    identifier.StudyInstanceUID = f"{ROOT}.1"
                    result = await c_get(assoc, identifier, STUDY_ROOT_GET, store)
        good = {f"{ROOT}.2.{n}" for n in range(len(CLIMBING_PATIENT_IDS))}
        # Every bad UID refused (0xA700, named in the errors), every bad patient ID stored
        # under a sanitised directory name.
        assert statuses == [0xA700] * REFUSED + [0] * len(CLIMBING_PATIENT_IDS)
        assert len(result.store_errors) == REFUSED
        reasons = ("not a UID", "empty", "not the one its C-STORE announced")
        assert all(any(r in e for r in reasons) for e in result.store_errors), result.store_errors
        assert files_outside(tmp_path, store.root) == []
        assert_store_true(store, good)
        directories = {Path(i.path).parts[0] for i in store.instances()}
        assert all(not d.startswith(".") and "\x00" not in d for d in directories)


# -- a hostile peer connecting to our storage listener ------------------------------------

LISTENER_AE = "QRLISTEN"
HOSTILE_AE = "HOSTILE"


@dataclass
class Recorder:
    """Storage handler that lets HOSTILE in and stores into a real store."""

    sink: Store
    errors: list[str] = field(default_factory=list)

    def allows(self, calling_ae: str, address: str) -> bool:
        return calling_ae == HOSTILE_AE

    async def store(self, association: Association, context_id: int, command: Command) -> Arrival:
        return await receive_instance(
            association, context_id, command, self.sink, Progress(), self.errors
        )


@asynccontextmanager
async def listening(
    store: Store, settings: Settings | None = None
) -> AsyncIterator[tuple[StorageListener, Recorder]]:
    recorder = Recorder(store)
    settings = settings or Settings(calling_ae=LISTENER_AE)
    listener = StorageListener(LISTENER_AE, recorder, host="127.0.0.1", port=0, settings=settings)
    async with anyio.create_task_group() as group:
        await group.start(listener.serve)
        yield listener, recorder
        group.cancel_scope.cancel()


async def assert_still_serving(port: int) -> None:
    """A well-behaved peer still gets its C-ECHO answered after the hostile one."""
    peer = Peer(LISTENER_AE, "127.0.0.1", port)
    settings = Settings(calling_ae=HOSTILE_AE)
    async with open_association(peer, [ContextRequest(VERIFICATION)], settings) as assoc:
        assert await echo(assoc) > 0


async def associated(conn: PeerConnection) -> None:
    assert await conn.associate(LISTENER_AE, HOSTILE_AE, [VERIFICATION, CT]) == 2


def store_rq_with(data: bytes, uid: str = f"{ROOT}.9") -> bytes:
    store_rq = c_store_rq(7, CT, uid)
    store_rq.CommandDataSetType = 0x0000
    return p_data(3, 0x03, encode_command_set(store_rq)) + data


LISTENER_CASES = [
    pytest.param(False, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
    pytest.param(False, pdu(0x09, b"\x00" * 4), id="unknown-pdu-type"),
    pytest.param(False, pdu(1, b"\xff" * 80), id="associate-rq-garbage"),
    pytest.param(False, pdu(1, b"\x00\x01"), id="associate-rq-truncated"),
    pytest.param(False, b"\x01\x00\x7f\xff\xff\xff", id="associate-rq-of-2-gb"),
    pytest.param(False, pdu(4, pdv(1, 3, b"\x00" * 8)), id="p-data-before-associating"),
    pytest.param(False, pdu(5, b"\x00" * 4), id="release-before-associating"),
    pytest.param(False, b"", id="silence"),
    pytest.param(True, b"", id="silence-after-associating"),
    pytest.param(True, pdu(0x0A, b"\x00" * 4), id="unknown-pdu-type-after-ac"),
    pytest.param(True, b"\x04\x00\x7f\xff\xff\xff", id="p-data-of-2-gb"),
    pytest.param(True, pdu(4, pdv(1, 3, b"\x00" * 10, length=1000)), id="pdv-too-long"),
    pytest.param(True, pdu(4, pdv(1, 3, b"\x00" * 8) + b"\x00"), id="pdv-trailing-byte"),
    pytest.param(True, p_data(1, 0x03, b"\x01\x02\x03"), id="command-garbage"),
    pytest.param(True, p_data(1, 0x03, command(MessageID=1)), id="command-without-field"),
    pytest.param(True, p_data(1, 0x02, b"\x00" * 8), id="data-set-instead-of-command"),
    pytest.param(True, p_data(9, 0x03, command(CommandField=0x0030)), id="context-never-proposed"),
    pytest.param(
        True,
        p_data(1, 0x03, command(CommandField=0x0020, MessageID=1, CommandDataSetType=0x0101)),
        id="c-find-to-a-storage-scp",
    ),
    pytest.param(True, store_rq_with(p_data(3, 0x03, b"\x00" * 8)), id="command-inside-data-set"),
    pytest.param(True, store_rq_with(b"\x04\x00\x7f\xff\xff\xff"), id="c-store-of-2-gb"),
    pytest.param(True, p_data(1, 0x03, b"\x00" * 70_000), id="command-set-of-70-kb"),
    pytest.param(True, pdu(4, pdv(1, 0x01, b"") * 100), id="command-set-in-empty-fragments"),
    pytest.param(
        True, store_rq_with(pdu(4, pdv(3, 0, b"") * 100)), id="data-set-in-empty-fragments"
    ),
]


@pytest.mark.parametrize(("associate", "hostile"), LISTENER_CASES)
async def test_a_hostile_peer_cannot_break_the_listener(
    tmp_path: Path, associate: bool, hostile: bytes
) -> None:
    before = running_tasks()
    settings = Settings(calling_ae=LISTENER_AE, timeouts=Timeouts(association=0.5, dimse=1))
    with Store.open(tmp_path / "store") as store:
        async with listening(store, settings) as (listener, _):
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    if associate:
                        await associated(conn)
                    await conn.send_raw(hostile)
                    # The listener ends the connection (with A-ABORT once associated).
                    with pytest.raises((anyio.EndOfStream, anyio.IncompleteRead)):
                        await drain(conn)
                    if associate:
                        assert conn.log[-1] == "pdu-07", conn.log
                await assert_still_serving(listener.port)
        assert store.instances() == []
        assert not any((store.root / ".qrclient" / "incoming").iterdir())
    assert running_tasks() == before


async def test_the_listener_refuses_an_unknown_called_ae(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store") as store:
        async with listening(store) as (listener, _):
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    assert await conn.associate("SOMEONE", HOSTILE_AE, [CT]) == 3
                assert "called AE title 'SOMEONE' is not ours" in listener.refusals[0].reason


@UNCHECKED_VALUES
async def test_c_store_with_climbing_uids_on_the_listener(tmp_path: Path) -> None:
    statuses: list[int] = []
    with Store.open(tmp_path / "store") as store:
        async with listening(store) as (listener, recorder):
            with anyio.fail_after(LIMIT * 2):
                async with hostile_client(listener.port) as conn:
                    await associated(conn)
                    for number, (uid, ds) in enumerate(hostile_instances(), start=1):
                        store_rq = c_store_rq(number, CT, uid)
                        store_rq.CommandDataSetType = 0x0000
                        await conn.send_raw(p_data(3, 0x03, encode_command_set(store_rq)))
                        await conn.send_raw(p_data(3, 0x02, encode_instance(ds)))
                        _, answer, _ = await conn.read_message()
                        assert int(answer.MessageIDBeingRespondedTo) == number
                        statuses.append(int(answer.Status))
                    await conn.send_raw(pdu(5, b"\x00" * 4))
                    assert (await conn.read_pdu())[0] == 6
        good = {f"{ROOT}.2.{n}" for n in range(len(CLIMBING_PATIENT_IDS))}
        assert statuses == [0xA700] * REFUSED + [0] * len(CLIMBING_PATIENT_IDS)
        assert len(recorder.errors) == REFUSED
        assert files_outside(tmp_path, store.root) == []
        assert_store_true(store, good)


# -- a value a peer sends may cost its own message, never the job (issue 13, item 2) -------

NON_ASCII_UID = b"1.2.826.\xe9\xff.1"  # what a broken or hostile peer may put in a UID
GARBAGE_UID = b"\x1b[2J\x00\x80\xc3("


def with_raw(dataset: Dataset, keyword: str, raw: bytes) -> bytes:
    """``dataset`` as a command set whose ``keyword`` value is exactly ``raw``.

    pydicom will not write such bytes itself: the value is written as a placeholder of
    the same length, then swapped for them.
    """
    placeholder = "7" * len(raw)
    setattr(dataset, keyword, placeholder)
    encoded = encode_command_set(dataset)
    assert encoded.count(placeholder.encode()) == 1
    return encoded.replace(placeholder.encode(), raw)


def echo_rq_with(sop_class: bytes, message_id: int = 5) -> bytes:
    ds = Dataset()
    ds.CommandField = 0x0030
    ds.MessageID = message_id
    ds.CommandDataSetType = 0x0101
    return p_data(1, 0x03, with_raw(ds, "AffectedSOPClassUID", sop_class))


def c_store_with(
    context_id: int, message_id: int, uid: bytes, data: bytes, originator: int | None = None
) -> bytes:
    """A C-STORE-RQ announcing ``uid`` (raw bytes), then ``data`` as its data set."""
    ds = c_store_rq(message_id, CT, "")
    ds.CommandDataSetType = 0x0000
    if originator is not None:
        ds.MoveOriginatorMessageID = originator
    command_set = with_raw(ds, "AffectedSOPInstanceUID", uid)
    return p_data(context_id, 0x03, command_set) + p_data(context_id, 0x02, data)


async def store_and_answer(
    conn: PeerConnection, message: bytes, comments: list[str] | None = None
) -> int:
    """Send a whole C-STORE (command and data set); the status of its answer, whose
    Error Comment (if any) goes to ``comments``."""
    await conn.send_raw(message)
    _, answer, _ = await conn.read_message()
    if comments is not None and "ErrorComment" in answer:
        comments.append(str(answer.ErrorComment))
    return int(answer.Status)


def good_instance(number: int) -> tuple[bytes, bytes]:
    uid = f"{ROOT}.4.{number}"
    return uid.encode(), encode_instance(instance(uid, "PAT", number))


@UNCHECKED_VALUES
async def test_non_ascii_uids_sent_to_the_listener_cost_only_their_message_in_a_move(
    tmp_path: Path,
) -> None:
    """A C-ECHO and a C-STORE with non-ASCII UIDs reach our listener in mid-move: the echo
    is refused (SOP class not supported), the instance refused, and the move goes on."""
    echo_statuses: list[int] = []
    store_statuses: list[int] = []
    listening_on: list[int] = []  # our listener's port, once it listens

    async def moving_pacs(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        move_id = int(request.MessageID)
        (port,) = listening_on
        async with hostile_client(port) as storage, hostile_client(port) as echo:
            assert await storage.associate(LISTENER_AE, "FAKE", [VERIFICATION, CT]) == 2
            uid, data = good_instance(1)
            store_statuses.append(
                await store_and_answer(storage, c_store_with(3, 1, uid, data, move_id))
            )
            assert await echo.associate(LISTENER_AE, "FAKE", [VERIFICATION]) == 2
            for sop_class in (NON_ASCII_UID, GARBAGE_UID, VERIFICATION.encode()):
                await echo.send_raw(echo_rq_with(sop_class))
                _, answer, _ = await echo.read_message()
                echo_statuses.append(int(answer.Status))
            for number, bad in enumerate((NON_ASCII_UID, GARBAGE_UID), start=2):
                data = encode_instance(instance(f"{ROOT}.5.{number}", "PAT", number))
                store_statuses.append(
                    await store_and_answer(storage, c_store_with(3, number, bad, data, move_id))
                )
            uid, data = good_instance(4)
            store_statuses.append(
                await store_and_answer(storage, c_store_with(3, 4, uid, data, move_id))
            )
            for association in (storage, echo):
                await association.send_raw(pdu(5, b"\x00" * 4))
                assert (await association.read_pdu())[0] == 6
        final = response(0x8021, move_id, 0xB000, STUDY_ROOT_MOVE)
        final.NumberOfCompletedSuboperations = 2
        final.NumberOfFailedSuboperations = 2
        await conn.send_message(context_id, final)
        await drain(conn)

    with Store.open(tmp_path / "store") as store:
        router = MoveRouter(LISTENER_AE, store)
        settings = Settings(calling_ae=LISTENER_AE)
        async with move_listener(router, "127.0.0.1", 0, settings) as listener:
            assert listener is not None
            listening_on.append(listener.port)
            async with fake_peer(moving_pacs) as (port, _):
                with anyio.fail_after(LIMIT * 2):
                    async with open_association(
                        Peer("FAKE", "127.0.0.1", port), [ContextRequest(STUDY_ROOT_MOVE)], settings
                    ) as assoc:
                        move_id = assoc.next_message_id()
                        with router.expect("FAKE", move_id, None, Progress()) as move:
                            result = await c_move(
                                assoc,
                                study_identifier(),
                                STUDY_ROOT_MOVE,
                                LISTENER_AE,
                                message_id=move_id,
                            )
        assert echo_statuses == [0x0122, 0x0122, 0x0000]
        assert store_statuses == [0x0000, 0xA700, 0xA700, 0x0000]
        assert (result.completed, result.failed) == (2, 2)
        assert len(move.errors) == 2
        assert all("not a UID" in e for e in move.errors), move.errors
        assert listener.refusals == []
        assert_store_true(store, {f"{ROOT}.4.1", f"{ROOT}.4.4"})


def study_identifier() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = f"{ROOT}.1"
    return identifier


async def c_get_from(port: int, store: Store, settings: Settings | None = None) -> SubOperations:
    """A C-GET of a study from the fake PACS on ``port``, into ``store``."""
    with anyio.fail_after(LIMIT):
        async with open_association(
            Peer("FAKE", "127.0.0.1", port),
            [ContextRequest(STUDY_ROOT_GET), ContextRequest(CT, scp_role=True)],
            settings,
        ) as assoc:
            return await c_get(assoc, study_identifier(), STUDY_ROOT_GET, store)


async def c_get_serving(
    store: Store,
    instances: Sequence[tuple[bytes, bytes]],
    settings: Settings | None = None,
    comments: list[str] | None = None,
) -> tuple[list[int], SubOperations]:
    """A C-GET from a PACS that sends each (UID, data set) as a C-STORE and ends with
    the counts our answers make; returns our answers' statuses (their Error Comments
    go to ``comments``) and the C-GET's result."""
    statuses: list[int] = []

    async def pacs(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        storage = next(i for i, uid in conn.contexts.items() if uid == CT)
        for number, (uid, data) in enumerate(instances, start=1):
            message = c_store_with(storage, number, uid, data)
            statuses.append(await store_and_answer(conn, message, comments))
        final = response(0x8010, int(request.MessageID), 0xB000, STUDY_ROOT_GET)
        final.NumberOfCompletedSuboperations = statuses.count(0)
        final.NumberOfFailedSuboperations = len(statuses) - statuses.count(0)
        await conn.send_message(context_id, final)
        await drain(conn)

    async with fake_peer(pacs) as (port, _):
        return statuses, await c_get_from(port, store, settings)


@UNCHECKED_VALUES
async def test_a_non_ascii_uid_in_a_c_get_costs_only_that_instance(tmp_path: Path) -> None:
    instances = [
        (bad, encode_instance(instance(f"{ROOT}.5.{number}", "PAT", number)))
        for number, bad in enumerate((NON_ASCII_UID, GARBAGE_UID))
    ]
    with Store.open(tmp_path / "store") as store:
        statuses, result = await c_get_serving(store, [*instances, good_instance(3)])
        assert statuses == [0xA700, 0xA700, 0x0000]
        assert (result.completed, result.failed) == (1, 2)
        assert len(result.store_errors) == 2
        assert all("not a UID" in e for e in result.store_errors), result.store_errors
        assert_store_true(store, {f"{ROOT}.4.3"})


class Faulty(Recorder):
    """A handler with a bug: it fails on every instance."""

    async def store(self, association: Association, context_id: int, command: Command) -> Arrival:
        raise RuntimeError("a bug in a handler")


async def test_a_bug_handling_one_association_costs_only_that_association(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "store") as store:
        handler = Faulty(store)
        settings = Settings(calling_ae=LISTENER_AE)
        listener = StorageListener(
            LISTENER_AE, handler, host="127.0.0.1", port=0, settings=settings
        )
        async with anyio.create_task_group() as group:
            await group.start(listener.serve)
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    await associated(conn)
                    uid, data = good_instance(1)
                    await conn.send_raw(c_store_with(3, 1, uid, data))
                    with pytest.raises((anyio.EndOfStream, anyio.IncompleteRead)):
                        await drain(conn)
                    assert conn.log[-1] == "pdu-07", conn.log
                await assert_still_serving(listener.port)
            group.cancel_scope.cancel()
    (refusal,) = listener.refusals
    assert "internal error" in refusal.reason
    assert "a bug in a handler" in refusal.reason


# -- deep nesting (issue 13, item 7) -------------------------------------------------------


def nested_sequences(depth: int) -> bytes:
    """A Content Sequence nested ``depth`` levels deep, undefined lengths, explicit VR LE:
    some 24 bytes a level."""
    inner = struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 4) + b"DEEP"
    sequence = struct.pack("<HH2s2xL", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF)
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ends = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return (sequence + item) * depth + inner + ends * depth


def find_answering(match: bytes) -> Script:
    """A PACS answering any C-FIND with ``match`` (explicit VR LE), then success."""

    async def script(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        pending = response(0x8020, int(request.MessageID), 0xFF00, STUDY_ROOT_FIND)
        pending.CommandDataSetType = 0x0000
        await conn.send_raw(p_data(context_id, 0x03, encode_command_set(pending)))
        await conn.send_raw(p_data(context_id, 0x02, match))
        final = response(0x8020, int(request.MessageID), 0, STUDY_ROOT_FIND)
        await conn.send_message(context_id, final)
        await drain(conn)

    return script


def deep_match(depth: int) -> bytes:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = f"{ROOT}.1"
    return encode_instance(ds) + nested_sequences(depth)


async def find_all(port: int, query: Query, decoded: bool) -> None:
    """Every match, decoded by pydicom (``find``) or read raw (``find_values``)."""
    async with open_association(
        Peer("FAKE", "127.0.0.1", port), [ContextRequest(STUDY_ROOT_FIND)]
    ) as assoc:
        if decoded:
            async with find(assoc, query) as results:
                async for _ in results:
                    pass
        else:
            await find_values(assoc, query)


@pytest.mark.parametrize("decoded", [True, False], ids=["find", "find-values"])
async def test_a_c_find_match_nested_600_deep_is_refused_cleanly(decoded: bool) -> None:
    query = build_query(Level.STUDY, Model.STUDY, [parse_key(f"StudyInstanceUID={ROOT}.1")])
    async with fake_peer(find_answering(deep_match(600))) as (port, conns):
        with anyio.fail_after(LIMIT), pytest.raises(ProtocolError) as caught:
            await find_all(port, query, decoded)
        with anyio.fail_after(LIMIT):
            await conns[0].closed.wait()
    assert "nested deeper than 64 levels" in caught.value.message
    assert_explained(caught.value)
    assert "pdu-07" in conns[0].log  # the association was aborted


async def test_a_c_find_match_nested_as_deep_as_allowed_decodes() -> None:
    query = build_query(Level.STUDY, Model.STUDY, [parse_key(f"StudyInstanceUID={ROOT}.1")])
    async with fake_peer(find_answering(deep_match(MAX_DEPTH))) as (port, _):
        with anyio.fail_after(LIMIT):
            async with (
                open_association(
                    Peer("FAKE", "127.0.0.1", port), [ContextRequest(STUDY_ROOT_FIND)]
                ) as assoc,
                find(assoc, query) as results,
            ):
                matches = [match async for match in results]
    (match,) = matches
    level = match
    for _ in range(MAX_DEPTH):
        level = level.ContentSequence[0]
    assert level.PatientID == "DEEP"


async def test_a_c_store_nested_600_deep_is_refused_and_the_get_goes_on(tmp_path: Path) -> None:
    uid = f"{ROOT}.4.1"
    deep = encode_instance(instance(uid, "PAT", 1)) + nested_sequences(600)
    with Store.open(tmp_path / "store") as store:
        statuses, result = await c_get_serving(store, [(uid.encode(), deep), good_instance(2)])
        assert statuses == [0xA700, 0x0000]
        (error,) = result.store_errors
        assert "nested deeper than 64 levels" in error
        assert_store_true(store, {f"{ROOT}.4.2"})


# -- a byte now and then cannot stretch a timeout (issue 13, item 5) -----------------------

TRICKLE = 0.05  # seconds between the bytes of a trickling peer
SHORT = 0.5  # seconds: the timeout under test
# Bytes a trickling peer gets out before a SHORT deadline fires, with room for a slow
# machine: far fewer than any trickled message here (an idle timer would take them all).
BEFORE_THE_DEADLINE = 4 * SHORT / TRICKLE


async def trickle(conn: PeerConnection, data: bytes, sent: list[int]) -> None:
    """Send ``data`` a byte at a time; ``sent[0]`` counts those sent."""
    sent.append(0)
    for index in range(len(data)):
        await conn.send_raw(data[index : index + 1])
        sent[0] += 1
        await anyio.sleep(TRICKLE)


@pytest.mark.parametrize(
    ("dimse", "network", "which"),
    [(SHORT, 30.0, "dimse"), (30.0, SHORT, "network")],
    ids=["response-deadline", "pdu-deadline"],
)
async def test_a_trickled_response_fires_the_deadline_on_time(
    dimse: float, network: float, which: str
) -> None:
    answer = echo_rsp(1) + p_data(1, 0x03, b"\x00" * 200)  # more than a deadline lets through
    sent: list[int] = []

    async def trickling(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        await trickle(conn, answer, sent)

    error, _ = await echo_timing_out(trickling, Timeouts(dimse=dimse, network=network))
    assert error.which == which
    assert error.seconds == SHORT
    assert_explained(error)
    assert 0 < sent[0] < BEFORE_THE_DEADLINE, sent


async def test_a_trickled_c_store_in_a_c_get_fires_the_pdu_deadline(tmp_path: Path) -> None:
    sent: list[int] = []

    async def pacs(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        storage = next(i for i, uid in conn.contexts.items() if uid == CT)
        uid, data = good_instance(1)
        whole = c_store_with(storage, 1, uid, data + b"\x00" * 400)
        command_length = HEADER.size + struct.unpack_from(">L", whole, 2)[0]
        await conn.send_raw(whole[:command_length])
        await trickle(conn, whole[command_length:], sent)

    settings = Settings(timeouts=Timeouts(dimse=30, network=SHORT))
    with Store.open(tmp_path / "store") as store:
        async with fake_peer(pacs) as (port, _):
            with pytest.raises(DicomTimeout) as caught:
                await c_get_from(port, store, settings)
        assert caught.value.which == "network"
        assert 0 < sent[0] < BEFORE_THE_DEADLINE, sent
        assert_store_true(store, set())


async def test_the_listener_closes_a_trickled_associate_rq_on_time(tmp_path: Path) -> None:
    request = associate_rq(LISTENER_AE, HOSTILE_AE, [VERIFICATION, CT])
    sent: list[int] = []
    settings = Settings(calling_ae=LISTENER_AE, timeouts=Timeouts(association=SHORT))
    with Store.open(tmp_path / "store") as store:
        async with listening(store, settings) as (listener, _):
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    with pytest.raises((anyio.BrokenResourceError, ConnectionError)):
                        await trickle(conn, request, sent)
                await assert_still_serving(listener.port)
    assert 0 < sent[0] < BEFORE_THE_DEADLINE, sent


async def test_the_listener_aborts_a_trickled_c_store_on_time(tmp_path: Path) -> None:
    uid, data = good_instance(1)
    sent: list[int] = []
    settings = Settings(calling_ae=LISTENER_AE, timeouts=Timeouts(dimse=30, network=SHORT))
    with Store.open(tmp_path / "store") as store:
        async with listening(store, settings) as (listener, _):
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    await associated(conn)
                    with pytest.raises((anyio.BrokenResourceError, ConnectionError)):
                        await trickle(conn, c_store_with(3, 1, uid, data), sent)
                await assert_still_serving(listener.port)
        assert_store_true(store, set())
    assert 0 < sent[0] < BEFORE_THE_DEADLINE, sent


class Deaf(ByteStream):
    """A peer that takes nothing we send (its receive window stays shut)."""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, item: bytes) -> None:
        await anyio.sleep_forever()

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_a_peer_that_stops_reading_fires_the_send_deadline() -> None:
    settings = Settings(timeouts=Timeouts(network=SHORT))
    context = NegotiatedContext(1, VERIFICATION, 0, "1.2.840.10008.1.2")
    user = UserInformation(16384, "1.2.3", "")
    assoc = Association(Deaf(), Peer("DEAF", "127.0.0.1", 104), settings, [context], user)
    request = Command(CommandField.C_ECHO_RQ, message_id=1)
    with anyio.fail_after(LIMIT), pytest.raises(DicomTimeout) as caught:
        await assoc.send(1, request)
    assert caught.value.which == "network"
    assert "room to send" in caught.value.message
    assert_explained(caught.value)
    assert not assoc.is_open


# -- the size of one DIMSE message is bounded (issue 13, item 3) ----------------------------


async def flood(conn: PeerConnection, prefix: bytes, one_pdu: bytes, total: int) -> int:
    """Send ``prefix``, then ``one_pdu`` again and again up to ``total`` bytes or until
    we close the connection; returns the bytes of PDUs sent."""
    await conn.send_raw(prefix)
    sent = 0
    with suppress(anyio.BrokenResourceError, ConnectionError):
        while sent < total:
            await conn.send_raw(one_pdu)
            sent += len(one_pdu)
    return sent


async def test_a_flood_of_empty_pdvs_in_a_c_store_is_refused_at_once(tmp_path: Path) -> None:
    sent: list[int] = []

    async def pacs(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        storage = next(i for i, uid in conn.contexts.items() if uid == CT)
        empty_pdvs = pdu(4, pdv(storage, 0, b"") * 2730)  # 16 KB of empty fragments
        store_rq = c_store_rq(1, CT, f"{ROOT}.4.1")
        store_rq.CommandDataSetType = 0
        command_set = p_data(storage, 0x03, encode_command_set(store_rq))
        sent.append(await flood(conn, command_set, empty_pdvs, 100 << 20))

    with Store.open(tmp_path / "store") as store:
        async with fake_peer(pacs) as (port, conns):
            with pytest.raises(ProtocolError) as caught:
                await c_get_from(port, store)
            with anyio.fail_after(LIMIT):
                await conns[0].closed.wait()
        assert "split a message into 65 fragments for 0 bytes" in caught.value.message
        assert_explained(caught.value)
        assert sent[0] < 100 << 20  # we gave up long before the 100 MB were in
        assert_store_true(store, set())


def never_ending_find_match(sent: list[int]) -> Script:
    async def script(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        pending = response(0x8020, int(request.MessageID), 0xFF00, STUDY_ROOT_FIND)
        pending.CommandDataSetType = 0x0000
        command_set = p_data(context_id, 0x03, encode_command_set(pending))
        fragment = p_data(context_id, 0x00, b"\x00" * 16_000)  # never the last
        sent.append(await flood(conn, command_set, fragment, 1 << 40))

    return script


@pytest.mark.parametrize("decoded", [True, False], ids=["find", "find-values"])
async def test_a_never_ending_c_find_match_is_refused_at_16_mib(decoded: bool) -> None:
    query = build_query(Level.STUDY, Model.STUDY, [parse_key(f"StudyInstanceUID={ROOT}.1")])
    sent: list[int] = []
    async with fake_peer(never_ending_find_match(sent)) as (port, conns):
        with anyio.fail_after(LIMIT), pytest.raises(DataSetTooLarge) as caught:
            await find_all(port, query, decoded)
        with anyio.fail_after(LIMIT):
            await conns[0].closed.wait()
    assert "data set of over 16777216 bytes" in caught.value.message
    assert not caught.value.whole
    assert_explained(caught.value)
    assert MAX_DATASET_IN_MEMORY < sent[0] < 4 * MAX_DATASET_IN_MEMORY


async def test_an_instance_beyond_max_instance_is_refused_and_the_get_goes_on(
    tmp_path: Path,
) -> None:
    big_uid = f"{ROOT}.4.1"
    big = (
        encode_instance(instance(big_uid, "PAT", 1))
        + struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OB", 300_000)
        + b"\x00" * 300_000
    )
    comments: list[str] = []
    settings = Settings(max_instance=100_000)
    with Store.open(tmp_path / "store") as store:
        statuses, result = await c_get_serving(
            store, [(big_uid.encode(), big), good_instance(2)], settings, comments
        )
        assert statuses == [0xA700, 0x0000]
        assert comments == [TOO_LARGE]
        (error,) = result.store_errors
        assert f"{big_uid}: not stored: the instance is larger than 100000 bytes" in error
        assert_store_true(store, {f"{ROOT}.4.2"})


async def test_a_never_ending_instance_is_aborted_and_the_listener_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(association_module, "_DISCARD_AT_LEAST", 1 << 20)
    settings = Settings(calling_ae=LISTENER_AE, max_instance=64 << 10)
    fragment = p_data(3, 0x00, b"\x00" * 16_000)
    with Store.open(tmp_path / "store") as store:
        async with listening(store, settings) as (listener, recorder):
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    await associated(conn)
                    sent = await flood(conn, store_rq_with(b""), fragment, 1 << 40)
                await assert_still_serving(listener.port)
        assert (64 << 10) + (1 << 20) < sent < 64 << 20
        (error,) = recorder.errors
        assert "not stored: the instance is larger than 65536 bytes" in error
        assert "and still going at" in error
        assert_store_true(store, set())


# -- before association, a connection may cost the listener little (issue 13, item 4) -----


async def closed_by_listener(conn: PeerConnection) -> bool:
    """Whether the listener closed ``conn`` (waiting at most LIMIT for it)."""
    with anyio.move_on_after(LIMIT):
        try:
            while await conn.stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return True
    return False


async def test_half_sent_associate_rqs_in_numbers_cost_the_listener_little(
    tmp_path: Path,
) -> None:
    """200 connections each send half of a 60 KB A-ASSOCIATE-RQ and wait: the listener
    keeps only the newest few (MAX_UNASSOCIATED, at most MAX_ASSOCIATE_RQ bytes each),
    and still answers a well-behaved peer meanwhile."""
    half = HEADER.pack(1, 60_000) + b"\x00" * 30_000
    count = 200
    with Store.open(tmp_path / "store") as store:
        async with listening(store) as (listener, _), AsyncExitStack() as stack:
            conns = []
            with anyio.fail_after(LIMIT * 4):
                for _ in range(count):
                    conn = await stack.enter_async_context(hostile_client(listener.port))
                    await conn.send_raw(half)
                    conns.append(conn)
                await assert_still_serving(listener.port)  # while they are all connected
                assert len(listener._unassociated) <= MAX_UNASSOCIATED
                assert listener._connections <= MAX_UNASSOCIATED
                oldest = conns[: count - MAX_UNASSOCIATED - 1]
                closed = [await closed_by_listener(conn) for conn in oldest]
    assert all(closed), closed.count(False)


async def test_a_pdu_before_association_is_refused_on_its_header_beyond_64_kib(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "store") as store:
        async with listening(store) as (listener, _):
            with anyio.fail_after(LIMIT):
                async with hostile_client(listener.port) as conn:
                    await conn.send_raw(HEADER.pack(1, MAX_ASSOCIATE_RQ + 1) + b"\x00" * 100)
                    assert (await conn.read_pdu())[0] == 7  # A-ABORT, without reading more
                    assert await closed_by_listener(conn)
                await assert_still_serving(listener.port)


async def test_connections_beyond_the_limit_are_turned_away_busy(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store") as store:
        async with listening(store) as (listener, _), AsyncExitStack() as stack:
            listener.max_connections = 3
            with anyio.fail_after(LIMIT):
                for _ in range(3):
                    conn = await stack.enter_async_context(hostile_client(listener.port))
                    await associated(conn)
                async with hostile_client(listener.port) as extra:
                    answer = await extra.associate(LISTENER_AE, HOSTILE_AE, [VERIFICATION])
                    assert answer == 3  # A-ASSOCIATE-RJ
                await stack.aclose()  # the three release nothing: they just go
                await assert_still_serving(listener.port)
    assert [r.reason for r in listener.refusals] == ["3 connections at once: busy"]


async def test_a_flood_of_refusals_is_kept_bounded(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store") as store:
        async with listening(store) as (listener, _):
            with anyio.fail_after(LIMIT * 2):
                for _ in range(MAX_REFUSALS + 20):
                    async with hostile_client(listener.port) as conn:
                        assert await conn.associate("SOMEONE", HOSTILE_AE, [VERIFICATION]) == 3
    assert len(listener.refusals) == MAX_REFUSALS
    assert listener.more_refusals == 20


# -- the PACS releasing its association to our listener is no error (issue 12, item 9) ---


async def test_a_peer_releasing_its_association_to_the_listener_is_logged_as_a_release(
    tmp_path: Path,
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    released = anyio.Event()

    def observe(event: Event) -> None:
        events.append((event.name, record(event)))
        if isinstance(event, ReleasedByPeer):
            released.set()

    settings = Settings(calling_ae=LISTENER_AE, observer=observe)
    with Store.open(tmp_path / "store") as store:
        async with listening(store, settings) as (listener, _):
            with anyio.fail_after(LIMIT):
                await assert_still_serving(listener.port)  # echo, then release
                await released.wait()
    names = [name for name, _ in events]
    assert "error" not in names, events
    assert names[-1] == "peer-released"
    assert describe_event(ReleasedByPeer()) == ["A-RELEASE-RQ from the peer: released"]


async def test_a_release_instead_of_an_answer_is_still_an_error() -> None:
    events: list[str] = []
    settings = Settings(observer=lambda event: events.append(event.name))
    async with fake_peer(after_echo_rq(pdu(5, b"\x00" * 4))) as (port, _):
        with anyio.fail_after(LIMIT), pytest.raises(PeerReleased):
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)], settings
            ) as assoc:
                await echo(assoc)
    assert "error" in events
    assert "peer-released" not in events

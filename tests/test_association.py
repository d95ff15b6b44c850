"""The network core against both real PACSs (and a fake peer for what neither does)."""

from __future__ import annotations

import socket

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

from fixtures.orthanc import free_ports
from qrclient.net import (
    AssociationRejected,
    ConnectFailed,
    ContextRequest,
    DicomTimeout,
    NoAcceptedContext,
    Peer,
    ProtocolError,
    Settings,
    Timeouts,
    open_association,
)
from qrclient.net.acse import UserInformation
from qrclient.net.association import Association
from qrclient.net.dimse import Command, CommandField, decode_command
from qrclient.net.pdu import HEADER, HEADER_LENGTH, PduType, parse_pdvs
from qrclient.net.presentation import NegotiatedContext, QueryOptions
from qrclient.net.uids import EXPLICIT_LE, VERIFICATION
from qrclient.ops.echo import echo
from qrclient.vocabulary import PATIENT_ROOT_FIND, STUDY_ROOT_FIND
from tests.conftest import RealPacs
from tests.fakepeer import PeerConnection, fake_peer

pytestmark = pytest.mark.anyio
DCMTK_ROOT = "1.2.276.0.7230010.3"


async def test_echo_and_negotiated_parameters(real_pacs: RealPacs) -> None:
    peer = real_pacs.peer
    events: list[str] = []
    settings = Settings(observer=lambda event: events.append(event.name))
    contexts = [ContextRequest(VERIFICATION), ContextRequest(STUDY_ROOT_FIND)]
    async with open_association(peer, contexts, settings) as assoc:
        assert await echo(assoc) > 0
        assert assoc.peer_implementation_class_uid.startswith(DCMTK_ROOT)  # both use DCMTK
        assert assoc.peer_max_pdu > 0
        assert [c.accepted for c in assoc.contexts] == [True, True]
        assert all(str(c.transfer_syntax) == "1.2.840.10008.1.2.1" for c in assoc.contexts)
        raw = assoc._stream.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert not assoc.is_open
    assert events[:3] == ["connected", "associate-rq", "associate-ac"]
    assert events[-2:] == ["release-rq", "released"]


async def test_wrong_called_ae_title_is_rejected_and_explained(real_pacs: RealPacs) -> None:
    wrong = Peer("NOT_THE_PACS", real_pacs.peer.host, real_pacs.peer.port)
    with pytest.raises(AssociationRejected) as caught:
        async with open_association(wrong, [ContextRequest(VERIFICATION)]):
            pass
    error = caught.value
    assert (error.result, error.source, error.reason) == (1, 1, 7)
    assert "called AE title not recognised" in error.message
    assert "AE title" in error.hint


async def test_closed_port_is_reported_as_refused() -> None:
    (port,) = free_ports(1)
    with pytest.raises(ConnectFailed, match="connection refused by 127.0.0.1"):
        async with open_association(Peer("X", "127.0.0.1", port), [ContextRequest(VERIFICATION)]):
            pass


async def test_unresolvable_host_is_named() -> None:
    peer = Peer("X", "no-such-host.invalid", 104)
    with pytest.raises(ConnectFailed, match="cannot resolve host name 'no-such-host.invalid'"):
        async with open_association(peer, [ContextRequest(VERIFICATION)]):
            pass


async def test_every_context_rejected_says_which_and_why(real_pacs: RealPacs) -> None:
    unsupported = ContextRequest("1.2.826.0.1.3680043.8.498.999999")
    with pytest.raises(NoAcceptedContext, match="abstract syntax not supported"):
        async with open_association(real_pacs.peer, [unsupported]):
            pass


async def test_context_not_accepted_is_named_when_used(real_pacs: RealPacs) -> None:
    async with open_association(real_pacs.peer, [ContextRequest(VERIFICATION)]) as assoc:
        with pytest.raises(NoAcceptedContext, match="not proposed"):
            assoc.accepted_context(PATIENT_ROOT_FIND)


async def test_many_concurrent_associations_in_one_loop(real_pacs: RealPacs) -> None:
    peer = real_pacs.peer
    times: list[float] = []

    async def one() -> None:
        async with open_association(peer, [ContextRequest(VERIFICATION)]) as assoc:
            for _ in range(5):
                times.append(await echo(assoc))

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
    assert len(times) == 60


async def test_extended_negotiation_is_proposed_and_answer_recorded() -> None:
    async def grant_relational_only(conn: PeerConnection) -> None:
        await conn.accept(extended={STUDY_ROOT_FIND: b"\x01\x00\x00"})
        await conn.read_pdu()  # A-RELEASE-RQ
        await conn.send_raw(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00")

    options = QueryOptions(relational=True, fuzzy_matching=True)
    async with (
        fake_peer(grant_relational_only) as (port, conns),
        open_association(
            Peer("FAKE", "127.0.0.1", port),
            [ContextRequest(STUDY_ROOT_FIND, query_options=options)],
        ) as assoc,
    ):
        granted = assoc.query_options[STUDY_ROOT_FIND]
    assert granted == QueryOptions(relational=True)
    request = conns[0].request
    assert request is not None
    proposed = [i for i in request.user_information if isinstance(i, SOPClassExtendedNegotiation)]
    assert len(proposed) == 1
    assert proposed[0].sop_class_uid == STUDY_ROOT_FIND
    assert proposed[0].service_class_application_information == b"\x01\x00\x01"


async def test_association_timeout_names_the_timeout() -> None:
    async def silent(conn: PeerConnection) -> None:
        await conn.read_pdu()
        await anyio.sleep(10)

    async with fake_peer(silent) as (port, _):
        settings = Settings(timeouts=Timeouts(association=0.3))
        with anyio.fail_after(5), pytest.raises(DicomTimeout, match="association timeout"):
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)], settings
            ):
                pass


async def test_dimse_timeout_aborts_the_association() -> None:
    async def accept_then_mute(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        await conn.read_pdu()  # the A-ABORT qrclient sends when it gives up

    async with fake_peer(accept_then_mute) as (port, conns):
        settings = Settings(timeouts=Timeouts(dimse=0.3))
        with anyio.fail_after(5), pytest.raises(DicomTimeout) as caught:
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)], settings
            ) as assoc:
                await echo(assoc)
        await anyio.sleep(0.1)
    assert caught.value.which == "dimse"
    assert "--dimse-timeout" in caught.value.hint
    assert conns[0].log[-1] == "pdu-07"


async def test_rejection_reason_from_fake_peer_is_decoded() -> None:
    async def busy(conn: PeerConnection) -> None:
        await conn.reject(2, 3, 2)

    async with fake_peer(busy) as (port, _):
        with pytest.raises(AssociationRejected, match="transiently.*local limit exceeded"):
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)]
            ):
                pass


async def test_oversized_pdu_is_refused_without_allocating() -> None:
    async def huge(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        # Announce a 2 GB P-DATA-TF and send nothing more.
        await conn.send_raw(b"\x04\x00\x7f\xff\xff\xff")
        await conn.read_pdu()

    async with fake_peer(huge) as (port, conns):
        with anyio.fail_after(5), pytest.raises(ProtocolError, match="beyond the"):
            async with open_association(
                Peer("FAKE", "127.0.0.1", port), [ContextRequest(VERIFICATION)]
            ) as assoc:
                await echo(assoc)
        await anyio.sleep(0.1)
    assert conns[0].log[-1] == "pdu-07"


# -- one task per direction -------------------------------------------------------------------


class HeldStream(ByteStream):
    """Sends and receives that wait until released: the first use is still under way
    when a second task comes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.sending = anyio.Event()
        self.receiving = anyio.Event()
        self.release = anyio.Event()

    async def send(self, item: bytes) -> None:
        self.sending.set()
        await self.release.wait()
        self.sent.append(bytes(item))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self.receiving.set()
        await anyio.sleep_forever()
        raise AssertionError("never")

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def held_association(stream: HeldStream) -> Association:
    contexts = [NegotiatedContext(1, VERIFICATION, 0, EXPLICIT_LE)]
    return Association(
        stream, Peer("PEER", "127.0.0.1", 104), Settings(), contexts, UserInformation()
    )


def echo_rq(message_id: int) -> Command:
    return Command(
        command_field=CommandField.C_ECHO_RQ,
        message_id=message_id,
        affected_sop_class_uid=VERIFICATION,
    )


def message_ids(sent: bytes) -> list[int | None]:
    """The message IDs of the command sets in one write of P-DATA-TF PDUs."""
    ids: list[int | None] = []
    offset = 0
    while offset < len(sent):
        pdu_type, length = HEADER.unpack_from(sent, offset)
        assert pdu_type == PduType.P_DATA_TF
        body = sent[offset + HEADER_LENGTH : offset + HEADER_LENGTH + length]
        ids += [decode_command(bytes(p.data)).message_id for p in parse_pdvs(body) if p.is_command]
        offset += HEADER_LENGTH + length
    return ids


async def test_two_tasks_sending_at_once_fail_clearly_instead_of_interleaving() -> None:
    stream = HeldStream()
    association = held_association(stream)
    # Bounded: without the guard the second send would wait behind the first for ever.
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(association.send, 1, echo_rq(1))
            await stream.sending.wait()
            with pytest.raises(anyio.BusyResourceError, match="already sending on"):
                await association.send(1, echo_rq(2))
            with pytest.raises(anyio.BusyResourceError, match="already sending on"):
                await association.send_streamed(1, echo_rq(3), bytes, 10)
            stream.release.set()
        # Only the first message went out, whole; the association is still usable.
        assert [message_ids(data) for data in stream.sent] == [[1]]
        await association.send(1, echo_rq(4))
    assert [message_ids(data) for data in stream.sent] == [[1], [4]]
    assert association.is_open


async def test_two_tasks_receiving_at_once_fail_clearly() -> None:
    stream = HeldStream()
    association = held_association(stream)
    parts: list[bytes | memoryview] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(association.receive_command)
            await stream.receiving.wait()
            with pytest.raises(anyio.BusyResourceError, match="already receiving on"):
                await association.receive_command()
            with pytest.raises(anyio.BusyResourceError, match="already receiving on"):
                await association.receive_message()
            with pytest.raises(anyio.BusyResourceError, match="already receiving on"):
                await association.receive_dataset_into(1, parts.append, 100)
            # Sending meanwhile is allowed: C-CANCEL goes out while responses are awaited.
            stream.release.set()
            await association.send(1, echo_rq(5))
            group.cancel_scope.cancel()
    assert [message_ids(data) for data in stream.sent] == [[5]]
    assert parts == []

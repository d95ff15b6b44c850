"""A Storage SCP on the event loop: where a PACS delivers the instances of a C-MOVE.

Each incoming association is negotiated here (called AE must be ours; the calling AE
must be one the handler expects, i.e. a peer we asked to move to us), then serves
C-ECHO and C-STORE until the peer releases it. C-STORE data sets stream to the
handler's sink fragment by fragment, exactly as on a C-GET association.
"""

from __future__ import annotations

import socket
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskStatus

from qrclient.net import acse, pdu
from qrclient.net.acse import (
    AssociateReject,
)
from qrclient.net.association import Association, PeerReleased, notify, numbered
from qrclient.net.dimse import Command, CommandField, response_to
from qrclient.net.errors import DicomNetworkError, ListenFailed, ProtocolError, TlsFailed
from qrclient.net.events import (
    Failed,
    ListenerAssociateAccepted,
    ListenerAssociateRejected,
    ListenerAssociateRequested,
)
from qrclient.net.negotiation import Refused, answer_request
from qrclient.net.pdu import PduType
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, Peer
from qrclient.net.settings import Settings
from qrclient.net.tls import wrap_server
from qrclient.net.transport import listening_socket, serve_connections
from qrclient.net.uids import VERIFICATION

# Until an association is accepted, a connection is anyone's: what it may cost is small.
MAX_CONNECTIONS = 32  # handled at once, associated or not; more are turned away
MAX_UNASSOCIATED = 16  # not yet associated; a new one closes the oldest of them
MAX_ASSOCIATE_RQ = 64 << 10  # bytes: any PDU before acceptance (a real RQ is a few KiB)
MAX_REFUSALS = 100  # kept for diagnosis; more are only counted
# A-ASSOCIATE-RJ, transient, by the service provider: local limit exceeded.
_BUSY = AssociateReject(result=2, source=3, reason=2)
_SUCCESS = 0x0000
_SOP_CLASS_NOT_SUPPORTED = 0x0122  # a C-ECHO refused


class StoreAnswer(Protocol):
    """A handler's verdict on one C-STORE: the status to answer, then ``settle``.

    ``settle`` runs once the response is sent (or sending failed), so work the answer
    does not depend on overlaps the peer preparing its next instance. It never raises.
    """

    @property
    def status(self) -> int: ...

    @property
    def comment(self) -> str | None: ...  # the response's Error Comment, if any

    def settle(self) -> None: ...


class StoreHandler(Protocol):
    """Decides who may store to us and takes each instance (see ops.move)."""

    def allows(self, calling_ae: str, address: str) -> bool: ...

    async def store(
        self, association: Association, context_id: int, command: Command
    ) -> StoreAnswer: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    calling_ae: str
    address: str
    reason: str


class StorageListener:
    """Accepts storage associations on ``host:port`` until its task is cancelled."""

    def __init__(
        self,
        ae_title: str,
        handler: StoreHandler,
        *,
        host: str = DEFAULT_LISTEN_HOST,
        port: int = DEFAULT_LISTEN_PORT,
        settings: Settings | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.handler = handler
        self.host = host
        self.port = port
        self.settings = settings or Settings(calling_ae=ae_title)
        self.refusals: list[Refusal] = []  # who was turned away and why, for diagnosis
        self.more_refusals = 0  # beyond MAX_REFUSALS, only counted
        self.max_connections = MAX_CONNECTIONS
        self._connections = 0
        # Connections not yet associated, oldest first, each with the scope to end it.
        self._unassociated: dict[object, anyio.CancelScope] = {}

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen; reports the bound port through ``task_status`` (for ``tg.start``)."""
        try:
            listener = listening_socket(self.host, self.port)
        except socket.gaierror as exc:
            raise ListenFailed(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc})",
                "give --listen an address of this machine, e.g. 0.0.0.0:PORT",
            ) from None
        except OSError as exc:
            raise ListenFailed(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc})",
                "another program (or qrclient) uses that port: choose another with --listen "
                "and register it for our AE title on the PACS",
            ) from None
        with listener:
            self.port = listener.getsockname()[1]
            task_status.started(self.port)
            await serve_connections(listener, self._handle)

    def _note(self, refusal: Refusal) -> str:
        """Keep ``refusal`` (a flood of them only counted); returns its reason."""
        if len(self.refusals) < MAX_REFUSALS:
            self.refusals.append(refusal)
        else:
            self.more_refusals += 1
        return refusal.reason

    async def _handle(self, stream: ByteStream) -> None:
        address = str(stream.extra(SocketAttribute.remote_address, ("?",))[0])
        if self._connections >= self.max_connections:
            await self._turn_away(stream, address)
            return
        self._connections += 1
        try:
            await self._handle_connection(stream, address)
        finally:
            self._connections -= 1

    async def _turn_away(self, stream: ByteStream, address: str) -> None:
        """A-ASSOCIATE-RJ (transient: local limit exceeded), without serving the request.

        What already arrived is read and dropped first (briefly): closing a socket with
        unread bytes resets it, and the rejection would be lost.
        """
        self._note(Refusal("?", address, f"{self.max_connections} connections at once: busy"))
        with anyio.move_on_after(0.05), suppress(anyio.EndOfStream, DicomNetworkError, OSError):
            await stream.receive(MAX_ASSOCIATE_RQ)
        await _send_quietly(stream, _BUSY.encode(), self.settings)

    async def _handle_connection(self, stream: ByteStream, address: str) -> None:
        association: Association | None = None
        try:
            association = await self._associate(stream, address)
            if association is not None:
                await self._serve(association)
        except (DicomNetworkError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            # The peer broke the protocol, went silent or dropped the connection: tell it
            # (A-ABORT) and close; one bad peer never ends the listener for the others.
            # The move's own status reports what it means for the retrieve.
            if association is not None:
                await association.abort()
        except Exception as exc:
            # A value we failed to handle is a bug of ours, but it too may cost only this
            # association: never the listener, and with it a running move.
            calling = association.peer.ae_title if association is not None else "?"
            reason = self._note(
                Refusal(calling, address, f"internal error serving {calling!r}: {exc!r}")
            )
            notify(self.settings, Failed(reason))
            if association is not None:
                await association.abort()

    async def _associate(self, stream: ByteStream, address: str) -> Association | None:
        """TLS if set, then the A-ASSOCIATE-RQ answered, within the association timeout
        (a deadline); None if refused, too slow, or closed to make room for a newer one."""
        scope = anyio.CancelScope(
            deadline=anyio.current_time() + self.settings.timeouts.association
        )
        key = object()
        if len(self._unassociated) >= MAX_UNASSOCIATED:
            oldest = next(iter(self._unassociated))
            self._unassociated.pop(oldest).cancel()
        self._unassociated[key] = scope
        association = None
        try:
            with scope:
                connection = await self._secure(stream, address)
                if connection is not None:
                    association = await self._negotiate(connection, address)
        finally:
            self._unassociated.pop(key, None)
        return association

    async def _secure(self, stream: ByteStream, address: str) -> ByteStream | None:
        """The connection as is, or over TLS; None (and a refusal noted) if TLS fails."""
        if self.settings.tls is None:
            return stream
        try:
            return await wrap_server(stream, self.settings.tls, self.settings.timeouts.association)
        except TlsFailed as exc:
            self._note(Refusal("?", address, str(exc)))
            return None

    async def _negotiate(self, stream: ByteStream, address: str) -> Association | None:
        """Answer the A-ASSOCIATE-RQ; None when the peer is refused or talks nonsense.

        Until the association is accepted no PDU may be longer than MAX_ASSOCIATE_RQ.
        """
        reader = pdu.PduReader(stream, self.settings.max_pdu, self.settings.timeouts.network)
        reader.cap(MAX_ASSOCIATE_RQ)
        try:
            pdu_type, body = await reader.read()
        except TimeoutError:  # the rest of the PDU did not come in time
            return None
        except ProtocolError:  # an unknown PDU type, or one too long
            await _abort(stream, self.settings)
            return None
        if pdu_type != PduType.ASSOCIATE_RQ:
            await _abort(stream, self.settings)
            return None
        try:
            request = acse.decode_associate_rq(body)
        except ProtocolError:
            await _abort(stream, self.settings)
            return None
        calling, called = request.calling_ae, request.called_ae
        settings = numbered(self.settings, "listener")
        proposed = len(request.contexts)
        notify(settings, ListenerAssociateRequested(calling, called, address, proposed))
        answer = answer_request(
            request,
            ae_title=self.ae_title,
            address=address,
            allows=self.handler.allows,
            max_pdu=self.settings.max_pdu,
        )
        if isinstance(answer, Refused):
            self._note(Refusal(calling, address, answer.why))
            await _send_quietly(stream, answer.answer.encode(), self.settings)
            notify(settings, ListenerAssociateRejected(answer.why))
            return None
        contexts = answer.contexts
        await stream.send(answer.answer.encode())
        accepted = sum(1 for c in contexts if c.accepted)
        notify(settings, ListenerAssociateAccepted(accepted))
        peer = Peer(calling, address, 0)
        association = Association(stream, peer, settings, contexts, request.user, acceptor=True)
        reader.cap(None)
        association.adopt_reader(reader)
        return association

    async def _serve(self, association: Association) -> None:
        """C-ECHO and C-STORE until the peer releases or aborts the association."""
        while True:
            try:
                context_id, command = await association.receive_command("C-STORE request")
            except PeerReleased:
                return
            if command.command_field == CommandField.C_STORE_RQ:
                answer = await self.handler.store(association, context_id, command)
                response = response_to(
                    command, CommandField.C_STORE_RSP, answer.status, answer.comment
                )
                try:
                    await association.send(context_id, response)
                finally:
                    answer.settle()
            elif command.command_field == CommandField.C_ECHO_RQ:
                await association.send(
                    context_id, response_to(command, CommandField.C_ECHO_RSP, _echo_status(command))
                )
            else:
                await association.abort()
                return


def _echo_status(command: Command) -> int:
    """Success for a C-ECHO of Verification; of anything else, refused: SOP class not
    supported (a C-ECHO-RSP status of PS3.7)."""
    if command.affected_sop_class_uid == VERIFICATION:
        return _SUCCESS
    return _SOP_CLASS_NOT_SUPPORTED


async def _abort(stream: ByteStream, settings: Settings) -> None:
    """A-ABORT from the service provider for a PDU that makes no sense here."""
    await _send_quietly(stream, pdu.encode_abort(source=2), settings)


async def _send_quietly(stream: ByteStream, data: bytes, settings: Settings) -> None:
    """A last PDU before closing: a peer that is gone or stuck need not hear it."""
    with (
        anyio.move_on_after(settings.timeouts.network),
        suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError),
    ):
        await stream.send(data)

"""A DICOM association as the requestor, on one anyio byte stream.

There is no reader task and no thread: whoever awaits a message reads the PDUs it
needs, on the caller's event loop. Cancellation therefore follows the caller's scopes,
and an association can never outlive the ``async with`` that opened it.
"""

from __future__ import annotations

import errno
import itertools
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import NoReturn

import anyio
from anyio.abc import ByteStream

from qrclient.net import acse, pdu
from qrclient.net.acse import (
    AssociateAccept,
    AssociateRequest,
    ExtendedNegotiation,
    ProposedContext,
    RoleSelection,
    UserInformation,
)
from qrclient.net.dimse import HAS_DATASET, NO_DATASET, Command, decode_command, encode_command
from qrclient.net.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectFailed,
    ConnectionDropped,
    DataSetTooLarge,
    DicomNetworkError,
    DicomTimeout,
    NoAcceptedContext,
    ProtocolError,
    TlsFailed,
    describe_abort,
)
from qrclient.net.pdu import PduType
from qrclient.net.peer import Peer
from qrclient.net.presentation import (
    ContextRequest,
    NegotiatedContext,
    QueryOptions,
    sop_class_name,
)
from qrclient.net.tls import TlsSettings, handshake_failure, wrap_client
from qrclient.net.transport import SocketStream, connect_tcp

IMPLEMENTATION_CLASS_UID = "2.25.149827993095918130059247462892582749136"
IMPLEMENTATION_VERSION_NAME = "QRCLIENT_0_1"
APPLICATION_CONTEXT = acse.APPLICATION_CONTEXT
DEFAULT_MAX_PDU = 1 << 20
DEFAULT_MAX_INSTANCE = 4 << 30  # bytes: the largest instance received, unless set
# What one DIMSE message may hold beyond the largest instance. Real command sets are
# a few hundred bytes; DCMTK appends a C-GET response's Failed SOP Instance UID List
# to it, which 64 KiB still holds for a thousand UIDs.
MAX_COMMAND_SET = 64 << 10
# A data set kept in memory (a C-FIND match, a C-GET or C-MOVE response's identifier).
MAX_DATASET_IN_MEMORY = 16 << 20
# Fragments (PDVs) must carry this many bytes on average, after the first few: a peer
# splitting a message into empty PDVs costs us a Python object each, for nothing.
_FRAGMENTS_FREE = 64
_FRAGMENT_AVERAGE_SHIFT = 8  # 256 bytes
# An instance beyond the largest is read on and discarded, so the association can go
# on with the next one, for up to this much more (at least); then it is aborted.
_DISCARD_AT_LEAST = 1 << 30
_MAX_CONTEXTS = 128
_SEND_JOIN_LIMIT = 1 << 20
_STREAM_PIECE = _SEND_JOIN_LIMIT - (1 << 16)  # room for the PDU headers of one write
_MESSAGE_IDS = itertools.count()

# Receives (event name, details); used by the log pane and traces. Kept off the hot
# path unless set.
Observer = Callable[[str, Mapping[str, object]], None]
# Observers with a true ``pdu_level`` attribute (traces) also get pdu-sent, pdu-received
# and dataset-received events, each event tagged with its association's number.
_ASSOCIATION_NUMBERS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; each is named in the error it raises, after the option that sets it."""

    connect: float = 10.0  # TCP connection established
    association: float = 30.0  # A-ASSOCIATE-AC/RJ after our request
    dimse: float = 60.0  # next DIMSE message (a C-FIND match may take the PACS a while)
    network: float = 30.0  # rest of a PDU once it started; release confirmation


@dataclass(frozen=True, slots=True)
class Settings:
    calling_ae: str = "QRCLIENT"
    max_pdu: int = DEFAULT_MAX_PDU  # the largest P-DATA-TF we accept
    timeouts: Timeouts = field(default_factory=Timeouts)
    observer: Observer | None = None
    tls: TlsSettings | None = None  # None: plain TCP
    max_instance: int = DEFAULT_MAX_INSTANCE  # bytes of one received instance's data set


@dataclass(frozen=True, slots=True)
class Message:
    """A complete DIMSE message: its command and its raw data set, if any."""

    context_id: int
    command: Command
    dataset: bytes | None


class PeerReleased(AssociationAborted):
    """The peer asked to release the association while we still expected messages."""


def _classify_connect_error(peer: Peer, exc: OSError) -> ConnectFailed:
    where = f"{peer.host}:{peer.port}"
    causes: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        item = pending.pop()
        if item is None:
            continue
        causes.append(item)
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        pending.append(item.__cause__)
    codes = {c.errno for c in causes if isinstance(c, OSError)}
    if any(isinstance(c, socket.gaierror) for c in causes):
        return ConnectFailed(
            f"cannot resolve host name {peer.host!r}", "check the spelling, or use an IP address"
        )
    if errno.ECONNREFUSED in codes:
        return ConnectFailed(
            f"connection refused by {where}",
            "nothing listens on that port: check the PACS's DICOM port and that it is running",
        )
    if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return ConnectFailed(
            f"no route to {where}", "check the address and this machine's network connection"
        )
    return ConnectFailed(f"cannot connect to {where} ({exc})", "check host and port")


def _user_information(settings: Settings, contexts: Sequence[ContextRequest]) -> UserInformation:
    roles: list[RoleSelection] = []
    extended: list[ExtendedNegotiation] = []
    seen: set[str] = set()
    for request in contexts:
        if request.abstract_syntax in seen:
            continue  # one sub-item per SOP class: the first request for it decides
        seen.add(request.abstract_syntax)
        if request.scp_role:
            roles.append(RoleSelection(request.abstract_syntax, scu=False, scp=True))
        if request.query_options and request.query_options.wanted:
            options = request.query_options.encode()
            extended.append(ExtendedNegotiation(request.abstract_syntax, options))
    return UserInformation(
        max_pdu=settings.max_pdu,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        roles=tuple(roles),
        extended=tuple(extended),
    )


def _proposed_contexts(contexts: Sequence[ContextRequest]) -> tuple[ProposedContext, ...]:
    return tuple(
        ProposedContext(2 * index + 1, request.abstract_syntax, tuple(request.transfer_syntaxes))
        for index, request in enumerate(contexts)
    )


class Association:
    """An established association; open one with :func:`open_association`."""

    def __init__(
        self,
        stream: ByteStream,
        peer: Peer,
        settings: Settings,
        contexts: list[NegotiatedContext],
        peer_user: UserInformation,
        *,
        acceptor: bool = False,
    ) -> None:
        self._stream = stream
        # On our listener the peer ends the association: its A-RELEASE-RQ between
        # messages is the normal end, not an error.
        self._acceptor = acceptor
        self._reader = pdu.PduReader(stream, settings.max_pdu, settings.timeouts.network)
        self._pdvs: deque[pdu.Pdv] = deque()
        self._closed = False
        self.peer = peer
        self.settings = settings
        self.contexts = contexts
        # Messages may only use accepted contexts; looked up per PDV and per C-STORE.
        self._accepted = {c.context_id: c for c in contexts if c.accepted}
        self._pdu_observer = settings.observer if _pdu_level(settings) else None
        # From the peer's A-ASSOCIATE-AC (or, on our listener, its A-ASSOCIATE-RQ).
        self.peer_max_pdu = peer_user.max_pdu or 0  # 0: no limit, also when not given
        self.peer_implementation_class_uid = peer_user.implementation_class_uid
        self.peer_implementation_version_name = peer_user.implementation_version_name
        self.query_options: dict[str, QueryOptions] = {
            item.sop_class: QueryOptions.decode(item.info) for item in peer_user.extended
        }

    # -- negotiation -------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, peer: Peer, contexts: Sequence[ContextRequest], settings: Settings
    ) -> Association:
        if not 1 <= len(contexts) <= _MAX_CONTEXTS:
            raise ValueError(f"1 to {_MAX_CONTEXTS} presentation contexts, not {len(contexts)}")
        timeouts = settings.timeouts
        settings = numbered(settings, "requestor")
        started = time.perf_counter()
        try:
            with anyio.fail_after(timeouts.connect):
                stream: ByteStream = await connect_tcp(peer.host, peer.port)
        except TimeoutError:
            raise _failed(
                settings,
                ConnectFailed(
                    f"no answer from {peer.host}:{peer.port} within {timeouts.connect:g} s",
                    "the host may be down or a firewall drops the packets; check host and port",
                ),
            ) from None
        except OSError as exc:
            raise _failed(settings, _classify_connect_error(peer, exc)) from exc
        if settings.tls is not None:
            stream = await _secure(stream, peer, settings, timeouts.connect - _since(started))
        notify(settings, "connected", {"peer": str(peer), "seconds": _since(started)})
        try:
            return await cls._negotiate(stream, peer, contexts, settings)
        except (ConnectionDropped, anyio.BrokenResourceError, OSError) as exc:
            await anyio.aclose_forcefully(stream)
            raise _failed(settings, _dropped_at_start(exc, peer, settings.tls)) from None
        except BaseException:  # an A-ABORT PDU (the peer said why), a rejection, ...
            await anyio.aclose_forcefully(stream)
            raise

    @classmethod
    async def _negotiate(
        cls, stream: ByteStream, peer: Peer, contexts: Sequence[ContextRequest], settings: Settings
    ) -> Association:
        request = AssociateRequest(
            called_ae=peer.ae_title,
            calling_ae=settings.calling_ae,
            application_context=APPLICATION_CONTEXT,
            contexts=_proposed_contexts(contexts),
            user=_user_information(settings, contexts),
        )
        encoded = request.encode()
        if settings.observer is not None:  # naming the SOP classes imports pydicom
            notify(
                settings,
                "associate-rq",
                {
                    "calling_ae": settings.calling_ae,
                    "called_ae": peer.ae_title,
                    "max_pdu": settings.max_pdu,
                    "bytes": len(encoded),
                    "contexts": [
                        {
                            "id": c.context_id,
                            "abstract_syntax": sop_class_name(c.abstract_syntax),
                            "transfer_syntaxes": list(c.transfer_syntaxes),
                        }
                        for c in request.contexts
                    ],
                },
            )
        await stream.send(encoded)
        reader = pdu.PduReader(stream, settings.max_pdu, settings.timeouts.network)
        timeout = settings.timeouts.association
        try:
            pdu_type, body = await reader.read(time.monotonic() + timeout)
        except pdu.PduTimeout:
            network = settings.timeouts.network
            raise _failed(
                settings, DicomTimeout("network", network, "whole PDU", "of its first byte")
            ) from None
        except TimeoutError:
            raise _failed(
                settings, DicomTimeout("association", timeout, "A-ASSOCIATE answer")
            ) from None
        except ProtocolError as exc:
            raise _failed(settings, _http_instead(reader.unread(), peer) or exc) from None
        if pdu_type == PduType.ASSOCIATE_RJ:
            rj = acse.decode_associate_rj(body)
            rejection = AssociationRejected(rj.result, rj.source, rj.reason)
            notify(
                settings,
                "associate-rj",
                {
                    "result": rejection.result,
                    "source": rejection.source,
                    "reason": rejection.reason,
                    "error": str(rejection),
                },
            )
            raise rejection
        if pdu_type == PduType.ABORT:
            raise _failed(settings, AssociationAborted(*describe_abort(*pdu.decode_abort(body))))
        if pdu_type != PduType.ASSOCIATE_AC:
            raise ProtocolError(
                f"the peer answered A-ASSOCIATE-RQ with PDU type 0x{pdu_type:02X}",
                "it does not speak the DICOM upper layer protocol on this port",
            )
        accept = acse.decode_associate_ac(body)
        negotiated = _match_contexts(request, accept)
        association = cls(stream, peer, settings, negotiated, accept.user)
        association.adopt_reader(reader)
        if settings.observer is not None:
            notify(
                settings,
                "associate-ac",
                {
                    "bytes": pdu.HEADER_LENGTH + len(body),
                    "peer_implementation_class_uid": association.peer_implementation_class_uid,
                    "peer_implementation_version_name": (
                        association.peer_implementation_version_name
                    ),
                    "peer_max_pdu": association.peer_max_pdu,
                    "contexts": [
                        {
                            "id": c.context_id,
                            "abstract_syntax": c.name,
                            "result": c.reason,
                            "transfer_syntax": c.transfer_syntax or "",
                        }
                        for c in negotiated
                    ],
                },
            )
        if not any(c.accepted for c in negotiated):
            rejected = "; ".join(f"{c.name}: {c.reason}" for c in negotiated)
            await association.abort()
            raise _failed(
                settings,
                NoAcceptedContext(
                    f"the peer accepted none of the proposed presentation contexts ({rejected})",
                    "the peer does not offer this service to us; check its configuration",
                ),
            )
        return association

    # -- state and helpers -------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self._closed

    def accepted_context(self, abstract_syntax: str) -> NegotiatedContext:
        """The accepted context for a SOP class, or NoAcceptedContext naming why not."""
        for context in self.contexts:
            if context.abstract_syntax == abstract_syntax and context.accepted:
                return context
        reasons = [c.reason for c in self.contexts if c.abstract_syntax == abstract_syntax]
        why = reasons[0] if reasons else "not proposed"
        raise NoAcceptedContext(
            f"the peer did not accept {sop_class_name(abstract_syntax)} ({why})",
            "the peer does not offer this service to us; check its configuration",
        )

    def adopt_reader(self, reader: pdu.PduReader) -> None:
        """Continue with the reader used for negotiation (it may hold bytes already)."""
        self._reader = reader

    def context(self, context_id: int) -> NegotiatedContext:
        """The accepted context with this ID (messages only arrive on accepted ones)."""
        return self._accepted[context_id]

    def next_message_id(self) -> int:
        """A message ID unique across this process's associations (not only this one).

        Instances a C-MOVE delivers to our listener carry the move's message ID; unique
        IDs let the listener tell concurrent moves from the same AE title apart.
        """
        return next(_MESSAGE_IDS) % 0xFFFF + 1

    def _fail(self, error: DicomNetworkError) -> DicomNetworkError:
        return _failed(self.settings, error)

    # -- sending -----------------------------------------------------------------------

    async def send(self, context_id: int, command: Command, dataset: bytes | None = None) -> None:
        """Send one DIMSE message, fragmented to the peer's maximum PDU length."""
        self._check_open()
        command.command_data_set_type = NO_DATASET if dataset is None else HAS_DATASET
        if self.settings.observer:
            notify(self.settings, "dimse-sent", command.summary())
        pdus = list(pdu.encode_p_data(context_id, True, encode_command(command), self.peer_max_pdu))
        if dataset is not None:
            pdus.extend(pdu.encode_p_data(context_id, False, dataset, self.peer_max_pdu))
        if self._pdu_observer is not None:
            self._pdu_observer(
                "pdu-sent",
                {
                    "pdu_type": PduType.P_DATA_TF.name,
                    "pdus": len(pdus),
                    "bytes": sum(map(len, pdus)),
                    "dataset_bytes": 0 if dataset is None else len(dataset),
                },
            )
        await self._write(pdus)

    async def send_streamed(
        self, context_id: int, command: Command, read: Callable[[int], bytes], size: int
    ) -> None:
        """Send one DIMSE message whose data set (``size`` bytes, at least one) comes from
        ``read(n)`` a piece at a time, e.g. from a file: about 1 MiB of it at most is in
        memory. If ``read`` fails, or returns fewer bytes than asked (the file shrank),
        the message cannot be completed: the association is aborted and the error
        (AssociationAborted for a short read) raised."""
        self._check_open()
        command.command_data_set_type = HAS_DATASET
        if self.settings.observer:
            notify(self.settings, "dimse-sent", command.summary())
        # Pieces of whole PDVs, each sent in one write; a PDU no bigger than the peer
        # allows, nor than a piece (a peer may claim a max PDU of 4 GB).
        pdv_limit = max(1, min(self.peer_max_pdu - pdu.PDV_OVERHEAD, _STREAM_PIECE))
        if self.peer_max_pdu == 0:
            pdv_limit = _STREAM_PIECE
        piece = _STREAM_PIECE // pdv_limit * pdv_limit
        max_pdu = pdv_limit + pdu.PDV_OVERHEAD
        pdus = list(pdu.encode_p_data(context_id, True, encode_command(command), self.peer_max_pdu))
        sent = total = count = 0
        while sent < size:
            wanted = min(piece, size - sent)
            try:
                data = read(wanted)
            except BaseException:
                await self.abort()
                raise
            if len(data) != wanted:
                await self.abort()
                raise self._fail(
                    AssociationAborted(
                        f"the data set ended after {sent + len(data)} of its {size} bytes "
                        "while it was sent (did the file change?)",
                        "the association was aborted; send it again",
                    )
                )
            sent += wanted
            pdus.extend(pdu.encode_p_data(context_id, False, data, max_pdu, final=sent == size))
            total, count = total + sum(map(len, pdus)), count + len(pdus)
            await self._write(pdus)
            pdus = []
        if self._pdu_observer is not None:
            self._pdu_observer(
                "pdu-sent",
                {
                    "pdu_type": PduType.P_DATA_TF.name,
                    "pdus": count,
                    "bytes": total,
                    "dataset_bytes": size,
                },
            )

    async def _write(self, pdus: list[bytes]) -> None:
        """Send encoded PDUs: joined into one write up to 1 MiB (fewer system calls)."""
        seconds = self.settings.timeouts.network
        try:
            if sum(map(len, pdus)) <= _SEND_JOIN_LIMIT:
                await self._send_within(b"".join(pdus), seconds)
            else:
                for item in pdus:
                    await self._send_within(item, seconds)
        except TimeoutError:  # before OSError: the peer is there but takes nothing
            await self._close()
            raise self._fail(
                DicomTimeout("network", seconds, "room to send", "(the peer stopped reading)")
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            await self._close()
            raise self._fail(
                AssociationAborted(
                    "the connection broke while sending",
                    "the peer closed it; check the peer's log",
                )
            ) from exc

    async def _send_within(self, data: bytes, seconds: float) -> None:
        """Send, within ``seconds`` (else TimeoutError); times only an actual wait."""
        stream = self._stream
        if isinstance(stream, SocketStream):
            await stream.send_within(data, seconds)
        else:
            with anyio.fail_after(seconds):
                await stream.send(data)

    # -- receiving ---------------------------------------------------------------------

    async def receive_command(self, waiting_for: str = "DIMSE response") -> tuple[int, Command]:
        """Read the next command set; its data set (if any) must be read next.

        The whole command set must be in within the DIMSE timeout (a deadline: a peer
        trickling bytes does not extend it).
        """
        deadline = time.monotonic() + self.settings.timeouts.dimse
        first = await self._next_pdv(deadline, "dimse", waiting_for, idle=True)
        if not first.is_command:
            raise self._fail(
                ProtocolError(
                    "the peer sent a data set fragment where a command was expected",
                    "the peer's DICOM stack is broken",
                )
            )
        parts = [first.data]
        pdv = first
        size, count = len(first.data), 1
        while True:
            if size > MAX_COMMAND_SET:
                raise self._fail(
                    ProtocolError(
                        f"the peer sent a command set of over {MAX_COMMAND_SET} bytes",
                        "the peer's DICOM stack is broken; a real one is a few hundred bytes",
                    )
                )
            if count > _FRAGMENTS_FREE + (size >> _FRAGMENT_AVERAGE_SHIFT):
                raise self._fail(_too_many_fragments(count, size))
            if pdv.is_last:
                break
            pdv = await self._next_pdv(deadline, "dimse", waiting_for)
            if not pdv.is_command or pdv.context_id != first.context_id:
                raise self._fail(
                    ProtocolError(
                        "the peer interleaved another fragment into a command set",
                        "the peer's DICOM stack is broken",
                    )
                )
            parts.append(pdv.data)
            size += len(pdv.data)
            count += 1
        try:
            command = decode_command(b"".join(parts))  # small: one copy, decoded as bytes
        except ProtocolError as exc:
            raise self._fail(exc) from None
        if self.settings.observer:
            notify(self.settings, "dimse-received", command.summary())
        return first.context_id, command

    async def receive_dataset_into(
        self,
        context_id: int,
        write: Callable[[bytes | memoryview], object],
        limit: int,
        *,
        instance: bool = False,
    ) -> int:
        """Pass each fragment of the data set that follows a command to ``write``.

        The bulk-receive path: fragments go straight from the receive buffer to the
        writer (a file, for C-STORE), never joined in memory. They are views of the
        received bytes, which never change: the writer may keep them instead of copying.
        Returns the byte count.

        At most ``limit`` bytes are written; beyond, DataSetTooLarge. Every caller
        names its bound: MAX_DATASET_IN_MEMORY where the data set is kept in memory,
        ``settings.max_instance`` for an ``instance`` (a C-STORE's, also one drained).
        For an ``instance`` the rest is first read and discarded, if it ends within a
        bounded excess, so the association can go on (``whole``).
        """
        size = count = 0
        free, shift = _FRAGMENTS_FREE, _FRAGMENT_AVERAGE_SHIFT  # locals: read per fragment
        while True:
            pdv = await self._next_data_pdv(context_id)
            data = pdv.data
            size += len(data)
            count += 1
            if size > limit:
                await self._refuse_dataset(context_id, pdv, size, count, limit, instance)
            if count > free + (size >> shift):
                raise self._fail(_too_many_fragments(count, size))
            write(data)
            if pdv.is_last:
                if self._pdu_observer is not None:
                    self._pdu_observer("dataset-received", {"bytes": size})
                return size

    async def _refuse_dataset(
        self, context_id: int, pdv: pdu.Pdv, size: int, count: int, limit: int, instance: bool
    ) -> NoReturn:
        """DataSetTooLarge, once the rest of an instance is read and discarded."""
        if instance:
            message = f"the instance is larger than {limit} bytes (--max-instance)"
            hint = "raise --max-instance (or max_instance in the configuration) to accept it"
        else:
            message = f"the peer sent a data set of over {limit} bytes where we keep it in memory"
            hint = "the peer's DICOM stack is broken: such a data set is never this large"
        excess = max(limit, _DISCARD_AT_LEAST) if instance else 0
        while not pdv.is_last and size <= limit + excess:
            if count > _FRAGMENTS_FREE + (size >> _FRAGMENT_AVERAGE_SHIFT):
                raise self._fail(_too_many_fragments(count, size))
            pdv = await self._next_data_pdv(context_id)
            size += len(pdv.data)
            count += 1
        whole = pdv.is_last and size <= limit + excess
        if not whole and instance:
            message = f"{message}, and still going at {size} bytes"
        error = DataSetTooLarge(message, hint, size=size, limit=limit, whole=whole)
        raise error if whole else self._fail(error)

    async def receive_message(self, waiting_for: str = "DIMSE response") -> Message:
        """Read one complete DIMSE message, its data set held in memory."""
        context_id, command = await self.receive_command(waiting_for)
        if not command.has_dataset:
            return Message(context_id, command, None)
        parts: list[bytes | memoryview] = []
        await self.receive_dataset_into(context_id, parts.append, MAX_DATASET_IN_MEMORY)
        return Message(context_id, command, b"".join(parts))

    async def _next_data_pdv(self, context_id: int) -> pdu.Pdv:
        pdv = await self._next_pdv(None, "network", "PDU")
        if pdv.is_command or pdv.context_id != context_id:
            raise self._fail(
                ProtocolError(
                    "the peer sent a command where a data set fragment was expected",
                    "the peer's DICOM stack is broken",
                )
            )
        return pdv

    async def _next_pdv(
        self, deadline: float | None, which: str, waiting_for: str, *, idle: bool = False
    ) -> pdu.Pdv:
        """The next PDV; awaits only when none is buffered.

        ``deadline`` (``time.monotonic()``) bounds the wait, as the ``which`` timeout;
        None: the network timeout from each wait's start (a data set's next PDU).
        ``idle``: between messages, where an acceptor's peer may release (PeerReleased).
        """
        while not self._pdvs:
            self._check_open()
            try:
                item = self._reader.next_buffered()
                if item is None:
                    if deadline is None:
                        await self._reader.receive_more(
                            time.monotonic() + self.settings.timeouts.network
                        )
                    else:
                        await self._reader.receive_more(deadline)
                    continue
                if self._pdu_observer is not None:
                    self._pdu_observer("pdu-received", _pdu_record(*item))
            except pdu.PduTimeout:
                network = self.settings.timeouts.network
                raise self._fail(
                    DicomTimeout("network", network, "whole PDU", "of its first byte")
                ) from None
            except TimeoutError:
                seconds = getattr(self.settings.timeouts, which)
                raise self._fail(DicomTimeout(which, seconds, waiting_for)) from None
            except AssociationAborted as exc:
                await self._close()
                raise self._fail(exc) from None
            except ProtocolError as exc:
                # Left open so the owner's cleanup still tells the peer with A-ABORT.
                raise self._fail(exc) from None
            try:
                await self._handle_pdu(*item)
            except PeerReleased as exc:
                if not (idle and self._acceptor):
                    raise self._fail(exc) from None
                notify(self.settings, "peer-released", {})
                raise
        return self._pdvs.popleft()

    async def _handle_pdu(self, pdu_type: int, body: bytes | memoryview) -> None:
        if pdu_type == PduType.P_DATA_TF:
            try:
                pdvs = pdu.parse_pdvs(body)
            except ProtocolError as exc:
                raise self._fail(exc) from None
            for item in pdvs:
                if item.context_id not in self._accepted:
                    raise self._fail(
                        ProtocolError(
                            f"the peer used presentation context {item.context_id}, "
                            "which was not accepted",
                            "the peer's DICOM stack is broken",
                        )
                    )
            self._pdvs.extend(pdvs)
        elif pdu_type == PduType.ABORT:
            await self._close()  # nothing more may be sent; free the socket now
            source, reason = pdu.decode_abort(body)
            message, hint = describe_abort(source, reason)
            raise self._fail(AssociationAborted(message, hint, source, reason))
        elif pdu_type == PduType.RELEASE_RQ:
            await self._answer_release()
            raise PeerReleased(
                "the peer released the association before answering",
                "the peer gave up on the request; check its log",
            )
        else:
            raise self._fail(
                ProtocolError(
                    f"unexpected PDU type 0x{pdu_type:02X} during the association",
                    "the peer's DICOM stack is broken",
                )
            )

    def _check_open(self) -> None:
        if self._closed:
            raise AssociationAborted("the association is already closed", "open a new association")

    # -- ending ------------------------------------------------------------------------

    async def _answer_release(self) -> None:
        with anyio.move_on_after(self.settings.timeouts.network):
            await self._stream.send(pdu.RELEASE_RP)
        await self._close()

    async def release(self) -> None:
        """Orderly release (A-RELEASE); aborts if the peer does not confirm in time."""
        if self._closed:
            return
        notify(self.settings, "release-rq", {})
        try:
            with anyio.fail_after(self.settings.timeouts.network):
                await self._stream.send(pdu.RELEASE_RQ)
                while True:
                    pdu_type, _ = await self._reader.read()
                    if pdu_type == PduType.RELEASE_RP:
                        break
                    if pdu_type == PduType.RELEASE_RQ:  # release collision (PS3.8 7.2.2)
                        await self._stream.send(pdu.RELEASE_RP)
                    elif pdu_type == PduType.ABORT:
                        break
                    # Late P-DATA (e.g. responses after a cancel) is discarded.
        except (TimeoutError, DicomNetworkError, anyio.BrokenResourceError, OSError):
            await self.abort()
            return
        notify(self.settings, "released", {})
        await self._close()

    async def abort(self) -> None:
        """Send A-ABORT and close; never raises and finishes even when cancelled."""
        if self._closed:
            return
        notify(self.settings, "abort-sent", {})
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(1.0),
            suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError),
        ):
            await self._stream.send(pdu.encode_abort())
        await self._close()

    async def _close(self) -> None:
        self._closed = True
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self._stream)


def _too_many_fragments(count: int, size: int) -> ProtocolError:
    return ProtocolError(
        f"the peer split a message into {count} fragments for {size} bytes",
        "the peer's DICOM stack is broken or hostile: each fragment costs us, and "
        f"they must carry {1 << _FRAGMENT_AVERAGE_SHIFT} bytes on average",
    )


def _match_contexts(request: AssociateRequest, accept: AssociateAccept) -> list[NegotiatedContext]:
    """Our proposals with the peer's answers, checked against what we proposed."""
    by_id = {c.context_id: c for c in request.contexts}
    answers: dict[int, acse.ContextResult] = {}
    for answer in accept.results:
        ours = by_id.get(answer.context_id)
        if ours is None:
            raise ProtocolError(
                f"the peer answered presentation context {answer.context_id}, never proposed",
                "the peer's DICOM stack is broken",
            )
        syntax = answer.transfer_syntax
        if answer.result == acse.ACCEPTANCE and syntax not in ours.transfer_syntaxes:
            raise ProtocolError(
                f"the peer accepted presentation context {answer.context_id} with transfer "
                f"syntax {syntax}, never proposed for it",
                "the peer's DICOM stack is broken",
            )
        answers[answer.context_id] = answer
    missing = sorted(by_id.keys() - answers.keys())
    if missing:
        raise ProtocolError(
            f"the peer's A-ASSOCIATE-AC does not answer presentation context {missing[0]}",
            "the peer's DICOM stack is broken",
        )
    return [
        NegotiatedContext(
            context_id=ours.context_id,
            abstract_syntax=ours.abstract_syntax,
            result=answers[ours.context_id].result,
            transfer_syntax=answers[ours.context_id].transfer_syntax,
            as_scp=(
                answers[ours.context_id].result == acse.ACCEPTANCE
                and _scp_role_granted(request.user, accept.user, ours.abstract_syntax)
            ),
        )
        for ours in sorted(request.contexts, key=lambda c: c.context_id)
    ]


def _scp_role_granted(ours: UserInformation, theirs: UserInformation, sop_class: str) -> bool:
    """Whether we may act as SCP for this SOP class (PS3.7 D.3.3.4).

    Only if we proposed the SCP role and the acceptor answered it with SCP role 1: an
    acceptor that does not answer leaves the default roles, we being SCU only.
    """
    proposed, answered = ours.role(sop_class), theirs.role(sop_class)
    return bool(proposed and proposed.scp and answered and answered.scp)


def notify(settings: Settings, event: str, details: Mapping[str, object]) -> None:
    """Tell the observer (the -v log, traces, the UI's log pane), if there is one."""
    if settings.observer is not None:
        settings.observer(event, details)


def _dropped_at_start(exc: BaseException, peer: Peer, tls: TlsSettings | None) -> DicomNetworkError:
    """The connection dropped before any answer to our request: say what it likely means.

    Over TLS 1.3 the server checks our certificate after the handshake, so a refusal
    arrives as an alert (or, if our request crossed it, as a reset) on the first read.
    """
    where = f"{peer.host}:{peer.port}"
    cause = exc.__cause__ if isinstance(exc, ConnectionDropped) else exc
    if tls is None:
        return AssociationAborted(
            f"{where} closed the connection before answering our association request",
            "check the peer's log; if this port expects DICOM over TLS, add --tls",
        )
    if isinstance(cause, ssl.SSLError):
        return handshake_failure(cause, where, peer.host)
    if tls.cert_file is None:
        hint = (
            "the PACS probably requires a client certificate: give ours with --tls-cert/--tls-key"
        )
    else:
        hint = "the PACS probably does not trust our client certificate: register it (or its CA)"
    return TlsFailed(f"{where} closed the TLS connection before answering", hint)


async def _secure(stream: ByteStream, peer: Peer, settings: Settings, seconds: float) -> ByteStream:
    """TLS over the connected socket, within what is left of the connect timeout."""
    assert settings.tls is not None
    try:
        return await wrap_client(
            stream, f"{peer.host}:{peer.port}", peer.host, settings.tls, max(seconds, 0.001)
        )
    except BaseException as exc:
        await anyio.aclose_forcefully(stream)
        if isinstance(exc, DicomNetworkError):
            raise _failed(settings, exc) from None
        raise


def _http_instead(answer: bytes, peer: Peer) -> ProtocolError | None:
    """A port that answered our A-ASSOCIATE-RQ with HTTP (someone gave the PACS's web
    port), else None. DICOM PDUs start with a type byte of 1 to 7, HTTP with "HTTP/"."""
    if not answer.startswith(b"HTTP/"):
        return None
    status = answer.split(b"\r\n", 1)[0][:60].decode("ascii", "replace")
    return ProtocolError(
        f"{peer.host}:{peer.port} speaks HTTP, not DICOM (it answered {status!r})",
        "that is a web port (perhaps the PACS's web interface or REST API): give the "
        "PACS's DICOM port (often 104, 4242 or 11112)",
    )


def _failed(settings: Settings, error: DicomNetworkError) -> DicomNetworkError:
    notify(settings, "error", {"error": str(error)})
    return error


def _pdu_level(settings: Settings) -> bool:
    return bool(getattr(settings.observer, "pdu_level", False))


def _pdu_record(pdu_type: int, body: bytes | memoryview) -> dict[str, object]:
    # The reader lets only known PDU types through.
    return {"pdu_type": PduType(pdu_type).name, "bytes": pdu.HEADER_LENGTH + len(body)}


class _Numbered:
    """Tags each event with its association's number, so interleaved traces untangle."""

    pdu_level = True

    def __init__(self, observer: Observer, number: int, role: str) -> None:
        self._observer = observer
        self._tags = {"association": number, "role": role}

    def __call__(self, event: str, details: Mapping[str, object]) -> None:
        self._observer(event, {**self._tags, **details})


def numbered(settings: Settings, role: str) -> Settings:
    """Settings for one new association; only PDU-level (trace) observers are tagged."""
    if settings.observer is None or not _pdu_level(settings):
        return settings
    observer = _Numbered(settings.observer, next(_ASSOCIATION_NUMBERS), role)
    return replace(settings, observer=observer)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 6)


@asynccontextmanager
async def open_association(
    peer: Peer, contexts: Sequence[ContextRequest], settings: Settings | None = None
) -> AsyncIterator[Association]:
    """Open an association; release it on a normal exit, abort it on any error."""
    association = await Association.connect(peer, contexts, settings or Settings())
    try:
        yield association
    except BaseException:
        await association.abort()
        raise
    with anyio.CancelScope(shield=True):
        await association.release()

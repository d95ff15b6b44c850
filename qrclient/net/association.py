"""A DICOM association on one anyio byte stream: opened by us, or accepted by our listener.

Settings live in net/settings.py, what a failed connect means in net/connect.py and
what is proposed and accepted in net/negotiation.py; here is the exchange itself.

There is no reader task and no thread: whoever awaits a message reads the PDUs it
needs, on the caller's event loop. Cancellation therefore follows the caller's scopes,
and an association can never outlive the ``async with`` that opened it.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from typing import NoReturn

import anyio
from anyio.abc import ByteStream

from qrclient.net import pdu
from qrclient.net.acse import UserInformation
from qrclient.net.connect import connect_failure, connect_timeout, dropped_at_start, http_instead
from qrclient.net.dimse import HAS_DATASET, NO_DATASET, Command, decode_command, encode_command
from qrclient.net.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionDropped,
    DataSetTooLarge,
    DicomNetworkError,
    DicomTimeout,
    NoAcceptedContext,
    ProtocolError,
    describe_abort,
)
from qrclient.net.events import (
    AbortSent,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    Connected,
    DatasetReceived,
    DimseReceived,
    DimseSent,
    Event,
    Failed,
    PduReceived,
    PduSent,
    ProposedContextInfo,
    Released,
    ReleasedByPeer,
    ReleaseRequested,
    SettledContextInfo,
    tagging,
    wants_pdu_level,
)
from qrclient.net.negotiation import propose, read_answer
from qrclient.net.pdu import PduType
from qrclient.net.peer import Peer
from qrclient.net.presentation import (
    ContextRequest,
    NegotiatedContext,
    QueryOptions,
    sop_class_name,
)
from qrclient.net.settings import Settings
from qrclient.net.tls import wrap_client
from qrclient.net.transport import SocketStream, connect_tcp
from qrclient.net.uids import MAX_CONTEXTS

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
_SEND_JOIN_LIMIT = 1 << 20
_STREAM_PIECE = _SEND_JOIN_LIMIT - (1 << 16)  # room for the PDU headers of one write
_MESSAGE_IDS = itertools.count()


@dataclass(frozen=True, slots=True)
class Message:
    """A complete DIMSE message: its command and its raw data set, if any."""

    context_id: int
    command: Command
    dataset: bytes | None


class PeerReleased(AssociationAborted):
    """The peer asked to release the association while we still expected messages."""


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
        # One task sends and one receives at a time: a second would interleave its PDUs
        # with the first's, or take the messages the first waits for.
        self._sending = anyio.ResourceGuard("sending on")
        self._receiving = anyio.ResourceGuard("receiving on")
        self.peer = peer
        self.settings = settings
        self.contexts = contexts
        # Messages may only use accepted contexts; looked up per PDV and per C-STORE.
        self._accepted = {c.context_id: c for c in contexts if c.accepted}
        self._pdu_observer = settings.observer if wants_pdu_level(settings.observer) else None
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
        if not 1 <= len(contexts) <= MAX_CONTEXTS:
            raise ValueError(f"1 to {MAX_CONTEXTS} presentation contexts, not {len(contexts)}")
        timeouts = settings.timeouts
        settings = numbered(settings, "requestor")
        started = time.perf_counter()
        try:
            with anyio.fail_after(timeouts.connect):
                stream: ByteStream = await connect_tcp(peer.host, peer.port)
        except TimeoutError:
            failure = connect_timeout(peer.host, peer.port, timeouts.connect)
            raise _failed(settings, failure) from None
        except OSError as exc:
            raise _failed(settings, connect_failure(peer.host, peer.port, exc)) from exc
        if settings.tls is not None:
            stream = await _secure(stream, peer, settings, timeouts.connect - _since(started))
        notify(settings, Connected(str(peer), _since(started)))
        try:
            return await cls._negotiate(stream, peer, contexts, settings)
        except (ConnectionDropped, anyio.BrokenResourceError, OSError) as exc:
            await anyio.aclose_forcefully(stream)
            dropped = dropped_at_start(exc, peer.host, peer.port, settings.tls)
            raise _failed(settings, dropped) from None
        except BaseException:  # an A-ABORT PDU (the peer said why), a rejection, ...
            await anyio.aclose_forcefully(stream)
            raise

    @classmethod
    async def _negotiate(
        cls, stream: ByteStream, peer: Peer, contexts: Sequence[ContextRequest], settings: Settings
    ) -> Association:
        request = propose(peer.ae_title, settings.calling_ae, settings.max_pdu, contexts)
        encoded = request.encode()
        if settings.observer is not None:  # naming the SOP classes imports pydicom
            proposed = tuple(
                ProposedContextInfo(
                    c.context_id, sop_class_name(c.abstract_syntax), c.transfer_syntaxes
                )
                for c in request.contexts
            )
            calling, called = settings.calling_ae, peer.ae_title
            notify(
                settings,
                AssociateRequested(calling, called, settings.max_pdu, len(encoded), proposed),
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
            http = http_instead(reader.unread(), peer.host, peer.port)
            raise _failed(settings, http or exc) from None
        try:
            accept, negotiated = read_answer(request, pdu_type, body)
        except AssociationRejected as rejection:
            notify(
                settings,
                AssociateRejected(
                    rejection.result, rejection.source, rejection.reason, str(rejection)
                ),
            )
            raise
        except AssociationAborted as exc:
            raise _failed(settings, exc) from None
        association = cls(stream, peer, settings, negotiated, accept.user)
        association.adopt_reader(reader)
        if settings.observer is not None:
            settled = tuple(
                SettledContextInfo(c.context_id, c.name, c.reason, c.transfer_syntax or "")
                for c in negotiated
            )
            accepted = AssociateAccepted(
                pdu.HEADER_LENGTH + len(body),
                association.peer_implementation_class_uid,
                association.peer_implementation_version_name,
                association.peer_max_pdu,
                settled,
            )
            notify(settings, accepted)
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
        """Send one DIMSE message, fragmented to the peer's maximum PDU length.

        Raises anyio.BusyResourceError while another task sends on this association
        (as do the other sending and receiving methods, each for its direction).
        """
        with self._sending:
            await self._send(context_id, command, dataset)

    async def _send(self, context_id: int, command: Command, dataset: bytes | None) -> None:
        self._check_open()
        command.command_data_set_type = NO_DATASET if dataset is None else HAS_DATASET
        if self.settings.observer:
            notify(self.settings, DimseSent(command.summary()))
        pdus = list(pdu.encode_p_data(context_id, True, encode_command(command), self.peer_max_pdu))
        if dataset is not None:
            pdus.extend(pdu.encode_p_data(context_id, False, dataset, self.peer_max_pdu))
        if self._pdu_observer is not None:
            dataset_bytes = 0 if dataset is None else len(dataset)
            self._pdu_observer(
                PduSent(PduType.P_DATA_TF.name, len(pdus), sum(map(len, pdus)), dataset_bytes)
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
        with self._sending:
            await self._send_streamed(context_id, command, read, size)

    async def _send_streamed(
        self, context_id: int, command: Command, read: Callable[[int], bytes], size: int
    ) -> None:
        self._check_open()
        command.command_data_set_type = HAS_DATASET
        if self.settings.observer:
            notify(self.settings, DimseSent(command.summary()))
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
            self._pdu_observer(PduSent(PduType.P_DATA_TF.name, count, total, size))

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
        with self._receiving:
            return await self._receive_command(waiting_for)

    async def _receive_command(self, waiting_for: str) -> tuple[int, Command]:
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
            notify(self.settings, DimseReceived(command.summary()))
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
        with self._receiving:
            return await self._receive_dataset_into(context_id, write, limit, instance)

    async def _receive_dataset_into(
        self,
        context_id: int,
        write: Callable[[bytes | memoryview], object],
        limit: int,
        instance: bool,
    ) -> int:
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
                    self._pdu_observer(DatasetReceived(size))
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
        with self._receiving:
            context_id, command = await self._receive_command(waiting_for)
            if not command.has_dataset:
                return Message(context_id, command, None)
            parts: list[bytes | memoryview] = []
            limit = MAX_DATASET_IN_MEMORY
            await self._receive_dataset_into(context_id, parts.append, limit, False)
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
                    self._pdu_observer(_pdu_received(*item))
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
                notify(self.settings, ReleasedByPeer())
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
        notify(self.settings, ReleaseRequested())
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
        notify(self.settings, Released())
        await self._close()

    async def abort(self) -> None:
        """Send A-ABORT and close; never raises and finishes even when cancelled."""
        if self._closed:
            return
        notify(self.settings, AbortSent())
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


def notify(settings: Settings, event: Event) -> None:
    """Tell the observer (the -v log, traces, the UI's log pane), if there is one."""
    if settings.observer is not None:
        settings.observer(event)


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


def _failed(settings: Settings, error: DicomNetworkError) -> DicomNetworkError:
    notify(settings, Failed(str(error)))
    return error


def _pdu_received(pdu_type: int, body: bytes | memoryview) -> PduReceived:
    # The reader lets only known PDU types through.
    return PduReceived(PduType(pdu_type).name, pdu.HEADER_LENGTH + len(body))


def numbered(settings: Settings, role: str) -> Settings:
    """Settings for one new association: a PDU-level (trace) observer gets its events
    tagged with the association's number and our role."""
    observer = tagging(settings.observer, role)
    return settings if observer is settings.observer else replace(settings, observer=observer)


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

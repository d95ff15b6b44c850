"""Upper-layer PDU framing (PS3.8 section 9) and P-DATA-TF value items.

Association PDUs (A-ASSOCIATE-RQ/AC/RJ) are rare; :mod:`qrclient.net.acse` encodes and
decodes them. P-DATA-TF is the hot path: it is split into PDVs here directly from the
received bytes, without building one object per PDU, which is what lets bulk receive
keep up with DCMTK.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import anyio
from anyio import BrokenResourceError, EndOfStream
from anyio.abc import ByteReceiveStream

from qrclient.net.errors import ConnectionDropped, ProtocolError
from qrclient.net.transport import SocketStream

HEADER = struct.Struct(">BxL")
HEADER_LENGTH = HEADER.size
_PDV_HEADER = struct.Struct(">LBB")

# A PDV item's own overhead inside P-DATA-TF: item length (4), context ID (1), control (1).
PDV_OVERHEAD = _PDV_HEADER.size

# Association-control PDUs are small; anything bigger is hostile or broken.
MAX_CONTROL_PDU_LENGTH = 1 << 20


class PduType(IntEnum):
    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07


RELEASE_RQ = HEADER.pack(PduType.RELEASE_RQ, 4) + b"\x00" * 4
RELEASE_RP = HEADER.pack(PduType.RELEASE_RP, 4) + b"\x00" * 4


def encode_abort(source: int = 0, reason: int = 0) -> bytes:
    """A-ABORT: source 0 = service user (us), 2 = service provider."""
    return HEADER.pack(PduType.ABORT, 4) + bytes((0, 0, source, reason))


def decode_abort(body: bytes | memoryview) -> tuple[int, int]:
    """Return (source, reason) of an A-ABORT body; lenient on short bodies."""
    if len(body) < 4:
        return 0, 0
    return body[2], body[3]


@dataclass(frozen=True, slots=True)
class Pdv:
    """One presentation data value: a fragment of a command set or of a data set."""

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | memoryview  # a view of the received bytes, which are never changed


def parse_pdvs(body: bytes | memoryview) -> list[Pdv]:
    """Split a P-DATA-TF body into PDVs, refusing lengths that do not add up.

    The PDVs' data are slices of ``body``: views, not copies, when it is a memoryview.
    """
    pdvs: list[Pdv] = []
    offset = 0
    end = len(body)
    if end == 0:
        raise ProtocolError("P-DATA-TF without any PDV", "the peer's DICOM stack is broken")
    while offset < end:
        if end - offset < PDV_OVERHEAD:
            raise ProtocolError(
                "P-DATA-TF ends inside a PDV header", "the peer's DICOM stack is broken"
            )
        item_length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
        # The item length counts the context ID and control bytes: at least 2.
        if item_length < 2 or offset + 4 + item_length > end:
            raise ProtocolError(
                f"PDV length {item_length} does not fit in a P-DATA-TF of {end} bytes",
                "the peer's DICOM stack is broken",
            )
        start = offset + PDV_OVERHEAD
        offset += 4 + item_length
        pdvs.append(Pdv(context_id, bool(control & 1), bool(control & 2), body[start:offset]))
    return pdvs


def encode_p_data(
    context_id: int,
    is_command: bool,
    payload: bytes | memoryview,
    peer_max_pdu: int,
    *,
    final: bool = True,
) -> Iterator[bytes]:
    """Yield P-DATA-TF PDUs carrying ``payload`` as PDVs no larger than the peer allows.

    ``peer_max_pdu`` is the peer's maximum P-DATA-TF length (0 means unlimited).
    ``final``: the payload ends its message (its last PDV says so); False for a part of
    a data set sent in pieces.
    """
    limit = len(payload) if peer_max_pdu == 0 else peer_max_pdu - PDV_OVERHEAD
    limit = max(limit, 1)
    view = memoryview(payload)
    offset = 0
    while True:
        chunk = view[offset : offset + limit]
        offset += len(chunk)
        last = offset >= len(payload)
        control = (1 if is_command else 0) | (2 if last and final else 0)
        item_length = len(chunk) + 2
        yield b"".join(
            (
                HEADER.pack(PduType.P_DATA_TF, item_length + 4),
                _PDV_HEADER.pack(item_length, context_id, control),
                chunk,
            )
        )
        if last:
            return


class PduTimeout(TimeoutError):
    """A PDU begun was not complete within the reader's ``pdu_seconds``."""


class PduReader:
    """Reads whole PDUs from a byte stream; safe to cancel at any await.

    Bytes are received in large chunks and every complete PDU in them is handed out
    without another await (a C-FIND response is two small PDUs that usually arrive
    together). A PDU that lies within one chunk is handed out as a view of it, never
    copied: received chunks are immutable, so views stay valid however long they are
    kept. Only a PDU that spans chunks is joined, once. Nothing is consumed until a
    whole PDU is there, so a cancelled read loses nothing and the next read resumes
    where it stopped.

    Time is bounded by deadlines, not idle timers, so a peer trickling a byte now and
    then cannot stretch them: each wait is given the caller's deadline, and once part
    of a PDU is buffered, the rest must come within ``pdu_seconds`` of the first wait
    for it (PduTimeout). Only actual waits look at the clock.
    """

    _CHUNK = 1 << 18

    def __init__(
        self, stream: ByteReceiveStream, max_pdu: int, pdu_seconds: float = math.inf
    ) -> None:
        self._stream = stream
        self._max_pdu = max_pdu
        self._cap: int | None = None  # see cap()
        self._pdu_seconds = pdu_seconds
        self._pdu_deadline = 0.0  # for the PDU partly buffered; 0: none set yet
        self._chunk = memoryview(b"")  # the latest chunk received
        self._offset = 0  # its first byte not handed out
        # The start of a PDU that continues beyond the chunk it began in, and its size.
        self._parts: list[memoryview] = []
        self._parts_size = 0

    def cap(self, length: int | None) -> None:
        """Refuse any PDU longer than ``length`` (None: only the usual limits).

        Before an association is accepted only a small A-ASSOCIATE-RQ makes sense; the
        cap refuses more on the PDU's header, before its bytes are read.
        """
        self._cap = length

    def next_buffered(self) -> tuple[int, memoryview] | None:
        """The next PDU if it is complete in the buffer, else None (never awaits)."""
        if self._parts:
            return self._next_spanning()
        chunk, start = self._chunk, self._offset
        available = len(chunk) - start
        if available >= HEADER_LENGTH:
            pdu_type, length = HEADER.unpack_from(chunk, start)
            _check_header(pdu_type, length, self._max_pdu, self._cap)
            end = start + HEADER_LENGTH + length
            if end <= len(chunk):
                self._offset = end
                self._pdu_deadline = 0.0  # the next PDU gets its own
                return pdu_type, chunk[start + HEADER_LENGTH : end]
        if available:  # the PDU continues in chunks still to come
            self._parts, self._parts_size = [chunk[start:]], available
            self._offset = len(chunk)
        return None

    def _next_spanning(self) -> tuple[int, memoryview] | None:
        parts, size = self._parts, self._parts_size
        if size < HEADER_LENGTH:
            return None
        header = b""
        for part in parts:  # the header itself may span chunks
            header += part[: HEADER_LENGTH - len(header)]
            if len(header) == HEADER_LENGTH:
                break
        pdu_type, length = HEADER.unpack(header)
        _check_header(pdu_type, length, self._max_pdu, self._cap)
        total = HEADER_LENGTH + length
        if size < total:
            return None
        pieces: list[memoryview] = []
        for index, part in enumerate(parts):
            if len(part) < total:
                pieces.append(part)
                total -= len(part)
                continue
            pieces.append(part[:total])
            # What follows the PDU stays buffered, as the current chunk or, if it holds
            # more chunks (a caller that received twice in a row), as a PDU's start.
            rest = [part[total:], *parts[index + 1 :]]
            break
        whole = memoryview(b"".join(pieces))
        self._parts, self._parts_size = [], 0
        self._pdu_deadline = 0.0
        self._chunk, self._offset = memoryview(b""), 0
        if len(rest) == 1:
            self._chunk = rest[0]
        else:
            self._parts, self._parts_size = rest, sum(map(len, rest))
        return pdu_type, whole[HEADER_LENGTH:]

    async def receive_more(self, deadline: float = math.inf) -> None:
        """Await more bytes from the peer until ``deadline`` (``time.monotonic()``).

        TimeoutError when the deadline passes; PduTimeout when the PDU partly buffered
        is not complete in time (whichever comes first). A closed connection becomes
        ConnectionDropped.
        """
        now = time.monotonic()
        pdu_deadline = self._pdu_deadline
        if self._parts or self._offset < len(self._chunk):  # a PDU is under way
            if not pdu_deadline:
                pdu_deadline = self._pdu_deadline = now + self._pdu_seconds
            if pdu_deadline < deadline:
                try:
                    await self._receive(pdu_deadline - now)
                except TimeoutError:
                    raise PduTimeout from None
                return
        await self._receive(deadline - now)

    async def _receive(self, seconds: float) -> None:
        try:
            stream = self._stream
            if isinstance(stream, SocketStream):  # times only an actual wait
                received = await stream.receive_within(seconds, self._CHUNK)
            else:
                with anyio.fail_after(seconds):
                    received = await stream.receive(self._CHUNK)
            data = memoryview(received)
        except TimeoutError:  # an OSError, but the peer is silent, not gone
            raise
        except (EndOfStream, BrokenResourceError, OSError) as exc:
            raise ConnectionDropped(
                "the peer closed the connection without A-RELEASE or A-ABORT",
                "the peer dropped the association; its log says why",
            ) from exc
        if self._parts:
            self._parts.append(data)
            self._parts_size += len(data)
        elif self._offset < len(self._chunk):
            # Called without asking next_buffered first: keep the rest as a PDU's start.
            self._parts = [self._chunk[self._offset :], data]
            self._parts_size = len(self._parts[0]) + len(data)
            self._chunk, self._offset = data, len(data)
        else:
            self._chunk, self._offset = data, 0

    def unread(self) -> bytes:
        """The bytes received and not handed out yet: what a peer that is not DICOM sent."""
        return b"".join((*self._parts, self._chunk[self._offset :]))

    async def read(self, deadline: float = math.inf) -> tuple[int, bytes]:
        """Return the next (PDU type, body), the body copied (for the rare PDUs)."""
        while (item := self.next_buffered()) is None:
            await self.receive_more(deadline)
        pdu_type, body = item
        return pdu_type, bytes(body)


_PDU_TYPES = frozenset(PduType)


def _check_header(pdu_type: int, length: int, max_pdu: int, cap: int | None) -> None:
    if pdu_type not in _PDU_TYPES:
        raise ProtocolError(
            f"the peer sent an unknown PDU type 0x{pdu_type:02X}",
            "the peer does not speak the DICOM upper layer protocol on this port",
        )
    limit = MAX_CONTROL_PDU_LENGTH
    if pdu_type == PduType.P_DATA_TF:
        limit = max(limit, max_pdu + PDV_OVERHEAD)
    if cap is not None:
        limit = min(limit, cap)
    if length > limit:
        raise ProtocolError(
            f"the peer sent a PDU of {length} bytes, beyond the {limit} we accept",
            "the peer ignores the negotiated maximum PDU length",
        )

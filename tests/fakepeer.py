"""A scripted fake DICOM peer for hostile or broken behaviour Orthanc never shows.

It encodes with pynetdicom's PDU classes and pydicom, not with qrclient's own codec, so
a bug in qrclient's codec cannot be mirrored here and go unnoticed.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SOPClassExtendedNegotiation,
)
from pynetdicom.presentation import PresentationContext

HEADER = struct.Struct(">BxL")


@dataclass
class PeerConnection:
    """One accepted connection; scripts drive it and tests inspect ``log``."""

    stream: SocketStream
    reader: BufferedByteReceiveStream
    log: list[str] = field(default_factory=list)
    contexts: dict[int, str] = field(default_factory=dict)
    request: A_ASSOCIATE | None = None

    async def read_pdu(self) -> tuple[int, bytes]:
        header = await self.reader.receive_exactly(6)
        pdu_type, length = HEADER.unpack(header)
        body = await self.reader.receive_exactly(length) if length else b""
        self.log.append(f"pdu-{pdu_type:02x}")
        return pdu_type, header + body

    async def accept(
        self,
        max_pdu: int = 16384,
        reject_ids: tuple[int, ...] = (),
        extended: dict[str, bytes] | None = None,
    ) -> None:
        """Read the A-ASSOCIATE-RQ and accept every context with its first syntax.

        ``extended`` maps SOP class UIDs to the extended negotiation answer to send.
        """
        pdu_type, raw = await self.read_pdu()
        assert pdu_type == 1
        rq = A_ASSOCIATE_RQ()
        rq.decode(raw)
        primitive = rq.to_primitive()
        self.request = rq.to_primitive()
        results = []
        for proposed in primitive.presentation_context_definition_list:
            context = PresentationContext()
            context.context_id = proposed.context_id
            context.transfer_syntax = [proposed.transfer_syntax[0]]
            context.result = 3 if proposed.context_id in reject_ids else 0
            results.append(context)
            self.contexts[int(proposed.context_id or 0)] = str(proposed.abstract_syntax)
        primitive.presentation_context_definition_results_list = results
        primitive.result = 0
        length = MaximumLengthNotification()
        length.maximum_length_received = max_pdu
        uid = ImplementationClassUIDNotification()
        uid.implementation_class_uid = "1.2.3.4.5.6"
        primitive.user_information = [length, uid]
        for sop_class, answer in (extended or {}).items():
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = UID(sop_class)
            item.service_class_application_information = answer
            primitive.user_information.append(item)
        ac = A_ASSOCIATE_AC()
        ac.from_primitive(primitive)
        await self.stream.send(ac.encode())

    async def reject(self, result: int, source: int, reason: int) -> None:
        await self.read_pdu()
        rj = A_ASSOCIATE_RJ()
        rj.result, rj.source, rj.reason_diagnostic = result, source, reason
        await self.stream.send(rj.encode())

    async def read_message(self) -> tuple[int, Dataset, Dataset | None]:
        """Read PDUs until a whole DIMSE message (command and optional data set) is in."""
        parts: dict[bool, list[bytes]] = {True: [], False: []}
        context_id = 0
        command: Dataset | None = None
        while True:
            pdu_type, raw = await self.read_pdu()
            if pdu_type != 4:
                raise EOFError(f"PDU type {pdu_type} instead of P-DATA")
            offset = 6
            while offset < len(raw):
                length, context_id, control = struct.unpack_from(">LBB", raw, offset)
                parts[bool(control & 1)].append(raw[offset + 6 : offset + 4 + length])
                offset += 4 + length
                if control & 1 and control & 2:
                    command = decode(BytesIO(b"".join(parts[True])), True, True)
                    self.log.append(f"command-{int(command.CommandField):04x}")
                    if command.CommandDataSetType == 0x0101:
                        return context_id, command, None
                elif control & 2:
                    assert command is not None
                    return context_id, command, decode(BytesIO(b"".join(parts[False])), False, True)

    async def send_message(
        self, context_id: int, command: Dataset, dataset: Dataset | None = None
    ) -> None:
        command.CommandDataSetType = 0x0101 if dataset is None else 0x0000
        if "CommandGroupLength" in command:
            del command.CommandGroupLength
        body = encode(command, True, True)
        assert body is not None
        command.CommandGroupLength = len(body)
        raw = encode(command, True, True)
        assert raw is not None
        await self.send_raw(p_data(context_id, 0x03, raw))
        if dataset is not None:
            data = encode(dataset, False, True)
            assert data is not None
            await self.send_raw(p_data(context_id, 0x02, data))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)


def p_data(context_id: int, control: int, payload: bytes) -> bytes:
    """One P-DATA-TF with a single PDV (control: bit 0 command, bit 1 last)."""
    item = struct.pack(">LBB", len(payload) + 2, context_id, control) + payload
    return HEADER.pack(4, len(item)) + item


def response(command_field: int, message_id: int, status: int, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class
    ds.CommandField = command_field
    ds.MessageIDBeingRespondedTo = message_id
    ds.CommandDataSetType = 0x0101
    ds.Status = status
    return ds


Script = Callable[[PeerConnection], Awaitable[None]]


@asynccontextmanager
async def fake_peer(script: Script) -> AsyncIterator[tuple[int, list[PeerConnection]]]:
    """Serve ``script`` on a free loopback port; yields (port, connections seen)."""
    connections: list[PeerConnection] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        connection = PeerConnection(stream, BufferedByteReceiveStream(stream))
        connections.append(connection)
        try:
            await script(connection)
        except* (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            ConnectionError,
            EOFError,
        ):
            connection.log.append("closed-by-client")
        finally:
            await stream.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield port, connections
        finally:
            tg.cancel_scope.cancel()

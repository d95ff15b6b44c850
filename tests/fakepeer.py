"""A scripted fake DICOM peer for hostile or broken behaviour Orthanc never shows.

It encodes with pynetdicom's PDU classes and pydicom, not with qrclient's own codec, so
a bug in qrclient's codec cannot be mirrored here and go unnoticed.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
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
    closed: anyio.Event = field(default_factory=anyio.Event)  # set once the script ended

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
        *,
        syntax: str | None = None,
        extra_ids: tuple[int, ...] = (),
        version_name: bytes | None = None,
    ) -> None:
        """Read the A-ASSOCIATE-RQ and accept every context with its first syntax.

        ``extended`` maps SOP class UIDs to the extended negotiation answer to send.
        Hostile answers: ``syntax`` accepts every context with that transfer syntax
        instead (proposed or not); ``extra_ids`` accepts context IDs never proposed;
        ``version_name`` (1 to 16 bytes) is sent as the implementation version name
        whatever it holds (pynetdicom refuses control characters, so a placeholder of
        the same length is encoded and then replaced).
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
            context.transfer_syntax = [UID(syntax) if syntax else proposed.transfer_syntax[0]]
            context.result = 3 if proposed.context_id in reject_ids else 0
            results.append(context)
            self.contexts[int(proposed.context_id or 0)] = str(proposed.abstract_syntax)
        for context_id in extra_ids:
            context = PresentationContext()
            context.context_id = context_id
            context.transfer_syntax = [UID("1.2.840.10008.1.2")]
            context.result = 0
            results.append(context)
        primitive.presentation_context_definition_results_list = results
        primitive.result = 0
        length = MaximumLengthNotification()
        length.maximum_length_received = max_pdu
        uid = ImplementationClassUIDNotification()
        uid.implementation_class_uid = "1.2.3.4.5.6"
        primitive.user_information = [length, uid]
        placeholder = b"V" * len(version_name or b"")
        if version_name:
            name = ImplementationVersionNameNotification()
            name.implementation_version_name = placeholder.decode()
            primitive.user_information.append(name)
        for sop_class, answer in (extended or {}).items():
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = UID(sop_class)
            item.service_class_application_information = answer
            primitive.user_information.append(item)
        ac = A_ASSOCIATE_AC()
        ac.from_primitive(primitive)
        encoded = bytes(ac.encode())
        if version_name:
            assert encoded.count(placeholder) == 1
            encoded = encoded.replace(placeholder, version_name)
        await self.stream.send(encoded)

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
        await self.send_raw(p_data(context_id, 0x03, encode_command_set(command)))
        if dataset is not None:
            data = encode(dataset, False, True)
            assert data is not None
            await self.send_raw(p_data(context_id, 0x02, data))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def associate(
        self, called: str, calling: str, abstract_syntaxes: Sequence[str], max_pdu: int = 16384
    ) -> int:
        """As a requestor: send A-ASSOCIATE-RQ; returns the answer's PDU type.

        Each abstract syntax is proposed with Explicit VR Little Endian as context
        1, 3, 5...; on A-ASSOCIATE-AC ``contexts`` holds the accepted ones.
        """
        await self.send_raw(associate_rq(called, calling, abstract_syntaxes, max_pdu))
        pdu_type, raw = await self.read_pdu()
        if pdu_type == 2:
            ac = A_ASSOCIATE_AC()
            ac.decode(raw)
            for context in ac.to_primitive().presentation_context_definition_results_list:
                if context.result == 0:
                    self.contexts[int(context.context_id or 0)] = str(context.transfer_syntax[0])
        return pdu_type


def encode_command_set(command: Dataset) -> bytes:
    """A command set in Implicit VR Little Endian with its group length first."""
    if "CommandGroupLength" in command:
        del command.CommandGroupLength
    body = encode(command, True, True)
    assert body is not None
    command.CommandGroupLength = len(body)
    raw = encode(command, True, True)
    assert raw is not None
    return bytes(raw)


def associate_rq(
    called: str, calling: str, abstract_syntaxes: Sequence[str], max_pdu: int = 16384
) -> bytes:
    """An A-ASSOCIATE-RQ proposing each abstract syntax in Explicit VR Little Endian."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID("1.2.840.10008.3.1.1.1")
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    contexts = []
    for index, abstract in enumerate(abstract_syntaxes):
        context = PresentationContext()
        context.context_id = 2 * index + 1
        context.abstract_syntax = UID(abstract)
        context.transfer_syntax = [UID("1.2.840.10008.1.2.1")]
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    uid = ImplementationClassUIDNotification()
    uid.implementation_class_uid = UID("1.2.3.4.5.6")
    primitive.user_information = [length, uid]
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return bytes(rq.encode())


def c_store_rq(message_id: int, sop_class: str, sop_instance: str) -> Dataset:
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class
    ds.CommandField = 0x0001
    ds.MessageID = message_id
    ds.Priority = 0
    ds.AffectedSOPInstanceUID = sop_instance
    return ds


@asynccontextmanager
async def hostile_client(port: int) -> AsyncIterator[PeerConnection]:
    """A raw TCP connection to ``port`` on loopback, driven like a fake peer."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    stream.extra(SocketAttribute.raw_socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    async with stream:
        yield PeerConnection(stream, BufferedByteReceiveStream(stream))


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
    port = listener.extra(SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        stream.extra(SocketAttribute.raw_socket).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
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
            connection.closed.set()

    async with listener, anyio.create_task_group() as tg:  # the listener closes after
        tg.start_soon(listener.serve, handle)
        try:
            yield port, connections
        finally:
            tg.cancel_scope.cancel()

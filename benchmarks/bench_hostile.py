"""Peak memory of a qrclient process while a hostile peer streams at it (issue 13).

    .venv/bin/python -m benchmarks.bench_hostile [--gigabytes 1] [--empty-megabytes 100]
                                                 [--connections 1000]

A scripted hostile PACS (plain blocking sockets, threads of this process) answers a
`qrclient get` or `qrclient move` run as a whole process. It fails every C-FIND (the
retrieve then goes on without a plan) and, once the C-GET or C-MOVE request is in:
(a) streams a data set that never ends, ``--gigabytes`` of it, then hangs up: in a
    C-STORE sub-operation (kept on disk, not in memory), and as a C-GET response's
    identifier (which qrclient holds in memory);
(b) streams ``--empty-megabytes`` of empty PDVs as a C-STORE's data set;
(c) opens ``--connections`` connections to qrclient's storage listener during a C-MOVE,
    each sending half of an A-ASSOCIATE-RQ (of 60 KB, then of 1 MB) and holding on, then
    ends the move.
Each row gives qrclient's peak RSS (its own ru_maxrss, see benchmarks.common.run_once),
how much the peer got out before qrclient stopped it, and what qrclient said. The
target: under 200 MB in every case. A missed target is only reported; a scenario that
does not run as scripted (qrclient crashing, the peer never reaching its C-GET or
C-MOVE) exits 1.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    BenchmarkError,
    Run,
    machine_info,
    markdown_table,
    progress,
    qrclient_executable,
    run_benchmark,
    run_once,
    verdict,
)
from fixtures.orthanc import free_ports
from qrclient.net import acse
from qrclient.net.dimse import Command, CommandField, decode_command, encode_command
from qrclient.net.pdu import HEADER, PduType, encode_p_data

HOST = "127.0.0.1"
PACS_AET = "HOSTILE"
RSS_TARGET = 200_000_000  # bytes
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_UID = "1.2.826.0.1.3680043.8.498.13"
PDU_DATA = 64 * 1024  # bytes of data set per P-DATA-TF the peer streams


def half_rq(length: int) -> bytes:
    """The first half of an A-ASSOCIATE-RQ of ``length`` bytes (after its header)."""
    return HEADER.pack(PduType.ASSOCIATE_RQ, length) + b"\x00" * (length // 2)


FLOOD_HOLD = 3.0  # seconds the listener flood is held before the move ends
MB = 1_000_000


@dataclass
class Stream:
    """What the hostile peer got out: bytes of its stream, and connections closed on it."""

    sent: int = 0
    closed: int = 0
    reached: bool = False  # the scenario started (the C-GET or C-MOVE came)


Scenario = Callable[[socket.socket, dict[int, str], int, Command, Stream], None]


@dataclass(frozen=True)
class Case:
    label: str
    command: str  # get or move
    scenario: Scenario
    expect: str  # what qrclient's stderr must say (it stopped the peer, or the peer hung up)
    amount: str  # what the peer had to send, for the report


@dataclass
class Row:
    case: Case
    run: Run
    stream: Stream
    said: str = field(default="")


# -- the hostile PACS -------------------------------------------------------------------


def read_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data.extend(chunk)
    return bytes(data)


def read_pdu(conn: socket.socket) -> tuple[int, bytes]:
    pdu_type, length = HEADER.unpack(read_exactly(conn, HEADER.size))
    return pdu_type, read_exactly(conn, length)


def read_message(conn: socket.socket, first: bytes) -> tuple[int, Command]:
    """The command (and, read and dropped, the data set) of the message ``first`` begins."""
    parts: list[bytes] = []
    command: Command | None = None
    context_id = 0
    body = first
    while True:
        offset = 0
        while offset < len(body):
            length, context_id, control = struct.unpack_from(">LBB", body, offset)
            if control & 1:
                parts.append(body[offset + 6 : offset + 4 + length])
                if control & 2:
                    command = decode_command(b"".join(parts))
                    if not command.has_dataset:
                        return context_id, command
            elif control & 2 and command is not None:
                return context_id, command
            offset += 4 + length
        pdu_type, body = read_pdu(conn)
        if pdu_type != PduType.P_DATA_TF:
            raise ConnectionError(f"PDU type {pdu_type} inside a message")


def response(request: Command, command_field: CommandField, status: int, **more: int) -> Command:
    """A response to ``request``, with ``more`` attributes (counts, data set type)."""
    return Command(
        command_field,
        message_id_being_responded_to=request.message_id,
        affected_sop_class_uid=request.affected_sop_class_uid,
        status=status,
        **more,  # type: ignore[arg-type]
    )


def send_command(conn: socket.socket, context_id: int, command: Command) -> None:
    for item in encode_p_data(context_id, True, encode_command(command), 0):
        conn.sendall(item)


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    item = struct.pack(">LBB", len(data) + 2, context_id, control) + data
    return HEADER.pack(PduType.P_DATA_TF, len(item)) + item


def accept(request: acse.AssociateRequest) -> bytes:
    """Accept every context in its first syntax, and every role asked for."""
    return acse.AssociateAccept(
        request.called_ae,
        request.calling_ae,
        request.application_context,
        tuple(
            acse.ContextResult(c.context_id, acse.ACCEPTANCE, c.transfer_syntaxes[0])
            for c in request.contexts
        ),
        acse.UserInformation(16384, "1.2.826.0.1.3680043.8.498.1", "HOSTILE", request.user.roles),
    ).encode()


class HostilePacs:
    """Serves ``scenario`` on a free loopback port until closed."""

    def __init__(self, scenario: Scenario, listen_port: int) -> None:
        self.scenario = scenario
        self.listen_port = listen_port  # qrclient's storage listener, for (c)
        self.stream = Stream()
        self.server = socket.create_server((HOST, 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn, suppress(OSError, ValueError):
            pdu_type, body = read_pdu(conn)
            request = acse.decode_associate_rq(body)
            conn.sendall(accept(request))
            contexts = {c.context_id: c.abstract_syntax for c in request.contexts}
            while True:
                pdu_type, body = read_pdu(conn)
                if pdu_type == PduType.RELEASE_RQ:
                    conn.sendall(HEADER.pack(PduType.RELEASE_RP, 4) + b"\x00" * 4)
                    return
                if pdu_type != PduType.P_DATA_TF:
                    return
                context_id, command = read_message(conn, body)
                if command.command_field == CommandField.C_FIND_RQ:
                    # Unable to process: qrclient goes on without a plan.
                    send_command(
                        conn, context_id, response(command, CommandField.C_FIND_RSP, 0xC000)
                    )
                    continue
                self.stream.reached = True
                self.scenario(conn, contexts, context_id, command, self.stream)
                return


def storage_context(contexts: dict[int, str]) -> int:
    return next(i for i, uid in contexts.items() if uid == CT_IMAGE_STORAGE)


def streaming(total: int, pdu: bytes, stream: Stream, conn: socket.socket) -> None:
    """Send ``pdu`` again and again, ``total`` bytes of them, or until qrclient stops it."""
    with suppress(OSError):
        while stream.sent < total:
            conn.sendall(pdu)
            stream.sent += len(pdu)


def c_store_rq(context_id: int) -> bytes:
    command = Command(
        CommandField.C_STORE_RQ,
        message_id=1,
        affected_sop_class_uid=CT_IMAGE_STORAGE,
        affected_sop_instance_uid=f"{STUDY_UID}.1.1",
        priority=0,
        command_data_set_type=0x0000,
    )
    return p_data(context_id, 0x03, encode_command(command))


Opening = Callable[[dict[int, str], int, Command], tuple[bytes, bytes]]


def streamed(total: int, opening: Opening) -> Scenario:
    """Send the message start ``opening`` gives, then its PDU again and again."""

    def scenario(
        conn: socket.socket,
        contexts: dict[int, str],
        context_id: int,
        request: Command,
        stream: Stream,
    ) -> None:
        start, again = opening(contexts, context_id, request)
        conn.sendall(start)
        streaming(total, again, stream, conn)

    return scenario


def instance_data(contexts: dict[int, str], _: int, __: Command) -> tuple[bytes, bytes]:
    """A C-STORE sub-operation, then its data set's fragments (never the last)."""
    storage = storage_context(contexts)
    return c_store_rq(storage), p_data(storage, 0x00, b"\x00" * PDU_DATA)


def response_data(_: dict[int, str], context_id: int, request: Command) -> tuple[bytes, bytes]:
    """A pending C-GET response with an identifier, then its fragments (never the last)."""
    pending = response(request, CommandField.C_GET_RSP, 0xFF00, command_data_set_type=0)
    start = p_data(context_id, 0x03, encode_command(pending))
    return start, p_data(context_id, 0x00, b"\x00" * PDU_DATA)


def empty_instance_data(contexts: dict[int, str], _: int, __: Command) -> tuple[bytes, bytes]:
    """A C-STORE sub-operation, then P-DATA-TF PDUs full of empty fragments."""
    storage = storage_context(contexts)
    empty = struct.pack(">LBB", 2, storage, 0x00)
    items = empty * (PDU_DATA // len(empty))
    return c_store_rq(storage), HEADER.pack(PduType.P_DATA_TF, len(items)) + items


def listener_flood(connections: int, listen_port: int, request: bytes) -> Scenario:
    def scenario(
        conn: socket.socket, _: dict[int, str], context_id: int, move: Command, stream: Stream
    ) -> None:
        with ExitStack() as stack:
            flood = []
            for _number in range(connections):
                with suppress(OSError):
                    sock = stack.enter_context(socket.create_connection((HOST, listen_port)))
                    sock.setblocking(False)
                    with suppress(OSError):
                        stream.sent += sock.send(request)
                    flood.append(sock)
            time.sleep(FLOOD_HOLD)
            stream.closed = sum(closed_on_us(sock) for sock in flood)
            final = response(move, CommandField.C_MOVE_RSP, 0, completed=0, failed=0, warning=0)
            send_command(conn, context_id, final)
            with suppress(OSError):
                read_pdu(conn)  # qrclient's release

    return scenario


def closed_on_us(sock: socket.socket) -> bool:
    """Whether qrclient closed ``sock`` (after an A-ABORT, if it sent one)."""
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    return True


# -- running and reporting --------------------------------------------------------------


def cases(args: argparse.Namespace, listen_port: int) -> list[Case]:
    total = int(args.gigabytes * 1_000_000_000)
    empty = int(args.empty_megabytes * MB)
    return [
        Case(
            f"(a) a C-STORE data set that never ends, {args.gigabytes:g} GB",
            "get",
            streamed(total, instance_data),
            "closed the connection",
            f"{total / MB:.0f} MB",
        ),
        Case(
            f"(a) a C-GET response identifier that never ends, {args.gigabytes:g} GB",
            "get",
            streamed(total, response_data),
            "over 16777216 bytes",
            f"{total / MB:.0f} MB",
        ),
        Case(
            f"(b) {args.empty_megabytes:g} MB of empty PDVs as a C-STORE data set",
            "get",
            streamed(empty, empty_instance_data),
            "fragments",
            f"{empty / MB:.0f} MB",
        ),
        *(
            Case(
                f"(c) {args.connections} half-sent A-ASSOCIATE-RQs of {length // 1000} KB "
                "to the listener in a C-MOVE",
                "move",
                listener_flood(args.connections, listen_port, half_rq(length)),
                "",
                f"{args.connections} x {length // 2000} KB",
            )
            for length in (60_000, 1_000_000)
        ),
    ]


def run_case(case: Case, listen_port: int, executable: str) -> Row:
    pacs = HostilePacs(case.scenario, listen_port)
    try:
        with tempfile.TemporaryDirectory(prefix="qrclient-hostile-") as out:
            argv = [
                executable,
                case.command,
                f"{PACS_AET}@{HOST}:{pacs.port}",
                "-k",
                f"StudyInstanceUID={STUDY_UID}",
                "--out",
                str(Path(out) / "store"),
                "--parallel",
                "1",
                "--network-timeout",
                "10",
                "--dimse-timeout",
                "30",
            ]
            if case.command == "move":
                argv += ["--listen", f"{HOST}:{listen_port}"]
            run = run_once(argv, timeout=600)
    finally:
        pacs.close()
    stderr = run.stderr.decode("utf-8", "replace")
    if not pacs.stream.reached:
        raise BenchmarkError(f"{case.label}: qrclient never reached the scenario:\n{stderr}")
    if "Traceback" in stderr or run.returncode == 1:
        raise BenchmarkError(f"{case.label}: {run.describe_failure()}")
    if case.expect not in stderr:
        raise BenchmarkError(f"{case.label}: expected {case.expect!r} in:\n{stderr}")
    said = next((line for line in stderr.splitlines() if "error" in line), "")
    return Row(case, run, pacs.stream, said.removeprefix("qrclient: ")[:110])


def report(rows: Sequence[Row], info: Sequence[tuple[str, str]]) -> str:
    table = markdown_table(
        [
            "hostile peer",
            "command",
            "peer had",
            "peer got out",
            "exit",
            f"peak RSS (MiB), target < {RSS_TARGET // MB} MB",
            "result",
        ],
        [
            [
                row.case.label,
                f"qrclient {row.case.command}",
                row.case.amount,
                f"{row.stream.sent / MB:.1f} MB"
                + (f", {row.stream.closed} closed on it" if row.case.command == "move" else ""),
                str(row.run.returncode),
                f"{row.run.peak_rss_kib / 1024:.1f}",
                verdict(row.run.peak_rss_kib * 1024 < RSS_TARGET),
            ]
            for row in rows
        ],
    )
    said = "\n".join(f"- {row.case.label}: `{row.said}`" for row in rows)
    machine = "\n".join(f"- {name}: {value}" for name, value in info)
    return (
        "## qrclient under hostile peers: peak memory\n\n"
        f"{table}\n\n### what qrclient said\n\n{said}\n\n### machine\n\n{machine}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_hostile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--gigabytes", type=float, default=1.0, help="(a): the never-ending data set (default 1)"
    )
    parser.add_argument(
        "--empty-megabytes", type=float, default=100.0, help="(b): empty PDVs (default 100)"
    )
    parser.add_argument(
        "--connections", type=int, default=1000, help="(c): half-sent requests (default 1000)"
    )
    args = parser.parse_args(argv)
    if args.gigabytes <= 0 or args.empty_megabytes <= 0 or args.connections < 1:
        parser.error("the amounts must be positive")
    return args


def run(args: argparse.Namespace) -> str:
    executable = qrclient_executable()
    (listen_port,) = free_ports(1)
    rows = []
    for case in cases(args, listen_port):
        progress(case.label)
        row = run_case(case, listen_port, executable)
        progress(f"  peak RSS {row.run.peak_rss_kib / 1024:.1f} MiB; {row.said}")
        rows.append(row)
    return report(rows, machine_info())


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())

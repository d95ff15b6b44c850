"""Key-press latency of the terminal UI while a C-FIND streams 50,000 matches.

    .venv/bin/python -m benchmarks.bench_tui [--matches 50000] [--size 120x40]

The app runs headless (rendering included) on a streaming backend: each match is an
identifier encoded and then decoded exactly as the network core does, so the event loop
carries the same per-match work as against a PACS (the log pane's event per response
included), without the PACS's own pace. While
the matches stream, a "down" key is posted every ~20 ms and timed from posting until
the results table has acted on it. Target: every key answered within 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from pydicom.dataset import Dataset
from textual import events

from qrclient.jobs.doctor import Report as DoctorReport
from qrclient.jobs.retrieve import RetrieveOutcome, RetrieveRequest
from qrclient.net.datasets import decode_dataset, encode_dataset
from qrclient.net.dimse import Command, CommandField
from qrclient.net.events import DimseReceived, Observer
from qrclient.ops.find import FindOutcome, FindState
from qrclient.ops.progress import Snapshot
from qrclient.ops.query import Query
from qrclient.present.browse import Row, match_row
from qrclient.store.jobs import Job as DurableJob
from qrclient.store.overview import StudyHolding
from qrclient.tui.app import QrclientApp
from qrclient.tui.backend import Backend, EchoResult, Node
from qrclient.tui.screens.main import MainScreen
from qrclient.vocabulary import Level

EXPLICIT_LE = "1.2.840.10008.1.2.1"
MATCHES_PER_READ = 64  # about what one 16 KiB PDU read brings at STUDY level
TARGET_MS = 100.0
_PENDING = Command(
    command_field=CommandField.C_FIND_RSP,
    message_id_being_responded_to=1,
    affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.1",
    command_data_set_type=1,
    status=0xFF00,
)


def _identifier(number: int) -> bytes:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = f"PATIENT^NUMBER{number % 977}"
    ds.PatientID = f"PID{number:06d}"
    ds.StudyDate = f"20{10 + number % 15:02d}{1 + number % 12:02d}{1 + number % 28:02d}"
    ds.StudyTime = "083000"
    ds.AccessionNumber = f"ACC{number:08d}"
    ds.ModalitiesInStudy = ["CT", "PT"][: 1 + number % 2]
    ds.StudyDescription = f"STUDY {number % 53}"
    ds.NumberOfStudyRelatedSeries = str(1 + number % 7)
    ds.NumberOfStudyRelatedInstances = str(10 + number % 500)
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{number + 1}"
    return encode_dataset(ds, EXPLICIT_LE)


class _Stream:
    def __init__(self, identifiers: list[bytes], observer: Observer | None) -> None:
        self._identifiers = identifiers
        self._observer = observer
        self.outcome = FindOutcome()

    async def __aiter__(self) -> AsyncIterator[Row]:
        for number, data in enumerate(self._identifiers):
            if number % MATCHES_PER_READ == 0:
                await asyncio.sleep(0)  # a socket read
            if self._observer is not None:  # the log pane sees every response, as for real
                self._observer(DimseReceived(_PENDING.summary()))
            self.outcome.count += 1
            yield match_row(decode_dataset(data, EXPLICIT_LE))
        self.outcome.state = FindState.SUCCESS


class StreamingBackend:
    """Answers every query with the same big stream of matches."""

    def __init__(self, matches: int, observer: Observer | None = None) -> None:
        self._identifiers = [_identifier(n) for n in range(matches)]
        self.observer = observer

    @property
    def store_root(self) -> Path:
        return Path("/nonexistent")

    async def echo(self, node: Node) -> EchoResult:
        return EchoResult(0.0, 0.0, "BENCH", "1.2.3", 0)

    def find(self, node: Node, query: Query) -> AbstractAsyncContextManager[_Stream]:
        return self._find()

    @asynccontextmanager
    async def _find(self) -> AsyncIterator[_Stream]:
        yield _Stream(self._identifiers, self.observer)

    async def retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: Callable[[Snapshot], None]
    ) -> RetrieveOutcome:
        return RetrieveOutcome()

    def local_counts(self, level: Level, uids: list[str]) -> dict[str, int]:
        return {}

    def holdings(self) -> list[StudyHolding]:
        return []

    async def remote_totals(self, node: Node, study_uids: list[str]) -> dict[str, int]:
        return {}

    async def doctor(self, node: Node) -> DoctorReport:
        raise NotImplementedError("the benchmark diagnoses nothing")

    def stored_files(self, level: Level, uid: str) -> list[Path]:
        return []

    def durable_jobs(self) -> list[DurableJob]:
        return []

    async def resume(self, job_id: int) -> tuple[int, str]:
        raise NotImplementedError("the benchmark resumes no job")

    async def aclose(self) -> None:
        return None


async def measure(matches: int, size: tuple[int, int]) -> tuple[list[float], float, int]:
    """Key latencies (ms) while streaming, the stream's duration (s), rows shown."""
    backend = StreamingBackend(matches)

    def factory(observer: Observer) -> Backend:
        backend.observer = observer
        return backend

    app = QrclientApp(factory, node="BENCH@127.0.0.1:4242")
    latencies: list[float] = []
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        assert isinstance(screen, MainScreen)
        table = screen.table
        handled: list[float] = []
        answered = asyncio.Event()
        original = table.action_cursor

        def timed_cursor(delta: int) -> None:
            original(delta)
            handled.append(time.perf_counter())
            answered.set()

        table.action_cursor = timed_cursor  # type: ignore[method-assign]
        started = time.perf_counter()
        await pilot.press("enter")
        table.focus()
        while screen.browse.find_worker is None or screen.browse.find_worker.is_running:
            answered.clear()
            posted = time.perf_counter()
            app.post_message(events.Key("down", None))
            await answered.wait()
            latencies.append((handled[-1] - posted) * 1000)
            await asyncio.sleep(random.uniform(0.01, 0.03))
        streamed = time.perf_counter() - started
        await pilot.pause(0.3)
        shown = table.row_count
    return latencies, streamed, shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=50_000)
    parser.add_argument("--size", default="120x40", help="terminal size WxH")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    latencies, streamed, shown = asyncio.run(measure(args.matches, (width, height)))
    if shown != args.matches:
        print(f"error: {shown} rows in the table, expected {args.matches}", file=sys.stderr)
        return 1
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    worst = ordered[-1]
    print(
        f"{args.matches:,} matches streamed in {streamed:.2f} s ({args.size}); "
        f"{len(latencies)} key presses during the stream: "
        f"median {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms "
        f"(target < {TARGET_MS:.0f} ms: {'met' if worst < TARGET_MS else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

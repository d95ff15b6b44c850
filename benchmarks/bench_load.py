"""Throughput of one qrclient process under load: 20 concurrent C-FINDs, 4 concurrent retrieves.

    .venv/bin/python -m benchmarks.bench_load [--runs 5] [--warmup 1] [--big-count 300]

One Orthanc holds the test archive (8 varied patients and one study of BIG_COUNT 256x256
CT images). The load, as tests/test_load.py runs it, in one event loop:
- 20 C-FINDs at image, series and study level, each on its own association, all at once;
- 4 study retrieves at once (the 4 largest studies), two by C-GET into their own stores,
  two by C-MOVE into one store through one shared storage listener;
- both together.
For comparison, the same 20 queries run by 20 findscu processes started at once
(TCP_NODELAY=1). qrclient's figures are timed inside this process (no interpreter
start-up); findscu's from the first spawn to the last exit. Every run is checked: each
result set equals the archive's, every instance arrived and the stores verify clean.
Orthanc gets DicomThreadsCount=32 (default 4) so that it serves the load concurrently.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from benchmarks.bench_query import findscu_count_check
from benchmarks.common import (
    CALLING_AET,
    ORTHANC_AET,
    BenchmarkError,
    Run,
    add_run_arguments,
    check_run_arguments,
    dcmtk_env,
    loaded_orthanc,
    machine_info,
    markdown_table,
    progress,
    require_executable,
    run_benchmark,
)
from fixtures.dataset import Archive, test_archive
from fixtures.load import LoadQuery, LoadRetrieve, load_queries, load_retrieves, run_query
from fixtures.orthanc import free_ports
from qrclient.jobs.retrieve import RetrieveJob, RetrieveRequest, RetrieveState, move_listener
from qrclient.net import Peer, Settings
from qrclient.ops.move import MoveRouter
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model

HOST = "127.0.0.1"
FINDS = 20
RETRIEVES = 4
DEFAULT_BIG_COUNT = 300
ORTHANC_THREADS = 32


@dataclass(slots=True)
class Sample:
    """What one timed run did."""

    seconds: float
    finds: int = 0
    matches: int = 0
    instances: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Row:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def median(self) -> Sample:
        middle = statistics.median(s.seconds for s in self.samples)
        return min(self.samples, key=lambda s: abs(s.seconds - middle))


# -- the load, in this process -----------------------------------------------------------


class Load:
    def __init__(self, peer: Peer, archive: Archive, listen_port: int) -> None:
        self.peer = peer
        self.queries = load_queries(archive, FINDS)
        self.retrieves = load_retrieves(archive, RETRIEVES)
        self.listen_port = listen_port

    async def finds(self) -> Sample:
        found: dict[int, list[str]] = {}

        async def one(index: int, query: LoadQuery) -> None:
            found[index] = await run_query(self.peer, query, Settings(calling_ae=CALLING_AET))

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for index, query in enumerate(self.queries):
                group.start_soon(one, index, query)
        seconds = time.perf_counter() - started
        for index, query in enumerate(self.queries):
            if sorted(found[index]) != sorted(query.expected):
                raise BenchmarkError(f"qrclient query {index} {query.keys}: wrong result set")
        return Sample(seconds, finds=FINDS, matches=sum(map(len, found.values())))

    async def retrieves_into(self, directory: Path) -> Sample:
        with ExitStack() as stack:
            stores = [stack.enter_context(Store.open(directory / f"s{n}")) for n in range(3)]
            router = MoveRouter(CALLING_AET, stores[2])
            jobs = [self._job(self.retrieves[n], stores[n], None) for n in range(2)]
            jobs += [self._job(self.retrieves[n], stores[2], router) for n in (2, 3)]
            settings = Settings(calling_ae=CALLING_AET)
            started = time.perf_counter()
            async with (
                move_listener(router, HOST, self.listen_port, settings),
                anyio.create_task_group() as group,
            ):
                for job in jobs:
                    group.start_soon(job.run)
            seconds = time.perf_counter() - started
            for job, retrieve in zip(jobs, self.retrieves, strict=True):
                _check_job(job, retrieve)
            for store, expected in (
                (stores[0], self.retrieves[0].expected),
                (stores[1], self.retrieves[1].expected),
                (stores[2], self.retrieves[2].expected | self.retrieves[3].expected),
            ):
                _check_store(store, expected)
        return Sample(
            seconds,
            instances=sum(j.outcome.received for j in jobs),
            bytes=sum(j.outcome.received_bytes for j in jobs),
        )

    async def together(self, directory: Path) -> Sample:
        samples: list[Sample] = []

        async def finds() -> None:
            samples.append(await self.finds())

        async def retrieves() -> None:
            samples.append(await self.retrieves_into(directory))

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(finds)
            group.start_soon(retrieves)
        seconds = time.perf_counter() - started
        return Sample(
            seconds,
            finds=sum(s.finds for s in samples),
            matches=sum(s.matches for s in samples),
            instances=sum(s.instances for s in samples),
            bytes=sum(s.bytes for s in samples),
        )

    def _job(self, retrieve: LoadRetrieve, store: Store, router: MoveRouter | None) -> RetrieveJob:
        request = RetrieveRequest.parse(
            Level.STUDY, Model.STUDY, [f"StudyInstanceUID={retrieve.study_uid}"]
        )
        method = Method.GET if router is None else Method.MOVE
        settings = Settings(calling_ae=CALLING_AET)
        return RetrieveJob.into_store(
            self.peer, request, store, settings, method=method, router=router
        )


def _check_job(job: RetrieveJob, retrieve: LoadRetrieve) -> None:
    outcome = job.outcome
    if outcome.state is not RetrieveState.COMPLETE or outcome.received != len(retrieve.expected):
        raise BenchmarkError(
            f"retrieve of {retrieve.study_uid}: {outcome.state.value}, "
            f"{outcome.received}/{len(retrieve.expected)} instances, {outcome.errors[:3]}"
        )


def _check_store(store: Store, expected: frozenset[str]) -> None:
    stored = {i.sop_instance_uid for i in store.instances()}
    problems = store.verify()
    if stored != expected or problems:
        raise BenchmarkError(
            f"store {store.root}: {len(stored)} of {len(expected)} instances, "
            f"problems {problems[:3]}"
        )


# -- 20 findscu processes ------------------------------------------------------------------


def parallel_findscu(port: int, queries: Sequence[LoadQuery]) -> Sample:
    """Start one findscu per query at once; time from the first spawn to the last exit."""
    findscu = require_executable("findscu")
    env = dcmtk_env()
    with ExitStack() as stack:
        outputs = [stack.enter_context(tempfile.TemporaryFile()) for _ in queries]
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                [
                    findscu,
                    "-S",
                    *(arg for key in query.findscu_keys() for arg in ("-k", key)),
                    HOST,
                    str(port),
                    "-aec",
                    ORTHANC_AET,
                    "-aet",
                    CALLING_AET,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=output,
                env=env,
            )
            for query, output in zip(queries, outputs, strict=True)
        ]
        codes = [process.wait() for process in processes]
        seconds = time.perf_counter() - started
        matches = 0
        for query, process, code, output in zip(queries, processes, codes, outputs, strict=True):
            output.seek(0)
            run = Run(tuple(map(str, process.args)), code, seconds, 0, b"", output.read())  # type: ignore[arg-type]
            if code != 0:
                raise BenchmarkError(run.describe_failure())
            findscu_count_check(len(query.expected))(run)
            matches += len(query.expected)
    return Sample(seconds, finds=len(queries), matches=matches)


# -- report --------------------------------------------------------------------------------


def _rate(amount: float, seconds: float, digits: int = 0) -> str:
    return f"{amount / seconds:,.{digits}f}" if amount else "—"


def report(rows: Sequence[Row], runs: int, info: Sequence[tuple[str, str]]) -> str:
    cells = []
    for row in rows:
        sample = row.median()
        seconds = sample.seconds
        cells.append(
            [
                row.name,
                f"{seconds:.3f}",
                _rate(sample.finds, seconds, 1),
                _rate(sample.matches, seconds),
                _rate(sample.instances, seconds),
                _rate(sample.bytes / 1e6, seconds, 1),
            ]
        )
    return "\n".join(
        [
            f"## qrclient under load (median of {runs} runs)",
            "",
            markdown_table(
                ["load", "seconds", "C-FINDs/s", "matches/s", "instances/s", "MB/s"], cells
            ),
            "",
            "### machine",
            "",
            *(f"- {name}: {value}" for name, value in info),
        ]
    )


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_load", description=__doc__.split("\n\n")[0]
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--big-count",
        type=int,
        default=DEFAULT_BIG_COUNT,
        help=f"images in the archive's big study (default {DEFAULT_BIG_COUNT})",
    )
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    if args.big_count < 1:
        parser.error("--big-count must be at least 1")
    return args


def run(args: argparse.Namespace) -> str:
    archive = test_archive(big_count=args.big_count)
    (listen_port,) = free_ports(1)
    config = {
        "DicomThreadsCount": ORTHANC_THREADS,
        "DicomModalities": {"qrclient": [CALLING_AET, HOST, listen_port]},
        "DicomAssociationCloseDelay": 0,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
    }
    with loaded_orthanc([archive], config=config, log=progress) as server:
        load = Load(Peer(ORTHANC_AET, HOST, server.dicom_port), archive, listen_port)
        rows = [
            Row(f"qrclient: {FINDS} concurrent C-FINDs, one process"),
            Row(f"DCMTK: {FINDS} findscu processes at once"),
            Row(f"qrclient: {RETRIEVES} concurrent study retrieves (2 C-GET, 2 C-MOVE)"),
            Row(f"qrclient: {FINDS} C-FINDs + {RETRIEVES} retrieves at once"),
        ]
        for index in range(args.warmup + args.runs):
            progress(f"run {index + 1} of {args.warmup + args.runs}")
            with tempfile.TemporaryDirectory(prefix="qrclient-load-") as tmp:
                samples = [
                    anyio.run(load.finds),
                    parallel_findscu(server.dicom_port, load.queries),
                    anyio.run(load.retrieves_into, Path(tmp) / "retrieves"),
                    anyio.run(load.together, Path(tmp) / "together"),
                ]
            if index >= args.warmup:
                for row, sample in zip(rows, samples, strict=True):
                    row.samples.append(sample)
        info = [*machine_info(server), ("Orthanc DicomThreadsCount", str(ORTHANC_THREADS))]
    return report(rows, args.runs, info)


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())

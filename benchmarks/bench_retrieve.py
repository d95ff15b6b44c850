"""C-GET and C-MOVE of whole studies: qrclient against DCMTK getscu/movescu, on two PACSs.

    .venv/bin/python -m benchmarks.bench_retrieve [--runs 3] [--warmup 1] [--big]
        [--pacs both|orthanc|dcmqrscp]

Two data sets are retrieved as one study each: (a) 500 images of 512x512 (~0.5 MB each)
and (b) 3000 images of 64x64. Every command runs as a whole process (start-up included)
into a new empty output directory; the commands of a data set are alternated run by run
and the median is reported. Every run is checked (exit code 0, one file per instance,
and one file's SOP Instance UID is one of the data set's): a failing command or a wrong
result exits 1. A missed target is only reported: this is a measurement, not a test.

The data sets go to a local Orthanc, then to DCMTK's dcmqrscp (the tests' second PACS):
it computes no keys (SOPClassesInStudy and the counts) and returns no SOPClassUID at
IMAGE level, so qrclient plans per instance and proposes contexts for unknown classes
there, as getscu does everywhere. Its rows are for reference: no target.

``--big`` adds (c), 2000 images of 512x512 (~1 GB), retrieved once by getscu and once
by ``qrclient get`` from Orthanc, for qrclient's peak memory on a study much larger than
its buffers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from benchmarks.common import (
    CALLING_AET,
    ORTHANC_AET,
    RUN_DIR,
    BenchmarkError,
    Check,
    Command,
    Measurement,
    Run,
    add_run_arguments,
    check_run_arguments,
    dcmtk_env,
    loaded_orthanc,
    machine_info,
    markdown_table,
    measure_all,
    progress,
    qrclient_executable,
    ratio_cell,
    require_executable,
    run_benchmark,
    seconds_cell,
    verdict,
)
from fixtures.dataset import Archive, all_instances, bulk_archive
from fixtures.dcmqrscp import DcmqrscpServer
from fixtures.orthanc import free_ports

HOST = "127.0.0.1"
MOVESCU_AET = "MOVESCU"
STORE_METADATA_DIR = ".qrclient"  # qrclient's index and incoming files inside --out
DEFAULT_RUNS = 3
DEFAULT_WARMUP = 1
PARALLEL = (1, 2, 4)
DCMQRSCP_PARALLEL = (1, 2)
ONE_ASSOCIATION_TARGET = 1.0  # qrclient get --parallel 1 / getscu, on every data set
PARALLEL_TARGET = 0.8  # qrclient get --parallel N>1 / getscu, on the data sets marked so
MOVE_TARGET = 1.0  # qrclient move / movescu
BIG_RSS_TARGET = 200_000_000  # bytes: qrclient's peak RSS retrieving the --big study
MB = 1_000_000  # MB/s are decimal megabytes of received files per second


@dataclass(frozen=True, slots=True)
class DataSet:
    """One bulk study in Orthanc and what a correct retrieve of it must produce."""

    label: str
    instances: int
    rows: int
    columns: int
    patient_id: str
    parallel_target: bool  # does the --parallel N>1 target apply to this one?
    archive: Archive = field(init=False, repr=False)
    study_uid: str = field(init=False)
    sop_instance_uids: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        archive = bulk_archive(self.instances, self.rows, self.columns, self.patient_id)
        object.__setattr__(self, "archive", archive)
        object.__setattr__(self, "study_uid", archive[0].studies[0].study_instance_uid)
        uids = frozenset(i.sop_instance_uid for _, _, _, i in all_instances(archive))
        object.__setattr__(self, "sop_instance_uids", uids)

    @property
    def name(self) -> str:
        return f"({self.label}) {self.instances} x {self.rows}x{self.columns}"


DATA_SETS = (
    DataSet("a", 500, 512, 512, "BENCHA", parallel_target=True),
    DataSet("b", 3000, 64, 64, "BENCHB", parallel_target=False),
)
BIG_DATA_SET = DataSet("c", 2000, 512, 512, "BENCHC", parallel_target=False)


@dataclass(frozen=True, slots=True)
class Tool:
    """One command of a data set's round, e.g. getscu or `qrclient get --parallel 2`."""

    key: str
    label: str
    command: Command


@dataclass(frozen=True, slots=True)
class Row:
    """A line of the main table: a qrclient command against its DCMTK counterpart."""

    name: str
    dcmtk: str  # Tool.key
    qrclient: str
    limit: float | None  # target ratio qrclient / DCMTK; None for a reference row
    versus: str


@dataclass(slots=True)
class Result:
    label: str
    measurement: Measurement
    received_bytes: int

    @property
    def megabytes_per_second(self) -> float:
        median = self.measurement.median
        return self.received_bytes / MB / median if median > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Ports:
    pacs: int  # the DICOM port of the PACS retrieved from
    qrclient_listener: int  # where the PACS C-MOVEs to QRCLIENT
    movescu_listener: int  # where the PACS C-MOVEs to MOVESCU
    pacs_aet: str = ORTHANC_AET
    pacs_name: str = ""  # "" for Orthanc (the rows as before), else named in each row


# -- checks ------------------------------------------------------------------------------


def received_files(root: Path) -> list[tuple[Path, int]]:
    """Every file under ``root`` with its size, except qrclient's own metadata folder."""
    found: list[tuple[Path, int]] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != STORE_METADATA_DIR]
        for name in files:
            path = Path(directory, name)
            found.append((path, path.stat().st_size))
    return found


def received_check(data: DataSet, who: str, sizes: dict[str, int], *, summary: bool) -> Check:
    """One file per instance of ``data`` in the run's directory, one of them read back.

    ``summary``: the run also printed qrclient's ``--format json`` summary, which must
    say the retrieve is complete and count every instance. Records the bytes received.
    """

    def check(run: Run) -> None:
        if run.run_dir is None:
            raise BenchmarkError(f"{who}: the run has no output directory")
        files = received_files(run.run_dir)
        if len(files) != data.instances:
            raise BenchmarkError(
                f"{who} on {data.name}: {len(files)} files received, expected {data.instances}"
            )
        sample = sorted(files)[len(files) // 2][0]
        try:
            ds = pydicom.dcmread(sample, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception as exc:
            raise BenchmarkError(f"{who}: cannot read {sample} back: {exc}") from exc
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid not in data.sop_instance_uids:
            raise BenchmarkError(f"{who}: {sample} holds SOP Instance {uid!r}, not in {data.name}")
        if summary:
            check_summary(run, data, who)
        sizes[who] = sum(size for _, size in files)

    return check


def check_summary(run: Run, data: DataSet, who: str) -> None:
    try:
        report = json.loads(run.stdout)
    except ValueError as exc:
        raise BenchmarkError(f"{who}: no JSON summary on stdout: {run.stdout[:200]!r}") from exc
    if report.get("state") != "complete" or report.get("received") != data.instances:
        raise BenchmarkError(
            f"{who}: summary says {report.get('state')!r} with {report.get('received')!r} "
            f"received, expected complete with {data.instances}"
        )


# -- the commands ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Programs:
    getscu: str
    movescu: str
    qrclient: str


def study_keys(data: DataSet) -> list[str]:
    return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={data.study_uid}"]


def getscu_tool(
    programs: Programs, ports: Ports, data: DataSet, out: Path, sizes: dict[str, int]
) -> Tool:
    argv = (
        programs.getscu,
        "-S",
        *study_keys(data),
        HOST,
        str(ports.pacs),
        "-aec",
        ports.pacs_aet,
        "-aet",
        CALLING_AET,
        "-od",
        RUN_DIR,
    )
    check = received_check(data, "getscu", sizes, summary=False)
    return Tool("getscu", "getscu", Command(argv, check, dcmtk_env(), run_dirs_in=out))


def qrclient_get_tool(
    programs: Programs,
    ports: Ports,
    data: DataSet,
    out: Path,
    sizes: dict[str, int],
    parallel: int,
) -> Tool:
    key = f"get-{parallel}"
    argv = (
        programs.qrclient,
        "get",
        f"{ports.pacs_aet}@{HOST}:{ports.pacs}",
        "-k",
        f"StudyInstanceUID={data.study_uid}",
        "--out",
        RUN_DIR,
        "--parallel",
        str(parallel),
        "--format",
        "json",
    )
    check = received_check(data, key, sizes, summary=True)
    command = Command(argv, check, dcmtk_env(), run_dirs_in=out)
    return Tool(key, f"qrclient get --parallel {parallel}", command)


def tools_for(
    programs: Programs,
    ports: Ports,
    data: DataSet,
    out: Path,
    sizes: dict[str, int],
    parallels: Sequence[int] = PARALLEL,
) -> list[Tool]:
    """The round of commands run on ``data``: gets first, then moves."""
    node = f"{ports.pacs_aet}@{HOST}:{ports.pacs}"
    movescu = (
        programs.movescu,
        "-S",
        *study_keys(data),
        HOST,
        str(ports.pacs),
        "-aec",
        ports.pacs_aet,
        "-aet",
        MOVESCU_AET,
        "-aem",
        MOVESCU_AET,
        "+P",
        str(ports.movescu_listener),
        "-od",
        RUN_DIR,
    )
    qrclient_move = (
        programs.qrclient,
        "move",
        node,
        "-k",
        f"StudyInstanceUID={data.study_uid}",
        "--out",
        RUN_DIR,
        "--listen",
        str(ports.qrclient_listener),
        "--parallel",
        "1",
        "--format",
        "json",
    )
    env = dcmtk_env()
    return [
        getscu_tool(programs, ports, data, out, sizes),
        *(qrclient_get_tool(programs, ports, data, out, sizes, n) for n in parallels),
        Tool(
            "movescu",
            "movescu",
            Command(
                movescu,
                received_check(data, "movescu", sizes, summary=False),
                env,
                run_dirs_in=out,
            ),
        ),
        Tool(
            "move-1",
            "qrclient move --parallel 1",
            Command(
                qrclient_move,
                received_check(data, "move-1", sizes, summary=True),
                env,
                run_dirs_in=out,
            ),
        ),
    ]


def rows_for(data: DataSet, ports: Ports, parallels: Sequence[int] = PARALLEL) -> list[Row]:
    """The main table's rows for ``data``; on another PACS than Orthanc, no targets."""
    name = data_set_name(data, ports)
    targets = not ports.pacs_name
    rows = [
        Row(
            f"C-GET {name}, 1 association",
            "getscu",
            "get-1",
            ONE_ASSOCIATION_TARGET if targets else None,
            "getscu",
        )
    ]
    for parallel in parallels[1:]:
        rows.append(
            Row(
                f"C-GET {name}, --parallel {parallel}",
                "getscu",
                f"get-{parallel}",
                PARALLEL_TARGET if data.parallel_target and targets else None,
                "getscu",
            )
        )
    rows.append(
        Row(
            f"C-MOVE {name}, 1 association",
            "movescu",
            "move-1",
            MOVE_TARGET if targets else None,
            "movescu",
        )
    )
    return rows


def data_set_name(data: DataSet, ports: Ports) -> str:
    return f"{data.name} on {ports.pacs_name}" if ports.pacs_name else data.name


def measure_data_set(
    tools: Sequence[Tool], sizes: dict[str, int], runs: int, warmup: int
) -> dict[str, Result]:
    measurements = measure_all([t.command for t in tools], runs=runs, warmup=warmup)
    return {
        tool.key: Result(tool.label, measurement, sizes[tool.key])
        for tool, measurement in zip(tools, measurements, strict=True)
    }


# -- report ------------------------------------------------------------------------------


def target_cell(row: Row) -> str:
    return "—" if row.limit is None else f"≤ {row.limit:g}x {row.versus}"


def rate_cell(result: Result) -> str:
    return f"{result.megabytes_per_second:.1f}"


def rss_cell(measurement: Measurement) -> str:
    return f"{measurement.peak_rss_mib:.1f}"


def report(
    sections: Sequence[tuple[str, list[Row], dict[str, Result]]],
    big: dict[str, Result] | None,
    info: Sequence[tuple[str, str]],
    runs: int,
    warmup: int,
) -> str:
    main_rows: list[list[str]] = []
    detail_rows: list[list[str]] = []
    for name, rows, results in sections:
        for row in rows:
            dcmtk, qrclient = results[row.dcmtk], results[row.qrclient]
            passed = (
                None
                if row.limit is None
                else qrclient.measurement.median <= row.limit * dcmtk.measurement.median
            )
            main_rows.append(
                [
                    row.name,
                    seconds_cell(dcmtk.measurement),
                    seconds_cell(qrclient.measurement),
                    ratio_cell(qrclient.measurement, dcmtk.measurement),
                    target_cell(row),
                    verdict(passed),
                    rate_cell(dcmtk),
                    rate_cell(qrclient),
                ]
            )
        for result in results.values():
            m = result.measurement
            detail_rows.append(
                [
                    name,
                    result.label,
                    f"{m.best:.3f}",
                    f"{m.median:.3f}",
                    f"{m.worst:.3f}",
                    rate_cell(result),
                    f"{result.received_bytes / MB:.1f}",
                    rss_cell(m),
                ]
            )
    parts = [
        f"## qrclient vs DCMTK: retrieve (median of {runs} whole-process runs, {warmup} warm-up)",
        "",
        markdown_table(
            [
                "task",
                "DCMTK (s)",
                "qrclient (s)",
                "ratio (qrclient / DCMTK)",
                "target",
                "result",
                "DCMTK MB/s",
                "qrclient MB/s",
            ],
            main_rows,
        ),
        "",
        "### spread, throughput and memory",
        "",
        markdown_table(
            [
                "data set",
                "tool",
                "min (s)",
                "median (s)",
                "max (s)",
                "MB/s (median)",
                "received (MB)",
                "peak RSS (MiB)",
            ],
            detail_rows,
        ),
    ]
    if big is not None:
        parts += ["", *big_report(big)]
    parts += ["", "### machine", "", *(f"- {name}: {value}" for name, value in info)]
    return "\n".join(parts)


def big_report(big: dict[str, Result]) -> list[str]:
    rows = []
    for key, result in big.items():
        m = result.measurement
        if key == "getscu":
            target, passed = "—", None
        else:
            target = f"peak RSS < {BIG_RSS_TARGET / MB:g} MB ({BIG_RSS_TARGET / 2**20:.1f} MiB)"
            passed = max(m.peak_rss_kib) * 1024 < BIG_RSS_TARGET
        rows.append(
            [
                result.label,
                f"{m.median:.3f}",
                rate_cell(result),
                f"{result.received_bytes / MB:.1f}",
                rss_cell(m),
                target,
                verdict(passed),
            ]
        )
    return [
        f"### --big: C-GET {BIG_DATA_SET.name}, one run each (no warm-up, in this order)",
        "",
        markdown_table(
            ["tool", "wall (s)", "MB/s", "received (MB)", "peak RSS (MiB)", "target", "result"],
            rows,
        ),
    ]


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_retrieve", description=__doc__.split("\n\n")[0]
    )
    add_run_arguments(parser, runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP)
    parser.add_argument(
        "--pacs",
        choices=("both", "orthanc", "dcmqrscp"),
        default="both",
        help="the PACS(s) to retrieve from (default both)",
    )
    parser.add_argument(
        "--big",
        action="store_true",
        help=f"also retrieve {BIG_DATA_SET.name} (~1 GB) once, for qrclient's peak memory",
    )
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    return args


def orthanc_config(ports: Ports) -> dict[str, object]:
    return {
        "DefaultEncoding": "Utf8",
        "DicomAssociationCloseDelay": 0,
        "DicomModalities": {
            "qrclient": [CALLING_AET, HOST, ports.qrclient_listener],
            "movescu": [MOVESCU_AET, HOST, ports.movescu_listener],
        },
    }


def run(args: argparse.Namespace) -> str:
    programs = Programs(
        getscu=require_executable("getscu"),
        movescu=require_executable("movescu"),
        qrclient=qrclient_executable(),
    )
    data_sets = list(DATA_SETS)
    archives = [d.archive for d in data_sets]
    if args.big:
        archives.append(BIG_DATA_SET.archive)
    qrclient_port, movescu_port = free_ports(2)
    listeners = Ports(0, qrclient_port, movescu_port)
    sections: list[tuple[str, list[Row], dict[str, Result]]] = []
    big = None
    with tempfile.TemporaryDirectory(prefix="qrclient-bench-out-") as out_root:
        out = Path(out_root)
        if args.pacs in ("both", "orthanc"):
            with loaded_orthanc(archives, config=orthanc_config(listeners), log=progress) as server:
                taken = {server.dicom_port, server.http_port} & {qrclient_port, movescu_port}
                if taken:
                    raise BenchmarkError(
                        f"port {min(taken)} given to Orthanc and a listener; run again"
                    )
                ports = Ports(server.dicom_port, qrclient_port, movescu_port)
                sections += measure_pacs(programs, ports, data_sets, out, args)
                if args.big:
                    sizes: dict[str, int] = {}
                    tools = [
                        getscu_tool(programs, ports, BIG_DATA_SET, out, sizes),
                        qrclient_get_tool(programs, ports, BIG_DATA_SET, out, sizes, 1),
                    ]
                    progress(f"timing {BIG_DATA_SET.name}: one run each")
                    big = measure_data_set(tools, sizes, 1, 0)
                info = machine_info(server)
        else:
            info = machine_info()
        if args.pacs in ("both", "dcmqrscp"):
            with loaded_dcmqrscp(data_sets, listeners, out) as server:
                ports = Ports(
                    server.dicom_port, qrclient_port, movescu_port, server.aet, "dcmqrscp"
                )
                sections += measure_pacs(programs, ports, data_sets, out, args, DCMQRSCP_PARALLEL)
    return report(sections, big, info, args.runs, args.warmup)


def measure_pacs(
    programs: Programs,
    ports: Ports,
    data_sets: Sequence[DataSet],
    out: Path,
    args: argparse.Namespace,
    parallels: Sequence[int] = PARALLEL,
) -> list[tuple[str, list[Row], dict[str, Result]]]:
    sections = []
    for data in data_sets:
        sizes: dict[str, int] = {}
        tools = tools_for(programs, ports, data, out, sizes, parallels)
        name = data_set_name(data, ports)
        progress(
            f"timing {name}: {len(tools)} commands, {args.warmup} warm-up + {args.runs} runs each"
        )
        results = measure_data_set(tools, sizes, args.runs, args.warmup)
        for result in results.values():
            progress(f"  {result.label}: {result.measurement.median:.3f} s")
        sections.append((name, rows_for(data, ports, parallels), results))
    return sections


@contextmanager
def loaded_dcmqrscp(
    data_sets: Sequence[DataSet], listeners: Ports, out: Path
) -> Iterator[DcmqrscpServer]:
    """A dcmqrscp holding ``data_sets``, knowing our listeners as its C-MOVE destinations."""
    server = DcmqrscpServer(
        out / "dcmqrscp",
        destinations={
            CALLING_AET: (HOST, listeners.qrclient_listener),
            MOVESCU_AET: (HOST, listeners.movescu_listener),
        },
    )
    started = time.perf_counter()
    for data in data_sets:
        server.load(data.archive)
    progress(
        f"dcmqrscp loaded {server.instances} instances in {time.perf_counter() - started:.1f} s"
    )
    with server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())

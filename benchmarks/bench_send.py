"""C-STORE of a folder of files: ``qrclient send`` against DCMTK's storescu, one Orthanc.

    .venv/bin/python -m benchmarks.bench_send [--runs 3] [--warmup 1]

Two data sets are written once as files on disk, as the retrieve benchmark's studies:
(a) 500 images of 512x512 (~0.5 MB each) and (b) 3000 images of 64x64, each one study.
Every command sends a data set's folder to an empty Orthanc as a whole process
(start-up included): ``storescu +sd +r`` (scan the folder, one association) and
``qrclient send`` with one and two associations. Before each run Orthanc is emptied
(untimed); after it, Orthanc must hold every instance of the data set (and qrclient's
JSON summary must count them all sent): a failing command or a wrong result exits 1.
The commands of a data set alternate run by run and the median is reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    CALLING_AET,
    ORTHANC_AET,
    BenchmarkError,
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
from fixtures.dataset import bulk_archive, count_instances, iter_part10
from fixtures.orthanc import OrthancServer

HOST = "127.0.0.1"
DEFAULT_RUNS = 3
DEFAULT_WARMUP = 1
TARGET = 1.0  # qrclient send / storescu
PARALLEL = (1, 2, 4)
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class DataSet:
    label: str
    instances: int
    rows: int
    columns: int
    patient_id: str

    @property
    def name(self) -> str:
        return f"({self.label}) {self.instances} x {self.rows}x{self.columns}"


DATA_SETS = (
    DataSet("a", 500, 512, 512, "SENDA"),
    DataSet("b", 3000, 64, 64, "SENDB"),
)


def write_folder(data: DataSet, root: Path) -> tuple[Path, int]:
    """The data set's files in a new folder under ``root``; (folder, total bytes)."""
    folder = root / data.label
    folder.mkdir()
    archive = bulk_archive(data.instances, data.rows, data.columns, data.patient_id)
    if count_instances(archive) != data.instances:
        raise BenchmarkError(f"{data.name}: the generator made a different count")
    size = 0
    for instance, content in iter_part10(archive):
        (folder / f"{instance.sop_instance_uid}.dcm").write_bytes(content)
        size += len(content)
    return folder, size


def empty(server: OrthancServer) -> Callable[[], None]:
    """Delete every patient in Orthanc (run before each timed command, untimed)."""

    def delete_all() -> None:
        for patient in server.rest_get("/patients"):
            request = urllib.request.Request(
                f"{server.base_url}/patients/{patient}", method="DELETE"
            )
            with urllib.request.urlopen(request, timeout=120) as answer:
                answer.read()

    return delete_all


def arrived(
    server: OrthancServer, data: DataSet, who: str, *, summary: bool
) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        count = server.rest_get("/statistics")["CountInstances"]
        if count != data.instances:
            raise BenchmarkError(f"{who} on {data.name}: Orthanc holds {count} instances")
        if summary:
            report = json.loads(run.stdout)
            if (report.get("sent"), report.get("failed")) != (data.instances, 0):
                raise BenchmarkError(f"{who} on {data.name}: summary {report!r}")

    return check


def commands(
    server: OrthancServer, data: DataSet, folder: Path, storescu: str, qrclient: str
) -> list[tuple[str, Command]]:
    clear = empty(server)
    store = (
        storescu,
        "+sd",
        "+r",
        "-aec",
        ORTHANC_AET,
        "-aet",
        CALLING_AET,
        HOST,
        str(server.dicom_port),
        str(folder),
    )
    tools = [
        (
            "storescu",
            Command(
                store,
                arrived(server, data, "storescu", summary=False),
                dcmtk_env(),
                before_each=clear,
            ),
        )
    ]
    node = f"{ORTHANC_AET}@{HOST}:{server.dicom_port}"
    for parallel in PARALLEL:
        label = f"qrclient send --parallel {parallel}"
        argv = (qrclient, "send", node, str(folder), "-p", str(parallel), "--format", "json")
        check = arrived(server, data, label, summary=True)
        tools.append((label, Command(argv, check, dcmtk_env(), before_each=clear)))
    return tools


def report(
    sections: Sequence[tuple[DataSet, int, list[tuple[str, Measurement]]]],
    info: Sequence[tuple[str, str]],
    runs: int,
    warmup: int,
) -> str:
    rows = []
    spread = []
    for data, size, measured in sections:
        storescu = measured[0][1]
        for label, measurement in measured[1:]:
            passed = measurement.median <= TARGET * storescu.median
            rows.append(
                [
                    f"C-STORE {data.name} ({size / MB:.0f} MB), {label}",
                    seconds_cell(storescu),
                    seconds_cell(measurement),
                    ratio_cell(measurement, storescu),
                    f"≤ {TARGET:g}x storescu",
                    verdict(passed),
                ]
            )
        for label, m in measured:
            rate = size / MB / m.median if m.median > 0 else 0.0
            spread.append(
                [
                    data.name,
                    label,
                    f"{m.best:.3f}",
                    f"{m.median:.3f}",
                    f"{m.worst:.3f}",
                    f"{rate:.1f}",
                    f"{m.peak_rss_mib:.1f}",
                ]
            )
    parts = [
        f"## qrclient vs DCMTK: send (median of {runs} whole-process runs, {warmup} warm-up)",
        "",
        markdown_table(["task", "storescu (s)", "qrclient (s)", "ratio", "target", "result"], rows),
        "",
        "### spread, throughput and memory",
        "",
        markdown_table(
            ["data set", "tool", "min (s)", "median (s)", "max (s)", "MB/s", "peak RSS (MiB)"],
            spread,
        ),
        "",
        "### machine",
        "",
        *(f"- {name}: {value}" for name, value in info),
    ]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_send", description=__doc__.split("\n\n")[0]
    )
    add_run_arguments(parser, runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP)
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    return args


def run(args: argparse.Namespace) -> str:
    storescu = require_executable("storescu")
    qrclient = qrclient_executable()
    config = {"DicomAssociationCloseDelay": 0, "StorageCompression": False}
    with (
        tempfile.TemporaryDirectory(prefix="qrclient-bench-send-") as root,
        loaded_orthanc([], config=config, log=progress) as server,
    ):
        sections = []
        for data in DATA_SETS:
            folder, size = write_folder(data, Path(root))
            tools = commands(server, data, folder, storescu, qrclient)
            progress(f"timing {data.name}: {len(tools)} commands, {args.warmup}+{args.runs} runs")
            measured = measure_all([c for _, c in tools], runs=args.runs, warmup=args.warmup)
            results = [(label, m) for (label, _), m in zip(tools, measured, strict=True)]
            for label, m in results:
                progress(f"  {label}: {m.median:.3f} s")
            sections.append((data, size, results))
        info = machine_info(server)
    return report(sections, info, args.runs, args.warmup)


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    raise SystemExit(main())

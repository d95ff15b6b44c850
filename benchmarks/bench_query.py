"""C-FIND, C-ECHO and start-up time of qrclient against DCMTK, on one local Orthanc.

    .venv/bin/python -m benchmarks.bench_query [--runs 5] [--warmup 1] [--instances 3500]

Each command runs as a whole process (start-up included); the two tools of a row are
alternated run by run and the median is reported. Every run's output is checked (result
count, and for qrclient the exact UIDs): a wrong answer or a failing command exits 1. A
missed target is only reported: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.common import (
    CALLING_AET,
    ORTHANC_AET,
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
from fixtures.dataset import Archive, all_instances, bulk_archive, test_archive

HOST = "127.0.0.1"
BULK_PATIENT = "BENCH"
BULK_ROWS = BULK_COLUMNS = 64
DEFAULT_INSTANCES = 3500
FIND_RATIO_TARGET = 1.5  # qrclient / findscu, image level with >= FIND_TARGET_MIN matches
FIND_TARGET_MIN = 3000
HELP_TARGET = 0.3  # seconds for `qrclient --help`

IMAGE_RETURN_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "SeriesInstanceUID")
STUDY_RETURN_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
)
SOP_INSTANCE_UID_TAG = "00080018"
STUDY_INSTANCE_UID_TAG = "0020000D"

# findscu (3.6.7) logs every match at info level unless --hide-responses, one header each.
_FINDSCU_RESPONSE = re.compile(rb"^I: Find Response: (\d+) \(Pending\)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Task:
    """One row of the report: the DCMTK command and qrclient's equivalent."""

    name: str
    dcmtk: Command
    qrclient: Command
    target: str = "—"
    # Given both measurements, whether the target is met; None for reference rows.
    judge: Callable[[Measurement, Measurement], bool] | None = None


# -- checks ------------------------------------------------------------------------------


def findscu_count_check(expected: int) -> Check:
    def check(run: Run) -> None:
        numbers = [int(n) for n in _FINDSCU_RESPONSE.findall(run.stderr)]
        if len(numbers) != expected or (numbers and numbers[-1] != expected):
            raise BenchmarkError(
                f"findscu reported {len(numbers)} pending responses, expected {expected}"
            )

    return check


def ndjson_uid_check(tag: str, expected: frozenset[str], what: str) -> Check:
    """qrclient's NDJSON must hold one line per match, and exactly the expected UIDs."""

    def check(run: Run) -> None:
        lines = run.stdout.splitlines()
        if len(lines) != len(expected):
            raise BenchmarkError(f"qrclient printed {len(lines)} {what}, expected {len(expected)}")
        found: set[str] = set()
        for line in lines:
            element = json.loads(line).get(tag, {})
            values = element.get("Value", [])
            if values:
                found.add(str(values[0]))
        if found != expected:
            missing, extra = len(expected - found), len(found - expected)
            raise BenchmarkError(f"qrclient {what}: {missing} missing, {extra} unexpected UIDs")

    return check


def output_check(stream: str, needle: bytes, who: str) -> Check:
    def check(run: Run) -> None:
        text = run.stdout if stream == "stdout" else run.stderr
        if needle not in text:
            raise BenchmarkError(f"{who}: {needle.decode()!r} not in its {stream}")

    return check


# -- the tasks ---------------------------------------------------------------------------


def build_tasks(port: int, archives: Sequence[Archive], study_uid: str) -> list[Task]:
    findscu = require_executable("findscu")
    echoscu = require_executable("echoscu")
    qrclient = qrclient_executable()
    env = dcmtk_env()
    node = f"{ORTHANC_AET}@{HOST}:{port}"
    dcmtk_peer = [HOST, str(port), "-aec", ORTHANC_AET, "-aet", CALLING_AET]

    images = frozenset(
        i.sop_instance_uid
        for archive in archives
        for _, study, _, i in all_instances(archive)
        if study.study_instance_uid == study_uid
    )
    studies = frozenset(
        study.study_instance_uid
        for archive in archives
        for _, study, _, _ in all_instances(archive)
    )

    def keys(names: Sequence[str]) -> list[str]:
        return [arg for name in names for arg in ("-k", name)]

    image_find = Task(
        name=f"C-FIND IMAGE, one study, {len(images)} matches",
        dcmtk=Command(
            (
                findscu,
                "-S",
                *keys(["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study_uid}"]),
                *keys(IMAGE_RETURN_KEYS),
                *dcmtk_peer,
            ),
            check=findscu_count_check(len(images)),
            env=env,
        ),
        qrclient=Command(
            (
                qrclient,
                "find",
                node,
                "-l",
                "image",
                *keys([f"StudyInstanceUID={study_uid}", *IMAGE_RETURN_KEYS]),
                "--no-default-keys",
                "-f",
                "ndjson",
                "-q",
            ),
            check=ndjson_uid_check(SOP_INSTANCE_UID_TAG, images, "image matches"),
        ),
        target=f"≤ {FIND_RATIO_TARGET:g}x findscu",
        judge=(
            (lambda d, q: q.median <= FIND_RATIO_TARGET * d.median)
            if len(images) >= FIND_TARGET_MIN
            else None
        ),
    )
    study_find = Task(
        name=f"C-FIND STUDY, all studies, {len(studies)} matches",
        dcmtk=Command(
            (findscu, "-S", *keys(["QueryRetrieveLevel=STUDY", *STUDY_RETURN_KEYS]), *dcmtk_peer),
            check=findscu_count_check(len(studies)),
            env=env,
        ),
        qrclient=Command(
            (
                qrclient,
                "find",
                node,
                "-l",
                "study",
                *keys(STUDY_RETURN_KEYS),
                "--no-default-keys",
                "-f",
                "ndjson",
                "-q",
            ),
            check=ndjson_uid_check(STUDY_INSTANCE_UID_TAG, studies, "study matches"),
        ),
    )
    echo = Task(
        name="C-ECHO, one association",
        dcmtk=Command((echoscu, *dcmtk_peer), env=env),
        qrclient=Command(
            (qrclient, "echo", node),
            check=output_check("stdout", b"echo 1:", "qrclient echo"),
        ),
    )
    start_up = Task(
        name="start-up: `qrclient --help` (ref. `findscu --version`)",
        dcmtk=Command(
            (findscu, "--version"), check=output_check("stdout", b"findscu", "findscu"), env=env
        ),
        qrclient=Command(
            (qrclient, "--help"), check=output_check("stdout", b"usage: qrclient", "qrclient")
        ),
        target=f"qrclient < {HELP_TARGET:g} s",
        judge=lambda d, q: q.median < HELP_TARGET,
    )
    return [image_find, study_find, echo, start_up]


# -- report ------------------------------------------------------------------------------


def report(
    tasks: Sequence[Task],
    results: Sequence[tuple[Measurement, Measurement]],
    info: Sequence[tuple[str, str]],
    runs: int,
) -> str:
    main_rows = []
    detail_rows = []
    for task, (dcmtk, qrclient) in zip(tasks, results, strict=True):
        passed = task.judge(dcmtk, qrclient) if task.judge is not None else None
        main_rows.append(
            [
                task.name,
                seconds_cell(dcmtk),
                seconds_cell(qrclient),
                ratio_cell(qrclient, dcmtk),
                task.target,
                verdict(passed),
            ]
        )
        for tool, measurement in (("DCMTK", dcmtk), ("qrclient", qrclient)):
            detail_rows.append(
                [
                    task.name,
                    tool,
                    f"{measurement.best:.3f}",
                    f"{measurement.median:.3f}",
                    f"{measurement.worst:.3f}",
                    f"{measurement.peak_rss_mib:.1f}",
                ]
            )
    parts = [
        f"## qrclient vs DCMTK: queries (median of {runs} whole-process runs)",
        "",
        markdown_table(
            ["task", "DCMTK (s)", "qrclient (s)", "ratio (qrclient / DCMTK)", "target", "result"],
            main_rows,
        ),
        "",
        "### spread and memory",
        "",
        markdown_table(
            ["task", "tool", "min (s)", "median (s)", "max (s)", "peak RSS (MiB)"], detail_rows
        ),
        "",
        "### machine",
        "",
        *(f"- {name}: {value}" for name, value in info),
    ]
    return "\n".join(parts)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_query", description=__doc__.split("\n\n")[0]
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--instances",
        type=int,
        default=DEFAULT_INSTANCES,
        help=f"images in the benchmark study (default {DEFAULT_INSTANCES})",
    )
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    return args


def run(args: argparse.Namespace) -> str:
    bulk = bulk_archive(args.instances, BULK_ROWS, BULK_COLUMNS, BULK_PATIENT)
    # The varied test archive (no big study) adds a few more studies for the STUDY row.
    archives = [bulk, test_archive(big_count=0)]
    study_uid = bulk[0].studies[0].study_instance_uid
    with loaded_orthanc(archives, log=progress) as server:
        tasks = build_tasks(server.dicom_port, archives, study_uid)
        results: list[tuple[Measurement, Measurement]] = []
        for task in tasks:
            progress(f"timing {task.name} ({args.warmup} warm-up + {args.runs} runs each)")
            dcmtk, qrclient = measure_all(
                [task.dcmtk, task.qrclient], runs=args.runs, warmup=args.warmup
            )
            progress(f"  DCMTK {dcmtk.median:.3f} s, qrclient {qrclient.median:.3f} s")
            results.append((dcmtk, qrclient))
        info = machine_info(server)
    return report(tasks, results, info, args.runs)


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())

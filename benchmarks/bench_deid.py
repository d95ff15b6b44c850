"""The cost of ``--pseudonymize``: qrclient get of a study with and without it, and getscu.

    .venv/bin/python -m benchmarks.bench_deid [--runs 5] [--warmup 1]

One study of 500 CT images of 256x256 (~130 KB each) in a local Orthanc is retrieved,
in one run, by DCMTK's getscu, by ``qrclient get`` and by ``qrclient get --pseudonymize
--linkage FILE`` (one association each: ``--parallel 1``), alternated run by run, each
run into a new empty folder (a new pseudonymised store each time, its key given, the
linkage file appended to). The medians are reported, and the per-instance cost of
pseudonymising: (pseudonymised - plain) / instances. Every run is checked: one file per
instance; a plain file holds one of the study's SOP Instance UIDs, a pseudonymised one
none of them (nor the patient's ID). A wrong result exits 1; the figures are only
reported, this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pydicom

from benchmarks.bench_retrieve import (
    HOST,
    DataSet,
    Ports,
    Programs,
    Tool,
    getscu_tool,
    orthanc_config,
    qrclient_get_tool,
    received_files,
)
from benchmarks.common import (
    RUN_DIR,
    BenchmarkError,
    Check,
    Command,
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
    require_executable,
    run_benchmark,
    seconds_cell,
)
from fixtures.orthanc import free_ports

DATA = DataSet("d", 500, 256, 256, "BENCHDEID", parallel_target=False)
DEFAULT_RUNS = 5


def pseudonymized_check(data: DataSet, who: str) -> Check:
    """One file per instance, and none of them holds an original UID or patient ID."""

    def check(run: Run) -> None:
        if run.run_dir is None:
            raise BenchmarkError(f"{who}: the run has no output directory")
        files = received_files(run.run_dir)
        if len(files) != data.instances:
            raise BenchmarkError(f"{who}: {len(files)} files received, expected {data.instances}")
        sample = sorted(files)[len(files) // 2][0]
        dataset = pydicom.dcmread(sample, stop_before_pixels=True)
        original = str(dataset.SOPInstanceUID) in data.sop_instance_uids
        if original or dataset.PatientID == data.patient_id:
            raise BenchmarkError(f"{who}: {sample} is not pseudonymised")

    return check


def pseudonymized_tool(programs: Programs, ports: Ports, data: DataSet, out: Path) -> Tool:
    key = out / "pseudonym.key"
    if not key.exists():
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="ascii") as file:
            file.write(os.urandom(32).hex() + "\n")
    argv = (
        programs.qrclient,
        "get",
        f"{ports.pacs_aet}@{HOST}:{ports.pacs}",
        "-k",
        f"StudyInstanceUID={data.study_uid}",
        "--out",
        RUN_DIR,
        "--parallel",
        "1",
        "--pseudonymize",
        "--pseudonym-key",
        str(key),
        "--linkage",
        str(out / "linkage.csv"),
        "--format",
        "json",
    )
    command = Command(argv, pseudonymized_check(data, "pseudonymize"), dcmtk_env(), run_dirs_in=out)
    return Tool("pseudonymize", "qrclient get --parallel 1 --pseudonymize", command)


def run(args: argparse.Namespace) -> str:
    programs = Programs(
        getscu=require_executable("getscu"), movescu="", qrclient=qrclient_executable()
    )
    qrclient_port, movescu_port = free_ports(2)
    listeners = Ports(0, qrclient_port, movescu_port)
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="qrclient-bench-deid-") as out_root:
        out = Path(out_root)
        config = orthanc_config(listeners)
        with loaded_orthanc([DATA.archive], config=config, log=progress) as server:
            ports = Ports(server.dicom_port, qrclient_port, movescu_port)
            tools = [
                getscu_tool(programs, ports, DATA, out, sizes),
                qrclient_get_tool(programs, ports, DATA, out, sizes, 1),
                pseudonymized_tool(programs, ports, DATA, out),
            ]
            progress(f"{DATA.name}: {', '.join(t.label for t in tools)}, {args.runs} runs each")
            measured = measure_all([t.command for t in tools], runs=args.runs, warmup=args.warmup)
            info = machine_info(server)
    getscu, plain, pseudonymized = measured
    per_instance = (pseudonymized.median - plain.median) / DATA.instances
    rows = [
        [
            tool.label,
            seconds_cell(m),
            f"{m.median / getscu.median:.2f}",
            f"{m.median / DATA.instances * 1000:.2f}",
        ]
        for tool, m in zip(tools, measured, strict=True)
    ]
    table = markdown_table(["command", "median s", "/ getscu", "ms per instance"], rows)
    lines = [
        f"## --pseudonymize on {DATA.name}, from Orthanc, one association",
        "",
        table,
        "",
        f"pseudonymising costs {per_instance * 1000:.2f} ms per instance "
        f"({pseudonymized.median / plain.median:.2f}x the plain get)",
        "",
        markdown_table(["", ""], [list(row) for row in info]),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, runs=DEFAULT_RUNS)
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())

"""A cohort from a CSV of accession numbers: ``qrclient retrieve --from`` against a shell
loop of DCMTK's findscu + getscu per row.

    .venv/bin/python -m benchmarks.bench_cohort [--studies 100] [--runs 1] [--warmup 0]

A local Orthanc is loaded with ``--studies`` studies (one patient each, 2 series of 5
CT images of 128x128, an accession number each), listed in a CSV of accession numbers.
Whole processes are timed, in one run each (alternated run by run with --runs):

- the DCMTK loop: a POSIX shell reads the CSV and, per row, runs findscu (STUDY level,
  Study Root, by AccessionNumber, the StudyInstanceUID extracted from its output) and
  getscu of that study: what sites script today;
- ``qrclient retrieve --from cohort.csv`` (C-GET, 2 associations, the look-up and the
  verification after each study included), then the same with ``--pseudonymize``.

Every run is checked: one file per instance (a pseudonymised one holds none of the
original UIDs). The ratio to the loop is printed, and the cost of pseudonymising per
instance. A wrong result exits 1; this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pydicom

from benchmarks.bench_retrieve import HOST, received_files
from benchmarks.common import (
    CALLING_AET,
    ORTHANC_AET,
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
from fixtures.dataset import Archive, PatientSpec, StudySpec, all_instances
from qrclient.demo.synthetic import build_series, hashed_uid

NAMESPACE = "bench-cohort"
SERIES, IMAGES, SIZE = 2, 5, (128, 128)

# Per row: findscu prints each match's data set on stderr (DCMTK 3.6.7 logs responses at
# INFO with -v), whose StudyInstanceUID line is "(0020,000d) UI [1.2...]"; getscu then
# fetches that study. This is the loop a site scripts with DCMTK.
LOOP = r"""
set -eu
findscu=$1 getscu=$2 host=$3 port=$4 aec=$5 aet=$6 out=$7 list=$8
tail -n +2 "$list" | while IFS= read -r accession; do
    study=$("$findscu" -v -S -k QueryRetrieveLevel=STUDY -k "AccessionNumber=$accession" \
        -k StudyInstanceUID "$host" "$port" -aec "$aec" -aet "$aet" 2>&1 \
        | sed -n 's/.*(0020,000d) UI \[\([0-9.]*\)\].*/\1/p' | head -n 1)
    [ -n "$study" ] || { echo "not found: $accession" >&2; exit 1; }
    "$getscu" -S -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$study" \
        "$host" "$port" -aec "$aec" -aet "$aet" -od "$out"
done
"""


def cohort_archive(studies: int) -> Archive:
    patients = []
    for number in range(1, studies + 1):
        key = (NAMESPACE, "study", number)
        series = tuple(
            build_series(NAMESPACE, key, s, "CT", f"SERIES {s}", IMAGES, SIZE)
            for s in range(1, SERIES + 1)
        )
        study = StudySpec(
            hashed_uid(NAMESPACE, *key),
            f"2024{(number % 12) + 1:02d}{(number % 28) + 1:02d}",
            "120000",
            f"ACCB{number:05d}",
            f"S{number}",
            "CT CHEST",
            series,
        )
        patients.append(
            PatientSpec(f"COH{number:05d}", f"COHORT^{number}", "19700101", "O", None, (study,))
        )
    return tuple(patients)


def files_check(who: str, archive: Archive, *, pseudonymized: bool) -> Check:
    originals = {i.sop_instance_uid for _, _, _, i in all_instances(archive)}

    def check(run: Run) -> None:
        if run.run_dir is None:
            raise BenchmarkError(f"{who}: the run has no output directory")
        files = received_files(run.run_dir)
        if len(files) != len(originals):
            raise BenchmarkError(f"{who}: {len(files)} files received, expected {len(originals)}")
        sample = sorted(files)[len(files) // 2][0]
        uid = str(pydicom.dcmread(sample, stop_before_pixels=True).SOPInstanceUID)
        if (uid in originals) == pseudonymized:
            raise BenchmarkError(f"{who}: {sample} is {'not ' * pseudonymized}pseudonymised")

    return check


def run(args: argparse.Namespace) -> str:
    findscu, getscu = require_executable("findscu"), require_executable("getscu")
    qrclient = qrclient_executable()
    archive = cohort_archive(args.studies)
    instances = args.studies * SERIES * IMAGES
    with tempfile.TemporaryDirectory(prefix="qrclient-bench-cohort-") as out_root:
        out = Path(out_root)
        listing = out / "cohort.csv"
        with listing.open("w", newline="") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(["AccessionNumber"])
            writer.writerows([p.studies[0].accession_number] for p in archive)
        key = out / "pseudonym.key"
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="ascii") as file:
            file.write(os.urandom(32).hex() + "\n")
        config = {"DicomAssociationCloseDelay": 0}
        with loaded_orthanc([archive], config=config, log=progress) as server:
            node = f"{ORTHANC_AET}@{HOST}:{server.dicom_port}"
            env = dcmtk_env()
            loop = Command(
                (
                    "/bin/sh",
                    "-c",
                    LOOP,
                    "loop",
                    findscu,
                    getscu,
                    HOST,
                    str(server.dicom_port),
                    ORTHANC_AET,
                    CALLING_AET,
                    RUN_DIR,
                    str(listing),
                ),
                files_check("loop", archive, pseudonymized=False),
                env,
                run_dirs_in=out,
            )
            retrieve = (
                qrclient,
                "retrieve",
                node,
                "--from",
                str(listing),
                "--out",
                RUN_DIR,
                "--aet",
                CALLING_AET,
                "--format",
                "json",
            )
            plain = Command(
                retrieve,
                files_check("retrieve", archive, pseudonymized=False),
                env,
                run_dirs_in=out,
            )
            pseudonymized = Command(
                (
                    *retrieve,
                    "--pseudonymize",
                    "--pseudonym-key",
                    str(key),
                    "--linkage",
                    str(out / "linkage.csv"),
                ),
                files_check("pseudonymize", archive, pseudonymized=True),
                env,
                run_dirs_in=out,
            )
            labels = [
                "sh loop: findscu + getscu per row (DCMTK)",
                "qrclient retrieve --from",
                "qrclient retrieve --from --pseudonymize",
            ]
            progress(f"{args.studies} studies, {instances} instances: {len(labels)} commands")
            measured = measure_all([loop, plain, pseudonymized], runs=args.runs, warmup=args.warmup)
            info = machine_info(server)
    reference = measured[0].median
    rows = [
        [
            label,
            seconds_cell(m),
            f"{m.median / reference:.2f}",
            f"{m.median / args.studies * 1000:.0f}",
        ]
        for label, m in zip(labels, measured, strict=True)
    ]
    per_instance = (measured[2].median - measured[1].median) / instances
    lines = [
        f"## A cohort of {args.studies} studies ({instances} instances) from a CSV of "
        "accession numbers, from Orthanc",
        "",
        markdown_table(["command", "s", "/ DCMTK loop", "ms per study"], rows),
        "",
        f"qrclient retrieve --from takes {measured[1].median / reference:.2f}x the DCMTK "
        f"loop's time; pseudonymising costs {per_instance * 1000:.2f} ms per instance "
        f"({measured[2].median / measured[1].median:.2f}x the plain retrieve)",
        "",
        f"`{shlex.join(retrieve).replace(str(out), '...')}`",
        "",
        markdown_table(["", ""], [list(row) for row in info]),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100, help="studies in the cohort")
    add_run_arguments(parser, runs=1, warmup=0)
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())

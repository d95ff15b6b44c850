"""``qrclient jobs list | resume | cancel``: a cohort job interrupted (Ctrl-C, a kill)
is resumed without its command line, and the store ends up as the PACS has it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.dataset import Archive, all_studies
from tests.conftest import OUR_AE, RealPacs
from tests.test_cli_retrieve import instances, stored_uids
from tests.test_cohort import qrclient, read_report, write_csv


def jobs(store: Path) -> list[dict[str, object]]:
    listed = qrclient("jobs", "list", "--out", str(store), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["jobs"])


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_job_resumes_to_what_the_pacs_has(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, how: signal.Signals
) -> None:
    studies = [study for _, study in all_studies(archive)]
    cohort = write_csv(
        tmp_path / "cohort.csv", ["AccessionNumber"], [[s.accession_number] for s in studies]
    )
    store, report = tmp_path / "store", tmp_path / "report.csv"
    running = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qrclient",
            "retrieve",
            real_pacs.node,
            "--from",
            str(cohort),
            "--out",
            str(store),
            "--aet",
            OUR_AE,
            "--report",
            str(report),
            "--max-associations",
            "1",
            "--rate",
            "5/s",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert running.stderr is not None
    retrieved = 0
    for line in running.stderr:
        if ": retrieved" in line:
            retrieved += 1
        if retrieved == 3:
            break
    running.send_signal(how)
    _, rest = running.communicate(timeout=60)
    if how is signal.SIGINT:
        assert running.returncode == 130, rest
        assert "qrclient jobs resume 1 --out" in rest
        partial = read_report(report)  # written on the way out
        assert 3 <= sum(r["status"] == "retrieved" for r in partial) < len(studies)
    else:
        assert running.returncode == -signal.SIGKILL
    [job] = jobs(store)
    assert job["state"] == "interrupted"
    assert 3 <= int(str(job["done"])) < len(studies)

    resumed = qrclient("jobs", "resume", "--out", str(store), "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert "job 1: resuming" in resumed.stderr
    everything = set().union(*(instances(s) for s in studies))
    assert stored_uids(store) == everything
    assert qrclient("store", "verify", "--out", str(store)).returncode == 0
    [job] = jobs(store)
    assert job["state"] == "finished"
    assert job["statuses"] == {"retrieved": len(studies)}
    final = read_report(report)  # the job kept its --report
    assert [r["status"] for r in final] == ["retrieved"] * len(studies)

    again = qrclient("jobs", "resume", "1", "--out", str(store))
    assert again.returncode == 0
    assert "finished: nothing to resume" in again.stderr


def test_jobs_are_listed_and_cancelled(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    _, study = next(iter(all_studies(archive)))
    cohort = write_csv(tmp_path / "c.csv", ["StudyInstanceUID"], [[study.study_instance_uid]])
    store = tmp_path / "store"
    for _ in range(2):
        done = qrclient(
            "retrieve", real_pacs.node, "--from", str(cohort), "--out", str(store), "--aet", OUR_AE
        )
        assert done.returncode == 0, done.stderr
    listed = qrclient("jobs", "list", "--out", str(store))
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATE", "COMMAND"]
    assert [line.split()[:2] for line in lines[1:]] == [["1", "finished"], ["2", "finished"]]
    assert "1 retrieved" in lines[1]

    cancelled = qrclient("jobs", "cancel", "1", "--out", str(store))
    assert cancelled.returncode == 0, cancelled.stderr
    assert [job["id"] for job in jobs(store)] == [2]
    assert stored_uids(store) == instances(study)  # the instances stay
    unknown = qrclient("jobs", "cancel", "1", "--out", str(store))
    assert unknown.returncode == 2
    assert "no job 1" in unknown.stderr
    nothing = qrclient("jobs", "resume", "--out", str(store))
    assert nothing.returncode == 2
    assert "0 jobs" in nothing.stderr


def test_jobs_of_an_empty_store(tmp_path: Path) -> None:
    listed = qrclient("jobs", "list", "--out", str(tmp_path))
    assert listed.returncode == 0
    assert "no jobs" in listed.stderr
    assert qrclient("jobs", "resume", "7", "--out", str(tmp_path)).returncode == 2


def test_a_job_keeps_its_files_as_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume may run from another folder: the files a job names are kept absolute."""
    from qrclient.cli.cohort_command import _spec
    from qrclient.cli.main import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser("retrieve").parse_args(
        [
            "retrieve",
            "pacs",
            "--from",
            "c.csv",
            "--report",
            "r.csv",
            "--pseudonymize",
            "--linkage",
            "l.csv",
            "--window",
            "20:00-06:00",
            "--no-split",
        ]
    )
    spec = _spec(args)
    assert spec["report"] == str(tmp_path / "r.csv")
    assert spec["linkage"] == str(tmp_path / "l.csv")
    assert (spec["window"], spec["no_split"], spec["pseudonymize"]) == ("20:00-06:00", True, True)
    assert "from_file" not in spec
    assert "out" not in spec

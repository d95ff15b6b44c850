"""``qrclient retrieve NODE --from FILE``: a cohort from a list, against the real PACSs.

Also the look-up past the PACS's result cap, against an Orthanc started with
``LimitFindResults``, and the report, exit codes and bad input.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.dataset import (
    Archive,
    PatientSpec,
    StudySpec,
    find_patient,
)
from fixtures.orthanc import OrthancServer
from qrclient.demo.synthetic import build_series, hashed_uid
from tests.conftest import OUR_AE, RealPacs, start_orthanc
from tests.test_cli_retrieve import instances, node, stored_uids


def qrclient(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        check=False,
    )


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def studies_of(archive: Archive, *patients: str) -> list[StudySpec]:
    return [study for pid in patients for study in find_patient(archive, pid).studies]


def test_a_csv_of_accession_numbers_with_a_report(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    wanted = [
        find_patient(archive, "PAT004").studies[0],
        find_patient(archive, "PAT008").studies[0],
    ]
    cohort = write_csv(
        tmp_path / "cohort.csv",
        ["AccessionNumber", "Note"],
        [[wanted[0].accession_number, "x"], ["NOSUCHACC", "y"], [wanted[1].accession_number, ""]],
    )
    store, report = tmp_path / "store", tmp_path / "report.csv"
    args = ["--from", str(cohort), "--report", str(report), "--out", str(store), "--aet", OUR_AE]
    result = qrclient("retrieve", real_pacs.node, *args)
    assert result.returncode == 5, result.stderr  # not all rows retrieved
    assert "Traceback" not in result.stderr
    expected = instances(wanted[0]) | instances(wanted[1])
    assert stored_uids(store) == expected
    rows = read_report(report)
    assert [r["row"] for r in rows] == ["1", "2", "3"]
    assert [r["status"] for r in rows] == ["retrieved", "not-found", "retrieved"]
    assert [r["AccessionNumber"] for r in rows] == [
        wanted[0].accession_number,
        "NOSUCHACC",
        wanted[1].accession_number,
    ]
    assert rows[0]["studies"] == wanted[0].study_instance_uid
    assert int(rows[0]["received"]) == len(instances(wanted[0]))
    assert "Note" not in rows[0]  # only the keys that find studies
    assert "1 not-found, 2 retrieved" in result.stdout

    again = qrclient("get", real_pacs.node, *args[:-2], "--format", "json")
    assert again.returncode == 5, again.stderr
    summary = json.loads(again.stdout)
    assert summary["received"] == 0
    assert summary["already_here"] == len(expected)
    assert summary["job"] == 2


@pytest.mark.parametrize("kind", ["ndjson", "json", "csv"])
def test_finds_output_piped_into_retrieve(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, kind: str
) -> None:
    found = qrclient("find", real_pacs.node, "-l", "study", "-k", "PatientID=PAT002", "-f", kind)
    assert found.returncode == 0, found.stderr
    result = qrclient(
        "retrieve",
        real_pacs.node,
        "--from",
        "-",
        "--out",
        str(tmp_path),
        "--aet",
        OUR_AE,
        stdin=found.stdout,
    )
    assert result.returncode == 0, result.stderr
    studies = studies_of(archive, "PAT002")
    assert stored_uids(tmp_path) == set().union(*(instances(s) for s in studies))
    assert f"{len(studies)} rows: {len(studies)} retrieved" in result.stdout


def test_date_and_modality_narrow_a_patients_studies(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    """ModalitiesInStudy is optional for an SCP (dcmqrscp does not compute it): where
    the PACS does not return it, the series' Modality decides."""
    cohort = write_csv(
        tmp_path / "cohort.csv",
        ["PatientID", "StudyDate", "ModalitiesInStudy"],
        [["PAT002", "2020-2025", "US"], ["PAT007", "2023", ""], ["PAT001", "", "DX"]],
    )
    store, report = tmp_path / "store", tmp_path / "report.csv"
    result = qrclient(
        "retrieve",
        real_pacs.node,
        "--from",
        str(cohort),
        "--out",
        str(store),
        "--report",
        str(report),
        "--aet",
        OUR_AE,
    )
    assert result.returncode == 5, result.stderr
    us = next(s for s in studies_of(archive, "PAT002") if s.description.startswith("US"))
    ct = next(s for s in studies_of(archive, "PAT007") if s.study_date.startswith("2023"))
    assert stored_uids(store) == instances(us) | instances(ct)
    assert [r["status"] for r in read_report(report)] == ["retrieved", "retrieved", "not-found"]


# -- bad input: one line, exit 2, nothing written -----------------------------------------


BAD_INPUTS = [
    ("Name,Date\nDOE,2020\n", "no column names a key"),
    ("AccessionNumber,StudyDate\nA1,2020-13-45\n", "line 2: StudyDate"),
    ("StudyInstanceUID\n1.2.x\n", "is not a UID"),
    ("AccessionNumber\nACC*\n", "one exact value"),
    ("AccessionNumber\n\n,\n", "has no rows"),
    ("{not json\n", "not JSON"),
    ("", "is empty"),
]


@pytest.mark.parametrize(("text", "message"), BAD_INPUTS)
def test_bad_lists_are_refused_before_anything_is_written(
    tmp_path: Path, text: str, message: str
) -> None:
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(text)
    store, report = tmp_path / "store", tmp_path / "report.csv"
    result = qrclient(
        "retrieve",
        "PACS@127.0.0.1:1",
        "--from",
        str(cohort),
        "--out",
        str(store),
        "--report",
        str(report),
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not store.exists()
    assert not report.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from", "/no/such/file.csv"], "cannot read /no/such/file.csv"),
        (["--window", "25:00-"], "--window '25:00-'"),
        (["--window", "20:00-20:00"], "same time"),
        (["--rate", "fast"], "--rate 'fast'"),
        (["--report", "/no/such/folder/r.csv"], "does not exist"),
        (["-k", "StudyInstanceUID=1.2"], "--from and -k"),
        (["--max-associations", "0"], "expected 1 to 16"),
        (["-l", "series"], "-l series goes with -k"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: list[str], message: str) -> None:
    cohort = write_csv(tmp_path / "c.csv", ["AccessionNumber"], [["A1"]])
    store = tmp_path / "store"
    given = ["--from", str(cohort), *options] if "--from" not in options else options
    result = qrclient("retrieve", "PACS@127.0.0.1:1", *given, "--out", str(store))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not store.exists()


def test_cohort_options_need_from(tmp_path: Path) -> None:
    result = qrclient(
        "retrieve", "PACS@127.0.0.1:1", "-k", "StudyInstanceUID=1.2", "--window", "20:00-06:00"
    )
    assert result.returncode == 2
    assert "--window goes with --from" in result.stderr


# -- past the result cap ------------------------------------------------------------------

CAP = 4


def twin_study(archive: Archive) -> PatientSpec:
    """A patient whose study has another study's accession number (several PACSs merged)."""
    original = find_patient(archive, "PAT003").studies[0]
    key = ("twin", "study")
    series = (build_series("twin", key, 1, "CT", "TWIN", 2, (16, 16)),)
    study = StudySpec(
        hashed_uid("twin", *key),
        "20230412",
        "080000",
        original.accession_number,
        "T1",
        "CT TWIN",
        series,
    )
    return PatientSpec("TWIN001", "TWIN^ONE", "19700101", "F", None, (study,))


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, archive: Archive) -> Iterator[OrthancServer]:
    """An Orthanc that answers at most CAP matches per C-FIND (0xFE00 past them)."""
    small = tuple(p for p in archive if p.patient_id != "BIG001")
    server = start_orthanc(
        tmp_path_factory.mktemp("capped"), (*small, twin_study(archive)), LimitFindResults=CAP
    )
    yield server
    server.stop(graceful=False)


@pytest.mark.peers
def test_a_capped_look_up_is_split_by_date(
    capped: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    small = [s for p in archive if p.patient_id != "BIG001" for s in p.studies]
    everything = [*small, twin_study(archive).studies[0]]
    assert len(everything) > CAP
    direct = qrclient("find", node(capped), "-l", "study", "-f", "csv")
    assert direct.returncode == 5  # the cap, as find reports it
    cohort = write_csv(tmp_path / "c.csv", ["StudyDate"], [["2019-2025"]])
    store = tmp_path / "store"
    result = qrclient(
        "retrieve",
        node(capped),
        "--from",
        str(cohort),
        "--out",
        str(store),
        "--aet",
        OUR_AE,
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert "split by StudyDate" in result.stderr
    assert stored_uids(store) == set().union(*(instances(s) for s in everything))

    report = tmp_path / "r.csv"
    unsplit = qrclient(
        "retrieve",
        node(capped),
        "--from",
        str(cohort),
        "--out",
        str(tmp_path / "other"),
        "--aet",
        OUR_AE,
        "--no-split",
        "--report",
        str(report),
    )
    assert unsplit.returncode == 5, unsplit.stderr
    assert "--no-split" in unsplit.stderr
    [row] = read_report(report)
    assert len(row["studies"].split()) == CAP
    assert "capped" in row["detail"]


@pytest.mark.peers
def test_an_accession_number_of_two_studies_is_ambiguous(
    capped: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    twin = twin_study(archive).studies[0]
    original = find_patient(archive, "PAT003").studies[0]
    cohort = write_csv(
        tmp_path / "c.csv",
        ["AccessionNumber", "PatientID"],
        [[twin.accession_number, ""], [twin.accession_number, "TWIN001"]],
    )
    store, report = tmp_path / "store", tmp_path / "r.csv"
    result = qrclient(
        "retrieve",
        node(capped),
        "--from",
        str(cohort),
        "--out",
        str(store),
        "--aet",
        OUR_AE,
        "--report",
        str(report),
    )
    assert result.returncode == 5, result.stderr
    ambiguous, picked = read_report(report)
    assert ambiguous["status"] == "ambiguous"
    assert set(ambiguous["studies"].split()) == {
        twin.study_instance_uid,
        original.study_instance_uid,
    }
    assert picked["status"] == "retrieved"
    assert stored_uids(store) == instances(twin)


def test_a_report_is_csv_with_one_row_per_input_row() -> None:
    from qrclient.jobs.cohort.report import write_report
    from qrclient.store import ItemStatus, JobItem

    assert io  # (imports used by the helpers above)
    items = [
        JobItem(1, 1, {"AccessionNumber": "A,1"}, ItemStatus.RETRIEVED, ("1.2", "1.3"), 5, 4, 1),
        JobItem(1, 2, {"PatientID": "P"}, ItemStatus.FAILED, detail="refused"),
    ]
    folder = Path(__import__("tempfile").mkdtemp())
    write_report(folder / "r.csv", items)
    rows = read_report(folder / "r.csv")
    assert rows[0] == {
        "row": "1",
        "AccessionNumber": "A,1",
        "PatientID": "",
        "status": "retrieved",
        "studies": "1.2 1.3",
        "instances": "5",
        "received": "4",
        "already_here": "1",
        "failed": "0",
        "detail": "",
    }
    assert rows[1]["detail"] == "refused"
    assert rows[1]["instances"] == ""
    assert [p.name for p in folder.iterdir()] == ["r.csv"]  # no temporary file left


@pytest.mark.peers
def test_a_plan_cut_short_by_the_cap_is_not_taken_for_the_whole(
    capped: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    """A retrieve of more studies than the cap: the plan's C-FIND comes back capped, and
    the studies are fetched by their UIDs instead of only those the plan saw."""
    studies = [s for p in archive if p.patient_id != "BIG001" for s in p.studies][: CAP + 2]
    uids = "\\".join(s.study_instance_uid for s in studies)
    result = qrclient(
        "get",
        node(capped),
        "-k",
        f"StudyInstanceUID={uids}",
        "--out",
        str(tmp_path),
        "--aet",
        OUR_AE,
    )
    assert result.returncode == 0, result.stderr
    assert "result cap" in result.stderr
    assert stored_uids(tmp_path) == set().union(*(instances(s) for s in studies))


def test_a_cohort_by_c_get_needs_no_listener(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    """retrieve (C-GET where accepted, else C-MOVE) decides once per job: with C-GET
    our listener is not started, so a port someone else holds does not matter."""
    study = find_patient(archive, "PAT006").studies[0]
    cohort = write_csv(tmp_path / "c.csv", ["StudyInstanceUID"], [[study.study_instance_uid]])
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = qrclient(
            "retrieve",
            node(orthanc),
            "--from",
            str(cohort),
            "--out",
            str(tmp_path / "s"),
            "--aet",
            OUR_AE,
            "--listen",
            f"127.0.0.1:{port}",
        )
    assert result.returncode == 0, result.stderr
    assert stored_uids(tmp_path / "s") == instances(study)


def test_move_from_a_list_shares_one_listener(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    studies = studies_of(archive, "PAT004", "PAT005")
    cohort = write_csv(
        tmp_path / "c.csv", ["AccessionNumber"], [[s.accession_number] for s in studies]
    )
    result = qrclient(
        "move",
        real_pacs.node,
        "--from",
        str(cohort),
        "--out",
        str(tmp_path / "s"),
        "--aet",
        OUR_AE,
        "--listen",
        f"127.0.0.1:{listen_ports[0]}",
    )
    assert result.returncode == 0, result.stderr
    assert stored_uids(tmp_path / "s") == set().union(*(instances(s) for s in studies))

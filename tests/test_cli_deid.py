"""``--pseudonymize`` from the command line, against each real PACS (issue 15, item 6)."""

from __future__ import annotations

import csv
import datetime
import json
import os
import stat
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from fixtures.dataset import Archive, PatientSpec, find_patient
from tests.conftest import OUR_AE, RealPacs

PATIENTS = ("PAT004", "PAT005")  # two studies each; PAT005's name is ISO_IR 100


def qrclient(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    env.pop("QRCLIENT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def studies_key(patients: list[PatientSpec]) -> str:
    uids = (s.study_instance_uid for p in patients for s in p.studies)
    return "StudyInstanceUID=" + "\\".join(uids)


def identifying(patients: list[PatientSpec]) -> set[bytes]:
    """Every original value that must not be found in the store, as it may be encoded."""
    values: set[str] = set()
    for patient in patients:
        values |= {patient.patient_id, patient.patient_name, patient.birth_date}
        values |= {part for part in patient.patient_name.split("^") if len(part) > 2}
        for study in patient.studies:
            values |= {study.study_instance_uid, study.accession_number}
            for series in study.series:
                values.add(series.series_instance_uid)
                values |= {i.sop_instance_uid for i in series.instances}
    return {v.encode(e) for v in values for e in ("utf-8", "latin-1") if _encodable(v, e)}


def _encodable(value: str, encoding: str) -> bool:
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def store_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def dicom_files(root: Path) -> list[pydicom.Dataset]:
    files = [p for p in store_files(root) if p.suffix == ".dcm"]
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in files]


def linkage_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def get(
    pacs: RealPacs, patients: list[PatientSpec], out: Path, *more: str, config: Path
) -> subprocess.CompletedProcess[str]:
    """``qrclient get --pseudonymize`` of the patients' studies."""
    return qrclient(
        "get", pacs.node, "-k", studies_key(patients), "--out", str(out), "--aet", OUR_AE,
        "--format", "json", "--pseudonymize", *more, config=config,
    )  # fmt: skip


def test_get_pseudonymized_leaves_nothing_identifying_and_resumes(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    patients = [find_patient(archive, p) for p in PATIENTS]
    out, linkage, config = tmp_path / "store", tmp_path / "linkage.csv", tmp_path / "config"
    first = get(real_pacs, patients, out, "--linkage", str(linkage), config=config)
    assert first.returncode == 0, first.stderr
    planned = {
        i.sop_instance_uid: (p, st, se)
        for p in patients
        for st in p.studies
        for se in st.series
        for i in se.instances
    }
    assert json.loads(first.stdout)["received"] == len(planned)

    # Nothing identifying in any stored byte: the files, the index, the store's record.
    forbidden = identifying(patients)
    files = store_files(out)
    assert any(p.name.startswith("index") for p in files)
    for path in files:
        data = path.read_bytes()
        found = [value for value in forbidden if value in data]
        assert not found, (path, found)
    for value in forbidden:  # nor in what was printed
        assert value.decode("latin-1") not in first.stderr + first.stdout

    # The linkage maps every stored instance back, and series and studies hang together.
    rows = {row["sop_instance_uid"]: row for row in linkage_rows(linkage)}
    stored = dicom_files(out)
    assert len(stored) == len(planned) == len(rows)
    studies: dict[str, set[str]] = defaultdict(set)
    for dataset in stored:
        row = rows[dataset.SOPInstanceUID]
        patient, study, series = planned[row["original_sop_instance_uid"]]
        assert row["original_patient_id"] == patient.patient_id
        assert row["original_patient_name"] == patient.patient_name
        assert row["original_study_instance_uid"] == study.study_instance_uid
        assert row["original_series_instance_uid"] == series.series_instance_uid
        assert row["original_accession_number"] == study.accession_number
        assert dataset.StudyInstanceUID == row["study_instance_uid"]
        assert dataset.SeriesInstanceUID == row["series_instance_uid"]
        assert dataset.PatientID == dataset.PatientName == row["patient_pseudonym"]
        assert dataset.AccessionNumber == row["accession_number"]
        studies[study.study_instance_uid].add(dataset.StudyInstanceUID)
        shifted = datetime.date.fromisoformat(dataset.StudyDate)
        original = datetime.date.fromisoformat(study.study_date)
        assert (original - shifted).days == int(row["date_shift_days"]) > 0
    assert all(len(pseudonyms) == 1 for pseudonyms in studies.values())
    assert len(set().union(*studies.values())) == sum(len(p.studies) for p in patients)
    shifts = defaultdict(set)
    for row in rows.values():
        shifts[row["original_patient_id"]].add(row["date_shift_days"])
    assert all(len(days) == 1 for days in shifts.values())  # one shift per patient

    # The key is outside the store, the owner's alone; a rerun fetches nothing again.
    [key] = (config / "qrclient" / "pseudonym-keys").iterdir()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = get(real_pacs, patients, out, "--linkage", str(linkage), config=config)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["received"], summary["already_here"]) == (0, len(planned))
    assert len(linkage_rows(linkage)) == len(planned)


def test_keep_dates_keeps_them_and_the_store_remembers(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    patient = find_patient(archive, "PAT008")
    out, config, key = tmp_path / "store", tmp_path / "config", tmp_path / "key"
    named = ("--pseudonym-key", str(key))
    kept = get(real_pacs, [patient], out, "--keep-dates", *named, config=config)
    assert kept.returncode == 0, kept.stderr
    assert {d.StudyDate for d in dicom_files(out)} == {patient.studies[0].study_date}
    assert not (config / "qrclient").exists()  # the key named is the one used
    # The same store with shifted dates, or another key, is refused: one line, exit 2.
    shifted = get(real_pacs, [patient], out, "--date-shift", "30", *named, config=config)
    assert shifted.returncode == 2
    assert "was pseudonymised with dates kept" in shifted.stderr
    assert len(shifted.stderr.splitlines()) == 1
    (tmp_path / "other").write_text("ab" * 32 + "\n")
    (tmp_path / "other").chmod(0o600)
    other_key = ("--pseudonym-key", str(tmp_path / "other"))
    other = get(real_pacs, [patient], out, *other_key, config=config)
    assert other.returncode == 2, other.stderr
    assert "not the key" in other.stderr
    # Plain instances never join pseudonymised ones, nor the reverse.
    plain_get = ("get", real_pacs.node, "-k", studies_key([patient]), "--out")
    plain = qrclient(*plain_get, str(out), config=config)
    assert plain.returncode == 2
    assert "holds pseudonymised instances" in plain.stderr
    plain_store = tmp_path / "plain"
    first = qrclient(*plain_get, str(plain_store), config=config)
    assert first.returncode == 0, first.stderr
    mixed = get(real_pacs, [patient], plain_store, config=config)
    assert mixed.returncode == 2
    assert "holds plain instances" in mixed.stderr


@pytest.mark.parametrize("command", ["move", "retrieve"])
def test_move_and_retrieve_pseudonymize_too(
    real_pacs: RealPacs,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
    command: str,
) -> None:
    patient = find_patient(archive, "PAT002")
    out, linkage = tmp_path / "store", tmp_path / "linkage.csv"
    args = [command, real_pacs.node, "-k", studies_key([patient]), "--out", str(out)]
    args += ["--aet", OUR_AE, "--pseudonymize", "--linkage", str(linkage)]
    args += ["--listen", f"127.0.0.1:{listen_ports[0]}"]
    done = qrclient(*args, config=tmp_path / "config")
    assert done.returncode == 0, done.stderr
    stored = dicom_files(out)
    count = sum(len(se.instances) for st in patient.studies for se in st.series)
    assert len(stored) == len(linkage_rows(linkage)) == count
    assert {d.PatientID for d in stored} != {patient.patient_id}
    for path in store_files(out):
        assert patient.patient_id.encode() not in path.read_bytes()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--pseudonymize", "--date-shift", "soon"], "--date-shift 'soon': expected a number"),
        (["--pseudonymize", "--date-shift", "0"], "expected a number of days from 1"),
        (["--pseudonymize", "--keep-dates", "--date-shift", "9"], "give one of them"),
        (["--linkage", "x.csv"], "--linkage goes with --pseudonymize"),
        (["--pseudonymize", "--linkage", "{out}/linkage.csv"], "inside the store"),
        (["--pseudonymize", "--linkage", "{tmp}/missing/linkage.csv"], "cannot write in"),
        (["--pseudonymize", "--linkage", "{tmp}/file/linkage.csv"], "cannot write in"),
        (["--pseudonymize", "--pseudonym-key", "{tmp}/file"], "not a qrclient key"),
    ],
)
def test_bad_pseudonymize_input_is_one_line_and_exit_2(
    tmp_path: Path, options: list[str], error: str
) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "file").chmod(0o600)
    out = tmp_path / "store"
    given = [o.format(out=out, tmp=tmp_path) for o in options]
    # A port nothing listens on: bad input is found before any connection.
    done = qrclient("get", "PACS@127.0.0.1:9", "-k", "StudyInstanceUID=1.2.3", "--out", str(out),
                    *given, config=tmp_path / "config")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert error in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "linkage.csv").exists()

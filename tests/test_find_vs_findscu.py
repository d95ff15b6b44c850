"""qrclient find and DCMTK's findscu, the same query on each real PACS: the same matches.

findscu writes each response to a file (``-X``); the unique keys it got must be the
ones ``qrclient find`` prints, query by query, on Orthanc and on dcmqrscp alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from benchmarks.common import dcmtk_env, require_executable
from fixtures.dataset import Archive, find_patient
from tests.conftest import OUR_AE, RealPacs

TIMEOUT = 60.0
UNIQUE_TAG = {
    "PatientID": "00100020",
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
}


def queries(archive: Archive) -> dict[str, tuple[str, str, list[str], str]]:
    """Name -> (model, level, match keys, unique key returned)."""
    study = find_patient(archive, "PAT002").studies[0]
    series = study.series[0]
    big = find_patient(archive, "BIG001").studies[0]
    return {
        "every patient": ("patient", "PATIENT", [], "PatientID"),
        "every study": ("study", "STUDY", [], "StudyInstanceUID"),
        "studies of a patient, patient root": (
            "patient",
            "STUDY",
            ["PatientID=PAT002"],
            "StudyInstanceUID",
        ),
        "names by wildcard": ("study", "STUDY", ["PatientName=DOE*"], "StudyInstanceUID"),
        "dates by range": ("study", "STUDY", ["StudyDate=20200101-20221231"], "StudyInstanceUID"),
        "series of a study": (
            "study",
            "SERIES",
            [f"StudyInstanceUID={study.study_instance_uid}"],
            "SeriesInstanceUID",
        ),
        "instances of a series": (
            "study",
            "IMAGE",
            [
                f"StudyInstanceUID={study.study_instance_uid}",
                f"SeriesInstanceUID={series.series_instance_uid}",
            ],
            "SOPInstanceUID",
        ),
        "instances of the big study": (
            "study",
            "IMAGE",
            # SeriesInstanceUID asked as a return key: dcmqrscp refuses an IMAGE-level
            # query without the unique key of every level above, even a universal one.
            [f"StudyInstanceUID={big.study_instance_uid}", "SeriesInstanceUID"],
            "SOPInstanceUID",
        ),
    }


def findscu(
    pacs: RealPacs, model: str, level: str, keys: list[str], unique: str, out: Path
) -> list[str]:
    out.mkdir()
    peer = pacs.peer
    argv = [
        require_executable("findscu"),
        "-v",  # to log the final status: findscu exits 0 after a failure status too
        "-P" if model == "patient" else "-S",
        "-aet",
        OUR_AE,
        "-aec",
        peer.ae_title,
        "-X",
        "-od",
        str(out),
        "-k",
        f"QueryRetrieveLevel={level}",
        *(arg for key in [*keys, unique] for arg in ("-k", key)),
        peer.host,
        str(peer.port),
    ]
    done = subprocess.run(
        argv, capture_output=True, timeout=TIMEOUT, env=dcmtk_env(), check=False, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Received Final Find Response (Success)" in done.stdout + done.stderr
    return [str(dcmread(path).get(unique, "")) for path in sorted(out.glob("rsp*.dcm"))]


def qrclient_find(
    pacs: RealPacs, model: str, level: str, keys: list[str], unique: str
) -> list[str]:
    argv = [sys.executable, "-m", "qrclient", "find", "--model", model, "-l", level, "-f"]
    argv += ["ndjson", "--no-default-keys", "-q"]
    argv += [arg for key in [*keys, unique] for arg in ("-k", key)]
    done = subprocess.run(
        [*argv, pacs.node], capture_output=True, timeout=TIMEOUT, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    found = []
    for line in done.stdout.splitlines():
        element = json.loads(line).get(UNIQUE_TAG[unique], {})
        found.append(str(element.get("Value", [""])[0]))
    return found


@pytest.mark.parametrize(
    "name",
    [
        "every patient",
        "every study",
        "studies of a patient, patient root",
        "names by wildcard",
        "dates by range",
        "series of a study",
        "instances of a series",
        "instances of the big study",
    ],
)
def test_qrclient_finds_what_findscu_finds(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, name: str
) -> None:
    model, level, keys, unique = queries(archive)[name]
    theirs = findscu(real_pacs, model, level, keys, unique, tmp_path / "findscu")
    ours = qrclient_find(real_pacs, model, level, keys, unique)
    assert theirs, "the query must find something to be a test"
    assert all(theirs)
    assert sorted(ours) == sorted(theirs)

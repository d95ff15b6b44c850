"""``qrclient worklist``: Modality Worklist C-FIND against DCMTK's worklist SCP wlmscpfs,
serving worklist files the fixture writes (fixtures/wlmscpfs.py's WORKLIST)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset

from fixtures.orthanc import OrthancServer
from fixtures.wlmscpfs import WORKLIST, WlmscpfsServer, WorklistItem
from qrclient.cli import exit_codes
from qrclient.net.datasets import decode_dataset, encode_dataset
from qrclient.net.uids import EXPLICIT_LE, IMPLICIT_LE
from qrclient.ops.query import QueryError, build_query, parse_key
from qrclient.ops.worklist import STEP, build_worklist_query
from qrclient.vocabulary import Level
from tests.test_cli import run_cli

SPS_DATE = f"{STEP}.ScheduledProcedureStepStartDate"


@pytest.fixture(scope="module")
def wlmscpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmscpfsServer]:
    with WlmscpfsServer(tmp_path_factory.mktemp("wlmscpfs")) as server:
        yield server


def node(server: WlmscpfsServer) -> str:
    return f"{server.aet}@{server.host}:{server.dicom_port}"


def worklist(server: WlmscpfsServer, *args: str) -> list[Dataset]:
    result = run_cli("worklist", node(server), "-f", "ndjson", *args)
    assert result.returncode == exit_codes.OK, result.stderr
    return [Dataset.from_json(line) for line in result.stdout.splitlines()]


def accessions(found: list[Dataset]) -> set[str]:
    return {str(ds.AccessionNumber) for ds in found}


def expected(keep: object) -> set[str]:
    assert callable(keep)
    return {item.accession for item in WORKLIST if keep(item)}


def test_everything_scheduled_with_the_default_keys(wlmscpfs: WlmscpfsServer) -> None:
    found = worklist(wlmscpfs)
    assert accessions(found) == expected(lambda item: True)
    by_accession: dict[str, WorklistItem] = {item.accession: item for item in WORKLIST}
    for ds in found:
        item = by_accession[str(ds.AccessionNumber)]
        assert str(ds.PatientName) == item.patient_name  # ISO_IR 100 decoded too
        assert ds.PatientID == item.patient_id
        assert ds.StudyInstanceUID == item.study_instance_uid
        (step,) = ds.ScheduledProcedureStepSequence
        assert step.Modality == item.modality
        assert step.ScheduledStationAETitle == item.station
        assert step.ScheduledProcedureStepStartDate == item.date
        assert step.ScheduledProcedureStepID == item.step_id


@pytest.mark.parametrize(
    ("args", "keep", "note"),
    [
        (("--date", "20240105"), lambda i: i.date == "20240105", None),
        (("--date", "2024-01-06"), lambda i: i.date == "20240106", "read as 20240106"),
        (
            ("--date", "2024-01-05-2024-01-07"),
            lambda i: "20240105" <= i.date <= "20240107",
            "read as 20240105-20240107",
        ),
        (("--date", "2024-01"), lambda i: i.date[:6] == "202401", "read as 20240101-20240131"),
        (("--modality", "ct"), lambda i: i.modality == "CT", "Modality=ct read as"),
        (("--station", "CT01"), lambda i: i.station == "CT01", None),
        (
            ("--modality", "MR", "--date", "2025"),
            lambda i: i.modality == "MR" and i.date >= "2025",
            None,
        ),
        (("-k", "PatientID=WL003"), lambda i: i.patient_id == "WL003", None),
        (("-k", f"{STEP}[0].Modality=US"), lambda i: i.modality == "US", None),
        (("-k", "PatientName=DOE*"), lambda i: i.patient_name.startswith("DOE"), None),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_matching_by_date_modality_station_and_keys(
    wlmscpfs: WlmscpfsServer, args: tuple[str, ...], keep: object, note: str | None
) -> None:
    result = run_cli("worklist", node(wlmscpfs), "-f", "ndjson", *args)
    assert result.returncode == exit_codes.OK, result.stderr
    found = [Dataset.from_json(line) for line in result.stdout.splitlines()]
    assert accessions(found) == expected(keep)
    if note is not None:
        assert "qrclient: note: " in result.stderr
        assert note in result.stderr
    steps = len(found)
    assert f"qrclient: {steps} scheduled procedure step{'' if steps == 1 else 's'}, success" in (
        result.stderr
    )


def test_table_and_csv_flatten_nested_keys(wlmscpfs: WlmscpfsServer) -> None:
    result = run_cli(
        "worklist",
        node(wlmscpfs),
        "--station",
        "US01",
        "-k",
        f"{STEP}.ScheduledStationName",
        "-f",
        "csv",
    )
    assert result.returncode == exit_codes.OK, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    (item,) = [i for i in WORKLIST if i.station == "US01"]
    assert len(rows) == 1
    row = rows[0]
    # Nested keys are columns headed by their own keyword, their values from the item.
    assert row["Modality"] == item.modality
    assert row["ScheduledStationAETitle"] == "US01"
    assert row["ScheduledStationName"] == f"STATION {item.station}"
    assert row["ScheduledProcedureStepStartDate"] == item.date
    assert row["PatientName"] == item.patient_name
    assert STEP not in row  # the sequence itself is no column
    table = run_cli("worklist", node(wlmscpfs), "--station", "US01", "-f", "table")
    header, rule, line = table.stdout.splitlines()
    assert header.split()[:4] == [
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledStationAETitle",
    ]
    assert set(rule) <= {"-", " "}
    assert line.split()[:4] == [item.date, item.time, item.modality, item.station]


def test_json_keeps_the_sequence_as_it_is(wlmscpfs: WlmscpfsServer) -> None:
    result = run_cli("worklist", node(wlmscpfs), "--station", "CT02", "-f", "json", "-q")
    assert result.returncode == exit_codes.OK, result.stderr
    assert result.stderr == ""
    (match,) = json.loads(result.stdout)
    step = match["00400100"]
    assert step["vr"] == "SQ"
    assert step["Value"][0]["00400001"] == {"vr": "AE", "Value": ["CT02"]}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("-k", f"{STEP}[1].Modality=CT"), "a query's sequence holds one item"),
        (("-k", "PatientName.Modality=CT"), "PatientName is not a sequence"),
        (("--date", "2024-13"), "--date '2024-13' is not a date"),
        (("--modality", "CT", "-k", f"{STEP}.Modality=MR"), "given twice"),
        (("-k", f"{STEP}.Modelity=CT"), "did you mean Modality?"),
    ],
)
def test_bad_worklist_input_is_one_line(args: tuple[str, ...], words: str) -> None:
    result = run_cli("worklist", "WL@127.0.0.1:1", *args)
    assert result.returncode == exit_codes.USAGE, result.stderr
    assert words in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_pacs_without_worklist_is_named(orthanc: OrthancServer) -> None:
    """Orthanc (without its worklist plugin) accepts the association but not the SOP class."""
    result = run_cli("worklist", f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}")
    assert result.returncode == exit_codes.NETWORK
    assert "Modality Worklist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, IMPLICIT_LE])
def test_the_identifier_nests_keys_in_one_item(syntax: str) -> None:
    query = build_worklist_query(
        ["PatientName=DOE*", f"{STEP}.ScheduledStationName"], date="today", modality="mr"
    )
    decoded = decode_dataset(encode_dataset(query.as_identifier(), syntax), syntax)
    assert "QueryRetrieveLevel" not in decoded  # worklists have no level
    assert decoded.PatientName == "DOE*"
    (step,) = decoded.ScheduledProcedureStepSequence
    assert step.Modality == "MR"
    assert len(step.ScheduledProcedureStepStartDate) == 8
    assert "ScheduledStationName" in step
    assert "ScheduledProcedureStepSequence.ScheduledStationName" in query.return_keywords
    assert STEP not in query.return_keywords


def test_nested_keys_in_the_query_layer() -> None:
    key = parse_key(f"{STEP}[0].Modality=CT")
    assert key.path == (0x00400100,)
    assert key.name == f"{STEP}.Modality"
    by_tag = parse_key("(0040,0100).0008,0060=CT")
    assert (by_tag.path, by_tag.tag, by_tag.value) == ((0x00400100,), 0x00080060, "CT")
    with pytest.raises(QueryError, match="nest at most 2 sequences"):
        parse_key("A.B.C.Modality")
    with pytest.raises(QueryError, match="nested keys are for 'qrclient worklist'"):
        build_query(Level.STUDY, keys=[f"{STEP}.Modality=CT"])


def test_no_default_keys_returns_only_those_given(wlmscpfs: WlmscpfsServer) -> None:
    found = worklist(
        wlmscpfs, "--no-default-keys", "-k", f"{SPS_DATE}=20240105-20240106", "-k", "PatientID"
    )
    assert {str(ds.PatientID) for ds in found} == {
        i.patient_id for i in WORKLIST if "20240105" <= i.date <= "20240106"
    }
    for ds in found:
        assert "PatientName" not in ds
        (step,) = ds.ScheduledProcedureStepSequence
        assert "Modality" not in step

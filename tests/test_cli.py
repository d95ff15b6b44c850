"""The command line end to end: ``python -m qrclient`` as real subprocesses.

Results come from both real PACSs (``node`` runs each test against Orthanc and DCMTK's
dcmqrscp) and are checked against the synthetic archive's manifest; behaviour neither
shows (a failure status, a peer that streams forever or repeats matches) comes from
``tests.fakepeer`` served from a background thread.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from pydicom.dataset import Dataset
from rich.cells import cell_len

from fixtures.dataset import (
    REFERRING_PHYSICIAN,
    Archive,
    PatientSpec,
    StudySpec,
    all_instances,
    all_studies,
    find_patient,
)
from fixtures.orthanc import free_ports
from qrclient.cli import exit_codes
from qrclient.ops.query import DEFAULT_RETURN_KEYS
from qrclient.vocabulary import Level
from tests.conftest import RealPacs, start_orthanc
from tests.fake_pacs import FakePacs, fake_pacs_in_thread, instances
from tests.fakepeer import PeerConnection, Script, fake_peer, response

TIMEOUT = 60.0
C_FIND_RSP = 0x8020
RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
HIERARCHY_WARNING = "a strictly hierarchical PACS may refuse it"

StudyFilter = Callable[[PatientSpec, StudySpec], bool]


# -- running the command line ---------------------------------------------------------


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "100"}


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "qrclient", *args]


def run_cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv(*args),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        env=cli_env(),
        check=False,
    )


def details(result: subprocess.CompletedProcess[str]) -> str:
    return f"\nexit {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, details(result)
    assert result.returncode == exit_codes.OK, details(result)


def assert_network_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    """Exit 3: an error line naming the cause and a hint line, nothing else."""
    assert "Traceback" not in result.stderr + result.stdout, details(result)
    assert result.returncode == exit_codes.NETWORK, details(result)
    assert result.stdout == "", details(result)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("qrclient: error: ")]
    hints = [line for line in lines if line.startswith("qrclient: hint: ")]
    assert len(errors) == 1, details(result)
    assert words in errors[0], details(result)
    assert len(hints) == 1, details(result)
    assert len(hints[0]) > len("qrclient: hint: ") + 10, details(result)


def datasets(ndjson: str) -> list[Dataset]:
    """Each NDJSON line must be one JSON object that reads back as a DICOM data set."""
    found = []
    for line in ndjson.splitlines():
        item = json.loads(line)
        assert isinstance(item, dict), line
        found.append(Dataset.from_json(item))
    return found


def text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "")).strip()


def study_uids(archive: Archive, keep: StudyFilter = lambda p, s: True) -> list[str]:
    return sorted(s.study_instance_uid for p, s in all_studies(archive) if keep(p, s))


def summary_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if " matches, " in line]
    assert len(lines) == 1, stderr
    return lines[0]


@contextmanager
def popen_cli(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A running CLI with stdout and stderr pipes; killed if the test leaves it running."""
    with subprocess.Popen(
        cli_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env()
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line of stdout, failing (not hanging) if none arrives in time."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, f"no output within {timeout:g} s"
    line = proc.stdout.readline()
    assert line.endswith(b"\n"), line
    return line


@contextmanager
def peer_in_thread(script: Script) -> Iterator[tuple[str, list[PeerConnection]]]:
    """A fake peer served from a background event loop while the test blocks on a process."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(fake_peer(script)) as (port, connections),
    ):
        yield f"FAKE@127.0.0.1:{port}", connections


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def node(real_pacs: RealPacs) -> str:
    """Each real PACS in turn, as a command line's NODE."""
    return real_pacs.node


@pytest.fixture
def big_study(archive: Archive) -> StudySpec:
    """The study with the most instances (BIG^STUDY)."""
    return max(
        (study for _, study in all_studies(archive)),
        key=lambda study: sum(len(series.instances) for series in study.series),
    )


@pytest.fixture
def closed_port() -> int:
    (port,) = free_ports(1)
    return port


# -- echo -----------------------------------------------------------------------------

ASSOCIATION_LINE = re.compile(
    r"association with (?P<node>\S+) accepted in [0-9.]+ ms "
    r"\(peer (?P<version>.+), (?P<uid>[0-9.]+), max PDU (?P<pdu>\d+|unlimited)\)"
)
ECHO_LINE = re.compile(r"echo (?P<number>\d+): (?P<ms>[0-9.]+) ms")
SUMMARY_LINE = re.compile(
    r"(?P<count>\d+) echoes: min (?P<min>[0-9.]+) / median (?P<median>[0-9.]+) "
    r"/ max (?P<max>[0-9.]+) ms"
)


def test_echo_prints_association_and_round_trip(node: str) -> None:
    result = run_cli("echo", node)
    assert_ok(result)
    assert result.stderr == "", details(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, details(result)
    association = ASSOCIATION_LINE.fullmatch(lines[0])
    assert association, details(result)
    assert association["node"] == node
    assert association["version"] not in ("", "?"), "Orthanc sends its implementation version"
    assert association["pdu"] != "unlimited"
    assert int(association["pdu"]) > 0
    echo = ECHO_LINE.fullmatch(lines[1])
    assert echo, details(result)
    assert echo["number"] == "1"
    assert float(echo["ms"]) > 0


def test_echo_count_prints_each_echo_and_statistics(node: str) -> None:
    result = run_cli("echo", "-c", "3", node)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 5, details(result)
    assert ASSOCIATION_LINE.fullmatch(lines[0]), details(result)
    echoes = [ECHO_LINE.fullmatch(line) for line in lines[1:4]]
    assert all(echoes), details(result)
    assert [m["number"] for m in echoes if m] == ["1", "2", "3"]
    times = [float(m["ms"]) for m in echoes if m]
    stats = SUMMARY_LINE.fullmatch(lines[4])
    assert stats, details(result)
    assert stats["count"] == "3"
    low, middle, high = float(stats["min"]), float(stats["median"]), float(stats["max"])
    assert low <= middle <= high
    # The same round trips, printed to the same precision: the statistics must agree.
    assert low == pytest.approx(min(times), abs=0.011)
    assert middle == pytest.approx(statistics.median(times), abs=0.011)
    assert high == pytest.approx(max(times), abs=0.011)


def test_echo_json_is_one_valid_object(node: str) -> None:
    result = run_cli("echo", "-c", "3", "--format", "json", node)
    assert_ok(result)
    report = json.loads(result.stdout)
    assert isinstance(report, dict), details(result)
    assert report["peer"] == node
    round_trips = report["round_trip_ms"]
    assert isinstance(round_trips, list)
    assert len(round_trips) == 3
    assert all(isinstance(ms, int | float) and ms > 0 for ms in round_trips)
    assert report["association_ms"] > 0
    assert isinstance(report["peer_max_pdu"], int)
    assert report["peer_max_pdu"] > 0
    # The text form names the same peer implementation.
    text_result = run_cli("echo", node)
    assert_ok(text_result)
    association = ASSOCIATION_LINE.fullmatch(text_result.stdout.splitlines()[0])
    assert association, details(text_result)
    assert association["uid"] == report["peer_implementation_class_uid"]
    assert association["version"] == report["peer_implementation_version_name"]
    assert int(association["pdu"]) == report["peer_max_pdu"]


# -- find: output formats -------------------------------------------------------------


def test_find_json_reads_back_as_dicom(node: str, archive: Archive) -> None:
    result = run_cli("find", "-l", "study", "-f", "json", node)
    assert_ok(result)
    items = json.loads(result.stdout)
    assert isinstance(items, list), details(result)
    found = [Dataset.from_json(item) for item in items]
    assert sorted(text(ds, "StudyInstanceUID") for ds in found) == study_uids(archive)
    expected = {s.study_instance_uid: (p, s) for p, s in all_studies(archive)}
    for ds in found:
        patient, study = expected[text(ds, "StudyInstanceUID")]
        assert str(ds.PatientName) == patient.patient_name
        assert text(ds, "PatientID") == patient.patient_id
        assert text(ds, "StudyDate") == study.study_date
        assert text(ds, "StudyDescription") == study.description
    assert f"{len(found)} matches, success" in summary_line(result.stderr)


@pytest.mark.parametrize(
    "patient_id",
    [
        pytest.param("PAT006", id="japanese"),
        pytest.param("PAT005", id="latin1"),
        pytest.param("PAT007", id="greek"),
    ],
)
def test_find_non_ascii_names(node: str, archive: Archive, patient_id: str) -> None:
    patient = find_patient(archive, patient_id)
    assert not patient.patient_name.isascii()
    result = run_cli(
        "find", "-l", "study", "-f", "json", "-k", f"PatientName={patient.patient_name}", node
    )
    assert_ok(result)
    found = [Dataset.from_json(item) for item in json.loads(result.stdout)]
    assert sorted(text(ds, "StudyInstanceUID") for ds in found) == sorted(
        s.study_instance_uid for s in patient.studies
    )
    assert {str(ds.PatientName) for ds in found} == {patient.patient_name}
    # And the raw JSON text carries the name itself, not an escaped or mangled form.
    assert patient.patient_name in result.stdout


def test_find_ndjson_one_object_per_line(node: str, archive: Archive) -> None:
    result = run_cli("find", "-l", "study", "-f", "ndjson", node)
    assert_ok(result)
    found = datasets(result.stdout)
    assert len(found) == len(study_uids(archive))
    assert sorted(text(ds, "StudyInstanceUID") for ds in found) == study_uids(archive)
    assert f"{len(found)} matches, success" in summary_line(result.stderr)


@pytest.mark.parametrize(
    ("keys", "added"),
    [
        pytest.param((), [], id="defaults"),
        pytest.param(
            ("-k", "ReferringPhysicianName", "-k", "PatientBirthDate"),
            ["ReferringPhysicianName", "PatientBirthDate"],
            id="additions-at-the-end",
        ),
        pytest.param(
            ("-k", "AccessionNumber", "-k", "PatientSex"), ["PatientSex"], id="default-not-repeated"
        ),
    ],
)
def test_find_csv_header_and_rows(
    real_pacs: RealPacs, node: str, archive: Archive, keys: tuple[str, ...], added: list[str]
) -> None:
    result = run_cli("find", "-l", "study", "-f", "csv", *keys, node)
    assert_ok(result)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [*DEFAULT_RETURN_KEYS[Level.STUDY], *added], details(result)
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert sorted(r["StudyInstanceUID"] for r in records) == study_uids(archive)
    expected = {s.study_instance_uid: (p, s) for p, s in all_studies(archive)}
    for record in records:
        patient, study = expected[record["StudyInstanceUID"]]
        assert record["PatientName"] == patient.patient_name
        assert record["PatientID"] == patient.patient_id
        assert record["StudyDate"] == study.study_date
        assert record["AccessionNumber"] == study.accession_number
        assert record["StudyDescription"] == study.description
        # A key the PACS leaves out is a blank cell (dcmqrscp computes no counts).
        instances = str(sum(len(series.instances) for series in study.series))
        assert record["NumberOfStudyRelatedInstances"] == (
            instances if real_pacs.computed_keys else ""
        )
        if "ReferringPhysicianName" in record:
            assert record["ReferringPhysicianName"] == REFERRING_PHYSICIAN
        if "PatientBirthDate" in record:
            assert record["PatientBirthDate"] == patient.birth_date
        if "PatientSex" in record:
            assert record["PatientSex"] == patient.sex


def screen_cells(line: str) -> list[str]:
    """A line as the terminal shows it: one entry per screen column (a wide character
    such as 山 takes two, the second one "")."""
    cells: list[str] = []
    for char in line:
        cells += [char] + [""] * (cell_len(char) - 1)
    return cells


def read_table(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    """The rows of ``-f table`` output, checking every value sits in its column on screen."""
    lines = [screen_cells(line) for line in result.stdout.splitlines()]
    header, rule, rows = "".join(lines[0]), "".join(lines[1]), lines[2:]
    columns = [match.span() for match in re.finditer(r"-+", rule)]
    names = [header[start:end].strip() for start, end in columns]
    assert header.split() == names, details(result)  # every name starts its column
    table = []
    for row in rows:
        for start, end in columns:
            # The gap before the next column stays blank, whatever the width of the text.
            assert "".join(row[end : end + 2]).strip() == "", "".join(row)
            assert start == 0 or row[start - 1] == " ", "".join(row)
        table.append(
            {
                name: "".join(row[start:end]).strip()
                for name, (start, end) in zip(names, columns, strict=True)
            }
        )
    return table


def test_find_table_is_aligned(node: str, archive: Archive) -> None:
    result = run_cli("find", "-l", "study", "-f", "table", node)
    assert_ok(result)
    table = read_table(result)
    assert list(table[0]) == list(DEFAULT_RETURN_KEYS[Level.STUDY]), details(result)
    assert sorted(r["StudyInstanceUID"] for r in table) == study_uids(archive)
    by_uid = {s.study_instance_uid: (p, s) for p, s in all_studies(archive)}
    for record in table:
        patient, study = by_uid[record["StudyInstanceUID"]]
        # Names in Japanese, Greek, with umlauts: aligned by their width on screen.
        assert record["PatientName"] == patient.patient_name
        assert record["StudyDescription"] == study.description  # values with spaces too
    assert any(not r["PatientName"].isascii() for r in table)


# Default return keys dcmqrscp leaves out (it keeps no counts, no SeriesDescription and
# no SOPClassUID in its index); Orthanc returns them all.
LEFT_OUT_BY_DCMQRSCP = {
    "study": {
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    },
    "series": {"SeriesDescription", "NumberOfSeriesRelatedInstances"},
    "image": {"SOPClassUID"},
}
UNIQUE_COLUMN = {
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "image": "SOPInstanceUID",
}


def level_query(level: str, archive: Archive) -> tuple[list[str], list[str]]:
    """The -k options for a query at ``level`` under PAT002's first study and series,
    and the unique keys it must find."""
    study = find_patient(archive, "PAT002").studies[0]
    series = study.series[0]
    if level == "study":
        return [], study_uids(archive)
    if level == "series":
        keys = ["-k", f"StudyInstanceUID={study.study_instance_uid}"]
        return keys, sorted(s.series_instance_uid for s in study.series)
    keys = [
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "-k",
        f"SeriesInstanceUID={series.series_instance_uid}",
    ]
    return keys, sorted(i.sop_instance_uid for i in series.instances)


def output_records(output: str, result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    """Each match as column name -> text, whatever the output format."""
    if output == "table":
        return read_table(result)
    if output == "csv":
        rows = list(csv.reader(io.StringIO(result.stdout)))
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    found = (
        datasets(result.stdout)
        if output == "ndjson"
        else [Dataset.from_json(item) for item in json.loads(result.stdout)]
    )
    return [{element.keyword: str(element.value or "") for element in ds} for ds in found]


@pytest.mark.parametrize("output", ["table", "csv", "json", "ndjson"])
@pytest.mark.parametrize("level", ["study", "series", "image"])
def test_every_format_at_every_level(
    real_pacs: RealPacs, node: str, archive: Archive, level: str, output: str
) -> None:
    """A default return key the PACS leaves out is a blank cell (or absent in JSON),
    never a crash: dcmqrscp leaves out several."""
    keys, expected = level_query(level, archive)
    result = run_cli("find", "-l", level, "-f", output, *keys, node)
    assert_ok(result)
    records = output_records(output, result)
    assert sorted(r[UNIQUE_COLUMN[level]] for r in records) == expected, details(result)
    assert f"{len(expected)} matches, success" in summary_line(result.stderr)
    shown = DEFAULT_RETURN_KEYS[Level(level.upper())]
    left_out = LEFT_OUT_BY_DCMQRSCP[level] if real_pacs.kind == "dcmqrscp" else set()
    for record in records:
        for keyword in shown:
            if output in ("table", "csv"):
                assert keyword in record, details(result)  # a column for every key
            value = record.get(keyword, "")
            assert (value == "") == (keyword in left_out), (keyword, details(result))


# -- find: keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "keep"),
    [
        pytest.param("PatientName=DOE*", lambda p, s: p.patient_name.startswith("DOE"), id="wild"),
        pytest.param(
            "PatientName=DOE^*", lambda p, s: p.patient_name.startswith("DOE^"), id="wild-caret"
        ),
        pytest.param(
            "StudyDate=20200101-20221231",
            lambda p, s: "20200101" <= s.study_date <= "20221231",
            id="date-range",
        ),
        pytest.param("StudyDate=20230101-", lambda p, s: s.study_date >= "20230101", id="open"),
        pytest.param("0010,0020=PAT001", lambda p, s: p.patient_id == "PAT001", id="tag-form"),
    ],
)
def test_find_matching_keys(node: str, archive: Archive, key: str, keep: StudyFilter) -> None:
    result = run_cli("find", "-l", "study", "-f", "ndjson", "-k", key, node)
    assert_ok(result)
    found = datasets(result.stdout)
    expected = study_uids(archive, keep)
    assert expected, "the filter must select something to be a test"
    assert sorted(text(ds, "StudyInstanceUID") for ds in found) == expected


def test_bare_key_is_returned_without_default_keys(node: str, archive: Archive) -> None:
    result = run_cli(
        "find", "-l", "study", "-f", "ndjson", "--no-default-keys", "-k", "StudyDescription", node
    )
    assert_ok(result)
    found = datasets(result.stdout)
    assert sorted(text(ds, "StudyDescription") for ds in found) == sorted(
        s.description for _, s in all_studies(archive)
    )
    for ds in found:
        assert "StudyDescription" in ds
        assert "PatientName" not in ds, "default keys were sent despite --no-default-keys"
        assert "StudyInstanceUID" not in ds, "default keys were sent despite --no-default-keys"
    csv_result = run_cli(
        "find", "-l", "study", "-f", "csv", "--no-default-keys", "-k", "StudyDescription", node
    )
    assert_ok(csv_result)
    rows = list(csv.reader(io.StringIO(csv_result.stdout)))
    assert rows[0] == ["StudyDescription"]
    assert len(rows) - 1 == len(found)


def test_image_level_of_the_big_study(node: str, archive: Archive, big_study: StudySpec) -> None:
    uid = big_study.study_instance_uid
    result = run_cli("find", "-l", "image", "-f", "ndjson", "-k", f"StudyInstanceUID={uid}", node)
    assert_ok(result)
    expected = sorted(
        i.sop_instance_uid for _, s, _, i in all_instances(archive) if s.study_instance_uid == uid
    )
    assert len(expected) == 300
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected)
    found = datasets(result.stdout)
    assert sorted(text(ds, "SOPInstanceUID") for ds in found) == expected
    assert {text(ds, "StudyInstanceUID") for ds in found} == {uid}
    assert f"{len(expected)} matches, success" in summary_line(result.stderr)


def test_patient_root_patient_level(real_pacs: RealPacs, node: str, archive: Archive) -> None:
    result = run_cli("find", "--model", "patient", "--level", "patient", "-f", "ndjson", node)
    assert_ok(result)
    found = datasets(result.stdout)
    assert sorted(text(ds, "PatientID") for ds in found) == sorted(p.patient_id for p in archive)
    for ds in found:
        patient = find_patient(archive, text(ds, "PatientID"))
        assert str(ds.PatientName) == patient.patient_name
        assert text(ds, "PatientBirthDate") == patient.birth_date
        studies = str(len(patient.studies)) if real_pacs.computed_keys else ""
        assert text(ds, "NumberOfPatientRelatedStudies") == studies


# -- find: stderr ---------------------------------------------------------------------


def test_summary_and_hierarchy_warning_on_stderr(
    real_pacs: RealPacs, node: str, archive: Archive
) -> None:
    patient = find_patient(archive, "PAT003")
    expected = sorted(i.sop_instance_uid for _, _, _, i in all_instances([patient]))
    result = run_cli("find", "-l", "image", "-f", "ndjson", "-k", "PatientID=PAT003", node)
    assert_ok(result)
    # Both PACSs answer with PAT003's instances only: Orthanc matches PatientID at IMAGE
    # level; dcmqrscp ignores it and answers every instance, and qrclient leaves out those
    # whose PatientID is another one.
    assert sorted(text(ds, "SOPInstanceUID") for ds in datasets(result.stdout)) == expected
    lines = result.stderr.splitlines()
    warnings = [line for line in lines if line.startswith("qrclient: warning: ")]
    assert "StudyInstanceUID" in warnings[0]
    assert "SeriesInstanceUID" in warnings[0]
    assert HIERARCHY_WARNING in warnings[0]
    summary = summary_line(result.stderr)
    assert summary.startswith(f"qrclient: {len(expected)} matches, success"), details(result)
    if real_pacs.kind == "orthanc":
        assert len(warnings) == 1, details(result)
        assert summary.endswith(" s"), details(result)
    else:
        assert warnings[1:] == [
            "qrclient: warning: the peer ignored PatientID=PAT003 (it returned matches with "
            "other values): those matches are left out"
        ], details(result)
        every = sum(1 for _ in all_instances(archive))
        left_out = every - len(expected)
        assert summary.endswith(
            f" s ({every} responses: {left_out} not matching the query left out)"
        ), details(result)
    assert len(lines) == len(warnings) + 1, details(result)


def test_quiet_silences_summary_and_warnings(node: str, archive: Archive) -> None:
    patient = find_patient(archive, "PAT003")
    count = sum(1 for _ in all_instances([patient]))
    result = run_cli("find", "-q", "-l", "image", "-f", "ndjson", "-k", "PatientID=PAT003", node)
    assert_ok(result)
    assert result.stderr == "", details(result)
    assert len(datasets(result.stdout)) == count


# -- exit codes -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [("echo",), ("find", "-l", "study")])
def test_closed_port_is_exit_3_with_a_hint(command: tuple[str, ...], closed_port: int) -> None:
    result = run_cli(*command, f"PACS@127.0.0.1:{closed_port}")
    assert_network_error(result, "connection refused")


@pytest.mark.parametrize("command", [("echo",), ("find", "-l", "study")])
def test_wrong_called_ae_is_exit_3(command: tuple[str, ...], real_pacs: RealPacs) -> None:
    result = run_cli(*command, f"WRONG@{real_pacs.peer.host}:{real_pacs.peer.port}")
    assert_network_error(result, "called AE title not recognised")


async def refuse_with_a900(conn: PeerConnection) -> None:
    await conn.accept()
    context_id, request, _ = await conn.read_message()
    rsp = response(C_FIND_RSP, request.MessageID, 0xA900, str(request.AffectedSOPClassUID))
    await conn.send_message(context_id, rsp)
    pdu_type, _ = await conn.read_pdu()
    if pdu_type == 5:  # A-RELEASE-RQ
        await conn.send_raw(RELEASE_RP)


def test_failure_status_is_exit_4() -> None:
    with peer_in_thread(refuse_with_a900) as (fake, connections):
        result = run_cli("find", "-l", "study", "-f", "ndjson", "--network-timeout", "5", fake)
    assert "Traceback" not in result.stderr, details(result)
    assert result.returncode == exit_codes.FAILURE_STATUS, details(result)
    assert result.stdout == "", details(result)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, details(result)
    assert "Identifier Does Not Match SOP Class" in errors[0]
    assert "0xA900" in errors[0]
    assert "qrclient: hint: " in result.stderr, details(result)
    assert len(connections) == 1


@pytest.mark.peers  # starts its own Orthanc
def test_truncated_results_are_exit_5(tmp_path: Path, archive: Archive) -> None:
    small = archive[:4]
    server = start_orthanc(tmp_path, small, LimitFindResults=2)
    try:
        result = run_cli(
            "find", "-l", "study", "-f", "ndjson", f"{server.aet}@{server.host}:{server.dicom_port}"
        )
    finally:
        server.stop(graceful=False)
    assert "Traceback" not in result.stderr, details(result)
    assert result.returncode == exit_codes.PARTIAL, details(result)
    found = datasets(result.stdout)
    assert len(found) == 2
    assert {text(ds, "StudyInstanceUID") for ds in found} <= set(study_uids(small))
    assert "truncated" in result.stderr, details(result)
    assert "2 matches, truncated" in summary_line(result.stderr)


# -- interruption and closed pipes ----------------------------------------------------


def pending_identifier(number: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = f"P{number}"
    ds.StudyInstanceUID = f"1.2.3.{number}"
    return ds


async def endless(conn: PeerConnection) -> None:
    """Answers the C-FIND with a pending match every 100 ms and never stops."""
    await conn.accept()
    context_id, request, _ = await conn.read_message()
    sop_class = str(request.AffectedSOPClassUID)

    async def keep_reading() -> None:  # logs the C-CANCEL and the A-ABORT as they come
        while True:
            await conn.read_message()

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_reading)
        for number in itertools.count():
            rsp = response(C_FIND_RSP, request.MessageID, 0xFF00, sop_class)
            await conn.send_message(context_id, rsp, pending_identifier(number))
            await anyio.sleep(0.1)


def test_ctrl_c_cancels_and_exits_130() -> None:
    with (
        peer_in_thread(endless) as (fake, connections),
        popen_cli("find", "-l", "study", "-f", "ndjson", fake) as proc,
    ):
        first = read_line(proc, timeout=TIMEOUT)
        assert json.loads(first)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr_bytes = proc.communicate(timeout=TIMEOUT)
        elapsed = time.monotonic() - interrupted
        deadline = time.monotonic() + 3
        log = connections[0].log
        while time.monotonic() < deadline and "closed-by-client" not in log:
            time.sleep(0.05)
    stderr = stderr_bytes.decode("utf-8", "replace")
    outcome = f"\nexit {proc.returncode}\nstderr: {stderr!r}\npeer log: {log}"
    assert "Traceback" not in stderr, outcome
    assert proc.returncode == exit_codes.INTERRUPTED, outcome
    assert "interrupted" in stderr, outcome
    assert elapsed < 5, f"took {elapsed:.1f} s to stop after SIGINT" + outcome
    for line in stdout.decode("utf-8").splitlines():
        assert json.loads(line), "a partial line was written"
    assert "command-0fff" in log or "pdu-07" in log, outcome


def test_closed_stdout_pipe_exits_quietly(node: str, big_study: StudySpec) -> None:
    """``qrclient find ... | head -1``: no traceback, exit 0."""
    uid = big_study.study_instance_uid
    with popen_cli(
        "find", "-q", "-l", "image", "-f", "ndjson", "-k", f"StudyInstanceUID={uid}", node
    ) as proc:
        first = read_line(proc, timeout=TIMEOUT)
        assert json.loads(first)
        assert proc.stdout is not None
        proc.stdout.close()  # far more output is still to come than a pipe buffer holds
        _, stderr_bytes = proc.communicate(timeout=TIMEOUT)
    stderr = stderr_bytes.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert proc.returncode == exit_codes.OK, f"exit {proc.returncode}, stderr: {stderr!r}"
    assert stderr == "", stderr


# -- verbose --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sent"),
    [(("echo",), "C-ECHO-RQ"), (("find", "-l", "study", "-f", "ndjson"), "C-FIND-RQ")],
)
def test_verbose_logs_negotiation_and_dimse(
    node: str, archive: Archive, command: tuple[str, ...], sent: str
) -> None:
    result = run_cli(*command, "--verbose", node)
    assert_ok(result)
    lines = result.stderr.splitlines()
    # Readable lines, as in the UI's log pane: no raw dicts.
    assert not any("{" in line for line in lines), details(result)
    request = next(i for i, line in enumerate(lines) if line.startswith("A-ASSOCIATE-RQ"))
    accept = next(i for i, line in enumerate(lines) if line.startswith("A-ASSOCIATE-AC"))
    sent_at = next(i for i, line in enumerate(lines) if line.startswith(f"-> {sent}"))
    assert request < accept < sent_at, details(result)
    assert any(line.startswith("  proposed [1] ") for line in lines[request:accept])
    assert any(": accepted " in line for line in lines[accept:sent_at]), details(result)
    assert any(line.startswith("<- ") and "Success" in line for line in lines[sent_at:])
    if command[0] == "find":  # the logging goes to stderr only: stdout stays clean data
        assert len(datasets(result.stdout)) == len(study_uids(archive))


# -- a PACS that repeats matches --------------------------------------------------------


@pytest.mark.parametrize("output", ["table", "csv", "json", "ndjson"])
def test_repeated_matches_are_merged_warned_once_and_counted(output: str) -> None:
    """A PACS answering a STUDY-level query with one response per instance."""
    pacs = FakePacs(instances(studies=2, per_study=3), study_per_instance=True)
    with fake_pacs_in_thread(pacs) as fake:
        result = run_cli("find", "-l", "study", "-f", output, fake)
    assert_ok(result)
    assert pacs.finds == [6]
    records = output_records(output, result)
    assert [r["StudyInstanceUID"] for r in records] == ["2.25.10", "2.25.11"], details(result)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "qrclient: warning: the peer sent the same study more than once (same "
        "StudyInstanceUID): each is shown once"
    ], details(result)
    assert re.fullmatch(
        r"qrclient: 2 matches, success, status Success \(0x0000\), [0-9.]+ s "
        r"\(6 responses: 4 duplicates merged\)",
        summary_line(result.stderr),
    ), details(result)

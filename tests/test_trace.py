"""``--trace FILE``: JSON Lines of the association and DIMSE traffic, against the real Orthanc."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fixtures.dataset import Archive, all_instances, all_studies, find_patient
from fixtures.orthanc import OrthancServer, free_ports
from qrclient import __version__
from qrclient.cli import exit_codes
from qrclient.net.events import Connected, DimseReceived, Released
from qrclient.present.trace import Trace

Record = dict[str, object]
ECHO = [sys.executable, "-m", "qrclient", "echo"]


def qrclient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def node(orthanc: OrthancServer) -> str:
    return f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"


def details(result: subprocess.CompletedProcess[str]) -> str:
    return f"\nexit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def read_trace(path: Path) -> list[Record]:
    """Every line one JSON object; starts with trace-start, times never go back."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(r, dict) for r in records)
    start = records[0]
    assert start["event"] == "trace-start"
    assert start["qrclient"] == __version__
    assert str(start["started"]).endswith("+00:00")
    times = [float(str(r["t"])) for r in records[1:]]
    assert times == sorted(times)
    return records


def events(records: list[Record]) -> list[str]:
    return [str(r["event"]) for r in records]


def dimse(records: list[Record]) -> list[Record]:
    return [r for r in records if str(r["event"]).startswith("dimse-")]


def test_echo_trace(orthanc: OrthancServer, tmp_path: Path) -> None:
    trace = tmp_path / "echo.jsonl"
    result = qrclient("echo", node(orthanc), "--trace", str(trace))
    assert result.returncode == exit_codes.OK, details(result)
    records = read_trace(trace)
    assert records[0]["command"] == "echo"
    assert records[0]["argv"] == ["echo", node(orthanc), "--trace", str(trace)]
    assert [e for e in events(records) if not e.startswith(("pdu-", "dataset-"))] == [
        "trace-start",
        "connected",
        "associate-rq",
        "associate-ac",
        "dimse-sent",
        "dimse-received",
        "release-rq",
        "released",
        "trace-end",
    ]
    rq = records[2]
    assert rq["calling_ae"] == "QRCLIENT"
    assert rq["called_ae"] == orthanc.aet
    assert rq["max_pdu"] == 1 << 20
    assert isinstance(rq["bytes"], int)
    assert rq["bytes"] > 68  # a header, the application context and one context at least
    ac = records[3]
    assert ac["peer_max_pdu"] == 16384
    assert str(ac["peer_implementation_version_name"]).startswith("OFFIS_DCMTK")
    assert ac["contexts"] == [
        {
            "id": 1,
            "abstract_syntax": "Verification SOP Class",
            "result": "accepted",
            "transfer_syntax": "1.2.840.10008.1.2.1",
        }
    ]
    sent, received = dimse(records)
    assert sent["command"] == "C-ECHO-RQ"
    assert received["command"] == "C-ECHO-RSP"
    assert received["message_id_being_responded_to"] == sent["message_id"]
    assert received["status"] == "0x0000"
    assert received["status_category"] == "success"
    assert received["status_meaning"] == "Success"
    pdus = [r for r in records if r["event"] in ("pdu-sent", "pdu-received")]
    assert [(r["event"], r["pdu_type"]) for r in pdus] == [
        ("pdu-sent", "P_DATA_TF"),
        ("pdu-received", "P_DATA_TF"),
    ]
    assert len({r["association"] for r in records[1:-1]}) == 1  # one association, tagged
    assert records[-1]["event"] == "trace-end"
    assert records[-1]["exit_code"] == exit_codes.OK


def test_find_trace_decodes_statuses_and_holds_no_data_sets(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    trace = tmp_path / "find.jsonl"
    result = qrclient(
        "find", node(orthanc), "-l", "study", "-f", "json", "--trace", str(trace), "-v"
    )
    assert result.returncode == exit_codes.OK, details(result)
    studies = list(all_studies(archive))
    records = read_trace(trace)
    messages = dimse(records)
    assert messages[0]["command"] == "C-FIND-RQ"
    responses = messages[1:]
    assert len(responses) == len(studies) + 1
    assert {r["status"] for r in responses[:-1]} == {"0xFF00"}
    assert {r["status_category"] for r in responses[:-1]} == {"pending"}
    assert responses[-1]["status"] == "0x0000"
    # Each match's identifier shows up as its size only, never its content.
    sizes = [r for r in records if r["event"] == "dataset-received"]
    assert len(sizes) == len(studies)
    assert all(set(r) == {"t", "event", "association", "role", "bytes"} for r in sizes)
    text = trace.read_text(encoding="utf-8")
    for patient, _ in studies:
        assert patient.patient_id not in text
        assert patient.patient_name.split("^")[0] not in text
    # -v still logs to stderr, without the PDU-level events only the trace wants.
    assert "\n<- C-FIND-RSP " in result.stderr
    assert "pdu-received" not in result.stderr


def test_get_trace_has_no_pixel_data(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    # The biggest study: its images are far larger than what a trace holds for them.
    _, study = max(all_studies(archive), key=lambda ps: sum(len(x.instances) for x in ps[1].series))
    trace = tmp_path / "get.jsonl"
    result = qrclient(
        "get",
        node(orthanc),
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "-o",
        str(tmp_path / "store"),
        "--format",
        "json",
        "--trace",
        str(trace),
    )
    assert result.returncode == exit_codes.OK, details(result)
    received = json.loads(result.stdout)["bytes"]
    records = read_trace(trace)
    stores = [r for r in records if r.get("command") == "C-STORE-RQ"]
    assert len(stores) == json.loads(result.stdout)["received"] > 0
    storing = {r["association"] for r in stores}  # the C-GET associations
    stored = sum(
        int(str(r["bytes"]))
        for r in records
        if r["event"] == "dataset-received" and r["association"] in storing
    )
    assert stored >= received  # the data sets' sizes are all there ...
    assert trace.stat().st_size < received / 10  # ... but not their bytes
    uids = {instance.sop_instance_uid for *_, instance in all_instances(archive)}
    assert {r["affected_sop_instance_uid"] for r in stores} <= uids


def test_trace_of_a_rejected_association_is_complete(
    orthanc: OrthancServer, tmp_path: Path
) -> None:
    trace = tmp_path / "rejected.jsonl"
    result = qrclient("echo", f"WRONG@{orthanc.host}:{orthanc.dicom_port}", "--trace", str(trace))
    assert result.returncode == exit_codes.NETWORK, details(result)
    records = read_trace(trace)
    assert events(records) == [
        "trace-start",
        "connected",
        "associate-rq",
        "associate-rj",
        "trace-end",
    ]
    rejection = records[3]
    assert (rejection["result"], rejection["source"], rejection["reason"]) == (1, 1, 7)
    assert "called AE title not recognised" in str(rejection["error"])
    assert records[-1]["exit_code"] == exit_codes.NETWORK


def test_trace_of_a_refused_connection_is_complete(tmp_path: Path) -> None:
    trace = tmp_path / "refused.jsonl"
    port = free_ports(1)[0]
    result = qrclient("find", f"PACS@127.0.0.1:{port}", "-l", "study", "--trace", str(trace))
    assert result.returncode == exit_codes.NETWORK, details(result)
    records = read_trace(trace)
    assert events(records) == ["trace-start", "error", "trace-end"]
    assert "connection refused" in str(records[1]["error"])
    assert records[-1]["exit_code"] == exit_codes.NETWORK


def test_trace_of_an_interrupted_command_is_complete(tmp_path: Path) -> None:
    # A peer that accepts TCP and never answers the association request.
    trace = tmp_path / "interrupted.jsonl"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with subprocess.Popen(
            [*ECHO, f"PACS@127.0.0.1:{port}", "--trace", str(trace)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        ) as proc:
            deadline = time.monotonic() + 30
            while "associate-rq" not in (trace.read_text() if trace.exists() else ""):
                assert time.monotonic() < deadline, "no associate-rq in the trace"
                assert proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == exit_codes.INTERRUPTED, stderr
    records = read_trace(trace)
    assert events(records)[:3] == ["trace-start", "connected", "associate-rq"]
    assert records[-1] == {**records[-1], "event": "trace-end", "exit_code": 130}


def test_doctor_trace_shows_the_listener_side(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    trace = tmp_path / "doctor.jsonl"
    result = qrclient(
        "doctor", node(orthanc), "--listen", str(listen_ports[0]), "--trace", str(trace)
    )
    assert result.returncode == exit_codes.OK, details(result)
    records = read_trace(trace)
    incoming = [r for r in records if r.get("role") == "listener"]
    assert incoming[0]["event"] == "listener-associate-rq"
    assert incoming[0]["calling_ae"] == orthanc.aet
    assert "listener-associate-ac" in events(incoming)
    stored = [r for r in incoming if r.get("command") == "C-STORE-RSP"]
    assert [r["status"] for r in stored] == ["0x0000"]
    moves = [r for r in records if r.get("command") == "C-MOVE-RSP"]
    assert (moves[-1]["status"], moves[-1]["status_meaning"]) == ("0x0000", "Success")


def test_an_unwritable_trace_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "trace.jsonl"
    result = qrclient("echo", "PACS@127.0.0.1:104", "--trace", str(target))
    assert result.returncode == exit_codes.USAGE, details(result)
    assert result.stderr.startswith(f"qrclient: error: --trace {target}: cannot write it")
    assert len(result.stderr.splitlines()) == 1


def test_records_are_json_safe(tmp_path: Path) -> None:
    path = tmp_path / "unit.jsonl"
    with path.open("w", encoding="utf-8") as file:
        trace = Trace(file, "find", ["find"])
        trace(
            DimseReceived(
                {
                    "command": "C-FIND-RSP",
                    "status": 0xA900,
                    "offending_element": (0x00100010,),
                    "raw": b"\x00" * 40,
                    "nested": {"tuple": (1, 2)},
                    "other": object(),
                }
            )
        )
        trace.close(4)
        trace.close(4)  # idempotent
    first, record, end = read_trace(path)
    assert record["status"] == "0xA900"
    assert record["status_category"] == "failure"
    assert record["offending_element"] == ["(0010,0010)"]
    assert record["raw"] == {"bytes": 40}
    assert record["nested"] == {"tuple": [1, 2]}
    assert str(record["other"]).startswith("<object")
    assert end == {**end, "event": "trace-end", "exit_code": 4}
    assert first["command"] == "find"


def test_the_header_keeps_query_keywords_but_not_their_values(tmp_path: Path) -> None:
    trace = tmp_path / "find.jsonl"
    port = free_ports(1)[0]
    result = qrclient(
        "find",
        f"PACS@127.0.0.1:{port}",
        "-l",
        "study",
        "-k",
        "PatientName=DOE^JOHN",
        "-kPatientID=PAT001",
        "--key=AccessionNumber=ACC42",
        "--ke",
        "StudyDescription=CT CHEST",
        "-qkPatientBirthDate=19700101",
        "-k",
        "StudyInstanceUID",
        "--trace",
        str(trace),
    )
    assert result.returncode == exit_codes.NETWORK, details(result)  # nothing listens there
    argv = read_trace(trace)[0]["argv"]
    assert argv == [
        "find",
        f"PACS@127.0.0.1:{port}",
        "-l",
        "study",
        "-k",
        "PatientName=<redacted>",
        "-kPatientID=<redacted>",
        "--key=AccessionNumber=<redacted>",
        "--ke",
        "StudyDescription=<redacted>",
        "-qkPatientBirthDate=<redacted>",
        "-k",
        "StudyInstanceUID",
        "--trace",
        str(trace),
    ]
    text = trace.read_text(encoding="utf-8")
    for value in ("DOE", "PAT001", "ACC42", "CHEST", "19700101"):
        assert value not in text


def test_neither_trace_nor_verbose_log_names_the_patient(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    """What was asked and what came back stays out of both: only commands, statuses,
    sizes and UIDs are written."""
    patient = find_patient(archive, "PAT001")
    secrets = (patient.patient_id, patient.patient_name.split("^")[0], patient.birth_date)
    find_trace, get_trace = tmp_path / "find.jsonl", tmp_path / "get.jsonl"
    keys = ["-k", f"PatientID={patient.patient_id}", "-k", "PatientName=DOE*", "-v", "-q"]
    found = qrclient("find", node(orthanc), "-l", "study", *keys, "--trace", str(find_trace))
    assert found.returncode == exit_codes.OK, details(found)
    assert patient.patient_id in found.stdout  # the matches themselves go to stdout
    got = qrclient(
        "get",
        node(orthanc),
        "-k",
        f"PatientID={patient.patient_id}",
        "-o",
        str(tmp_path / "store"),
        "-v",
        "--trace",
        str(get_trace),
    )
    assert got.returncode == exit_codes.OK, details(got)
    assert "<- C-STORE-RQ" in got.stderr  # -v did log
    assert "<- C-FIND-RSP" in found.stderr
    for written in (found.stderr, got.stderr, find_trace.read_text(), get_trace.read_text()):
        for secret in secrets:
            assert secret not in written


def test_a_trace_that_cannot_be_written_stops_and_says_why(tmp_path: Path) -> None:
    class FillsUp(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            if self.writes > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(text)

    file = FillsUp()
    trace = Trace(file, "echo", ["echo"])
    trace(Connected("PACS@127.0.0.1:104", 0.001))
    trace(Released())  # the disk is full: no exception reaches the association
    trace(Released())
    trace.close(0)
    assert trace.failure == "No space left on device"
    assert file.closed


def test_a_full_disk_at_the_start_is_a_usage_error() -> None:
    result = qrclient("echo", "PACS@127.0.0.1:104", "--trace", "/dev/full")
    assert result.returncode == exit_codes.USAGE, details(result)
    assert result.stderr == (
        "qrclient: error: --trace /dev/full: cannot write it (No space left on device)\n"
    )


def test_an_empty_trace_name_is_refused() -> None:
    result = qrclient("echo", "PACS@127.0.0.1:104", "--trace", "")
    assert result.returncode == exit_codes.USAGE, details(result)
    assert result.stderr.startswith("qrclient: error: --trace : cannot write it")

"""``qrclient doctor`` against the real Orthanc, in the set-ups a PACS administrator meets.

The session Orthanc knows our AE title QRCLIENT at listen_ports[0] and THIRDPARTY at
listen_ports[1] (both on 127.0.0.1) as C-MOVE destinations, and checks the called AE.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from fixtures.orthanc import OrthancServer, free_ports
from qrclient.cli import exit_codes
from qrclient.net import Peer, Settings
from qrclient.net.presentation import STUDY_ROOT_FIND, STUDY_ROOT_MOVE, VERIFICATION
from qrclient.net.status import Service, Status
from qrclient.ops.doctor import DoctorOptions, State, Verdict, diagnose_peer
from qrclient.ops.doctor.move_check import MoveEvidence, Where, diagnose
from tests.fakepeer import PeerConnection, fake_peer, response

RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
CHECK_NAMES = [
    "name resolution",
    "TCP connection",
    "association",
    "C-ECHO",
    "Patient Root C-FIND",
    "Patient Root C-MOVE",
    "Patient Root C-GET",
    "Study Root C-FIND",
    "Study Root C-MOVE",
    "Study Root C-GET",
    "C-FIND",
    "C-MOVE to us",
    "C-FIND result cap",
    "relational queries",
]


def doctor(
    orthanc: OrthancServer, *args: str, tmp: Path, node: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the doctor with its temporary files under ``tmp`` (to see they are removed)."""
    tmp.mkdir(exist_ok=True)
    target = node or f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"
    return subprocess.run(
        [sys.executable, "-m", "qrclient", "doctor", target, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp)},
        check=False,
    )


def details(result: subprocess.CompletedProcess[str]) -> str:
    return f"\nexit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    report = json.loads(result.stdout)
    assert [c["name"] for c in report["checks"]] == CHECK_NAMES, details(result)
    return {str(c["name"]): c for c in report["checks"]}


def line(result: subprocess.CompletedProcess[str], name: str) -> str:
    found = [text for text in result.stdout.splitlines() if f"  {name}  " in text]
    assert len(found) == 1, details(result)
    return found[0]


def fixes(result: subprocess.CompletedProcess[str]) -> list[str]:
    lines = result.stdout.splitlines()
    assert "to fix:" in lines, details(result)
    return lines[lines.index("to fix:") + 1 :]


@contextmanager
def silent_port(port: int) -> Iterator[None]:
    """A port that accepts TCP connections and never answers, like a stuck program."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.bind(("127.0.0.1", port))
        server.listen(8)
        yield


# -- all good -----------------------------------------------------------------------


def test_all_good_text(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    result = doctor(orthanc, "--listen", str(listen_ports[0]), tmp=tmp_path / "tmp")
    assert result.returncode == exit_codes.OK, details(result)
    assert "Traceback" not in result.stderr
    for name in CHECK_NAMES:
        assert line(result, name).startswith("  ok    "), details(result)
    assert "the PACS delivered the instance to our listener" in line(result, "C-MOVE to us")
    assert f"port {listen_ports[0]}" in line(result, "C-MOVE to us")
    assert "OFFIS_DCMTK" in line(result, "association")  # Orthanc's DICOM stack
    assert "max PDU: peer 16384" in line(result, "association")
    assert "no cap: all" in line(result, "C-FIND result cap")
    assert result.stdout.splitlines()[-1] == "verdict: all is well"
    # The moved instance went to a temporary directory that is gone again.
    assert list((tmp_path / "tmp").iterdir()) == []


def test_all_good_json(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    result = doctor(
        orthanc, "--listen", str(listen_ports[0]), "--format", "json", tmp=tmp_path / "tmp"
    )
    assert result.returncode == exit_codes.OK, details(result)
    report = json.loads(result.stdout)
    assert report["verdict"] == "healthy"
    assert report["calling_ae"] == "QRCLIENT"
    found = checks(result)
    assert {c["state"] for c in found.values()} == {"ok"}, details(result)
    study_find = str(found["Study Root C-FIND"]["detail"])
    assert "Explicit VR Little Endian" in study_find
    assert "Implicit VR Little Endian" in study_find
    for timed in ("TCP connection", "association", "C-ECHO", "C-FIND", "C-MOVE to us"):
        seconds = found[timed]["seconds"]
        assert isinstance(seconds, float), timed
        assert seconds > 0, timed
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.anyio
async def test_all_good_through_the_api(
    orthanc: OrthancServer, listen_ports: tuple[int, int]
) -> None:
    peer = Peer(orthanc.aet, orthanc.host, orthanc.dicom_port)
    report = await diagnose_peer(
        peer, Settings(), DoctorOptions(listen_host="127.0.0.1", listen_port=listen_ports[0])
    )
    assert report.verdict is Verdict.HEALTHY, report.as_dict()
    move = next(c for c in report.checks if c.name == "C-MOVE to us")
    assert move.state is State.OK
    assert f"127.0.0.1:{listen_ports[0]}" in move.detail


# -- our AE title unknown to the PACS --------------------------------------------------


def test_unknown_ae_title_text(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    # Orthanc accepts the association and queries from unknown AE titles (its
    # DicomAlwaysAllow* defaults), but cannot move to an AE title it does not know.
    result = doctor(
        orthanc, "--aet", "UNKNOWNAE", "--listen", str(listen_ports[0]), tmp=tmp_path / "tmp"
    )
    assert result.returncode == exit_codes.FAILURE_STATUS, details(result)
    assert line(result, "association").startswith("  ok    ")
    assert line(result, "C-FIND").startswith("  ok    ")
    move = line(result, "C-MOVE to us")
    assert move.startswith("  FAIL  "), details(result)
    assert "does not know AE title UNKNOWNAE" in move
    assert "0xC000" in move  # Orthanc's answer, decoded
    fix = [text for text in fixes(result) if "C-MOVE to us" in text]
    assert len(fix) == 1, details(result)
    assert f"register AE title UNKNOWNAE, host 127.0.0.1, port {listen_ports[0]}" in fix[0]
    assert result.stdout.count("verdict: the PACS answers, but some checks failed") == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unknown_ae_title_json(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    result = doctor(
        orthanc,
        "--aet",
        "UNKNOWNAE",
        "--listen",
        str(listen_ports[0]),
        "--format",
        "json",
        tmp=tmp_path / "tmp",
    )
    assert result.returncode == exit_codes.FAILURE_STATUS, details(result)
    assert json.loads(result.stdout)["verdict"] == "problems"
    found = checks(result)
    failed = [name for name, c in found.items() if c["state"] == "failed"]
    assert failed == ["C-MOVE to us"], details(result)
    assert "UNKNOWNAE" in str(found["C-MOVE to us"]["fix"])


# -- our AE title known, with a port nobody answers on ----------------------------------


def test_known_ae_title_wrong_port_refused(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    # THIRDPARTY is registered at listen_ports[1], where nothing listens: Orthanc's
    # connection is refused and it answers 0xC000, exactly as for an unknown AE title,
    # so the doctor names both causes and the address to register.
    elsewhere = free_ports(1)[0]
    result = doctor(
        orthanc, "--aet", "THIRDPARTY", "--listen", str(elsewhere), tmp=tmp_path / "tmp"
    )
    assert result.returncode == exit_codes.FAILURE_STATUS, details(result)
    move = line(result, "C-MOVE to us")
    assert move.startswith("  FAIL  "), details(result)
    assert f"nothing reached our listener (port {elsewhere} on all interfaces)" in move
    assert "knows it with a host or port it cannot reach" in move
    fix = next(text for text in fixes(result) if "C-MOVE to us" in text)
    assert f"they must be host 127.0.0.1, port {elsewhere}" in fix
    assert "firewall" in fix


def test_known_ae_title_wrong_port_nothing_arrives(
    orthanc: OrthancServer, listen_ports: tuple[int, int], tmp_path: Path
) -> None:
    # Where the PACS sends (listen_ports[1]) something accepts the connection and never
    # answers, like a firewall that drops packets: the PACS keeps trying, nothing
    # arrives within the wait, and the doctor says the PACS knows us but cannot reach us.
    elsewhere = free_ports(1)[0]
    with silent_port(listen_ports[1]):
        result = doctor(
            orthanc,
            "--aet",
            "THIRDPARTY",
            "--listen",
            str(elsewhere),
            "--move-wait",
            "2",
            "--format",
            "json",
            tmp=tmp_path / "tmp",
        )
    assert result.returncode == exit_codes.FAILURE_STATUS, details(result)
    move = checks(result)["C-MOVE to us"]
    assert move["state"] == "failed"
    assert "the PACS knows THIRDPARTY but cannot reach it" in str(move["detail"])
    assert "within 2 s" in str(move["detail"])
    assert f"port {elsewhere}" in str(move["fix"])
    assert list((tmp_path / "tmp").iterdir()) == []


# -- the PACS cannot be talked to -------------------------------------------------------


def test_wrong_called_ae_title_exits_3(orthanc: OrthancServer, tmp_path: Path) -> None:
    node = f"WRONG@{orthanc.host}:{orthanc.dicom_port}"
    result = doctor(orthanc, tmp=tmp_path / "tmp", node=node)
    assert result.returncode == exit_codes.NETWORK, details(result)
    assert line(result, "TCP connection").startswith("  ok    ")
    association = line(result, "association")
    assert association.startswith("  FAIL  ")
    assert "called AE title not recognised (result 1, source 1, reason 7)" in association
    assert "  skip  11 further checks: no association" in result.stdout
    assert "the AE title after NODE's '@' must be the PACS's own AE title" in result.stdout


def test_nothing_listening_exits_3_json(orthanc: OrthancServer, tmp_path: Path) -> None:
    port = free_ports(1)[0]
    result = doctor(
        orthanc, "--format", "json", tmp=tmp_path / "tmp", node=f"PACS@127.0.0.1:{port}"
    )
    assert result.returncode == exit_codes.NETWORK, details(result)
    found = checks(result)
    assert found["TCP connection"]["state"] == "failed"
    assert "connection refused" in str(found["TCP connection"]["detail"])
    assert {found[name]["state"] for name in CHECK_NAMES[2:]} == {"skipped"}


def test_busy_listen_port_fails_the_move_check(orthanc: OrthancServer, tmp_path: Path) -> None:
    # Orthanc's own DICOM port is taken on every interface: our listener cannot bind it.
    result = doctor(orthanc, "--listen", str(orthanc.dicom_port), tmp=tmp_path / "tmp")
    assert result.returncode == exit_codes.FAILURE_STATUS, details(result)
    move = line(result, "C-MOVE to us")
    assert move.startswith("  FAIL  ")
    assert f"cannot listen on 0.0.0.0:{orthanc.dicom_port}" in move


def test_bad_listen_value_is_a_usage_error(orthanc: OrthancServer, tmp_path: Path) -> None:
    result = doctor(orthanc, "--listen", "host:notaport", tmp=tmp_path / "tmp")
    assert result.returncode == exit_codes.USAGE, details(result)
    assert result.stdout == ""
    assert result.stderr.startswith("qrclient: error: ")
    assert "Traceback" not in result.stderr


# -- the diagnosis of answers Orthanc never gives -----------------------------------------

WHERE = Where("QRCLIENT", "0.0.0.0", 11113, "10.0.0.5", 20.0)


def test_move_destination_unknown_status_is_pinned_down() -> None:
    evidence = MoveEvidence(status=Status(0xA801, Service.MOVE))
    check = diagnose(evidence, WHERE, "PACS")
    assert check.state is State.FAILED
    assert check.detail.startswith("the PACS does not know our AE title QRCLIENT")
    assert "register AE title QRCLIENT, host 10.0.0.5, port 11113" in check.fix


def test_failed_sub_operations_mean_the_pacs_knows_us() -> None:
    evidence = MoveEvidence(status=Status(0xA702, Service.MOVE), failed=1)
    check = diagnose(evidence, WHERE, "PACS")
    assert check.detail.startswith("the PACS knows QRCLIENT but cannot deliver to it")
    assert "host 10.0.0.5, port 11113" in check.fix


def test_a_refused_delivery_names_the_calling_ae_title() -> None:
    evidence = MoveEvidence(
        status=Status(0xA702, Service.MOVE),
        failed=1,
        connections=[("PACS_OUT", "10.0.0.9")],
        refusals=["calling AE title 'PACS_OUT' from 10.0.0.9 is not a peer we are moving from"],
    )
    check = diagnose(evidence, WHERE, "PACS")
    assert "it was refused" in check.detail
    assert "the PACS connected as PACS_OUT" in check.fix


# -- a scripted PACS for answers Orthanc never gives --------------------------------------

GET_CONTEXT_IDS = (19, 21, 23, 25, 43, 45, 47, 49)  # Patient and Study Root C-GET, probed
STUDY_UIDS = ("2.25.11", "2.25.12", "2.25.13")


async def _release(connection: PeerConnection) -> None:
    pdu_type, _ = await connection.read_pdu()
    assert pdu_type == 5
    await connection.send_raw(RELEASE_RP)


async def _probe(connection: PeerConnection) -> None:
    await connection.accept(reject_ids=GET_CONTEXT_IDS, extended={STUDY_ROOT_FIND: b"\x01"})
    context_id, command, _ = await connection.read_message()
    await connection.send_message(
        context_id, response(0x8030, int(command.MessageID), 0x0000, VERIFICATION)
    )
    await _release(connection)


async def _truncated_studies(connection: PeerConnection) -> None:
    await connection.accept()
    context_id, command, _ = await connection.read_message()
    for uid in STUDY_UIDS:
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = uid
        match.NumberOfStudyRelatedInstances = "2"
        pending = response(0x8020, int(command.MessageID), 0xFF00, STUDY_ROOT_FIND)
        await connection.send_message(context_id, pending, match)
    final = response(0x8020, int(command.MessageID), 0xFE00, STUDY_ROOT_FIND)
    await connection.send_message(context_id, final)
    await _release(connection)


async def _one_instance(connection: PeerConnection) -> None:
    await connection.accept()
    context_id, command, identifier = await connection.read_message()
    assert identifier is not None
    match = Dataset()
    match.QueryRetrieveLevel = "IMAGE"
    match.StudyInstanceUID = identifier.StudyInstanceUID
    match.SeriesInstanceUID = "2.25.21"
    match.SOPInstanceUID = "2.25.31"
    pending = response(0x8020, int(command.MessageID), 0xFF00, STUDY_ROOT_FIND)
    await connection.send_message(context_id, pending, match)
    final = response(0x8020, int(command.MessageID), 0x0000, STUDY_ROOT_FIND)
    await connection.send_message(context_id, final)
    # The doctor needs one instance: it stops reading at the first and cancels the rest.
    _, cancel, _ = await connection.read_message()
    assert int(cancel.CommandField) == 0x0FFF  # C-CANCEL-RQ
    assert int(cancel.MessageIDBeingRespondedTo) == int(command.MessageID)
    await _release(connection)


async def _destination_unknown(connection: PeerConnection) -> None:
    await connection.accept()
    context_id, command, identifier = await connection.read_message()
    assert identifier is not None
    assert identifier.SOPInstanceUID == "2.25.31"
    assert command.MoveDestination == "QRCLIENT"
    await connection.send_message(
        context_id, response(0x8021, int(command.MessageID), 0xA801, STUDY_ROOT_MOVE)
    )
    await _release(connection)


@pytest.mark.anyio
async def test_a_pacs_that_caps_results_and_does_not_know_us() -> None:
    scripts = [_probe, _truncated_studies, _one_instance, _destination_unknown]

    async def script(connection: PeerConnection) -> None:
        await scripts.pop(0)(connection)

    async with fake_peer(script) as (port, connections):
        report = await diagnose_peer(
            Peer("FAKE", "127.0.0.1", port),
            Settings(),
            DoctorOptions(listen_host="127.0.0.1", listen_port=0),
        )
    assert len(connections) == 4
    found = {c.name: c for c in report.checks}
    assert report.verdict is Verdict.PROBLEMS
    assert found["Study Root C-GET"].state is State.WARNING  # C-MOVE is there instead
    assert "qrclient retrieve" in found["Study Root C-GET"].fix
    assert found["Study Root C-GET"].detail.startswith(
        "not accepted (abstract syntax not supported) with any of Explicit VR Little Endian"
    )
    assert found["Study Root C-MOVE"].state is State.OK
    assert found["C-FIND"].detail == "STUDY-level query answered: 3 studies"
    cap = found["C-FIND result cap"]
    assert cap.state is State.WARNING
    assert cap.detail.startswith("the PACS stopped after 3 matches with status Cancel (0xFE00)")
    assert found["relational queries"].detail == "supported (Study Root)"
    move = found["C-MOVE to us"]
    assert move.state is State.FAILED
    assert move.detail.startswith("the PACS does not know our AE title QRCLIENT")
    assert "0xA801" in move.detail
    assert "register AE title QRCLIENT, host 127.0.0.1, port " in move.fix
    assert ", port 0 " not in move.fix  # the port the listener really had

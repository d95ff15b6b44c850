"""``qrclient get | move | retrieve`` as a user runs them, against each real PACS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from fixtures.dataset import Archive, StudySpec, all_studies, find_patient
from fixtures.orthanc import OrthancServer
from qrclient.config import load_config
from tests import dcmtk
from tests.conftest import OUR_AE, THIRD_PARTY_AE, RealPacs
from tests.envs import unmeasured


def qrclient(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def node(orthanc: OrthancServer) -> str:
    return f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"


def stored_uids(root: Path) -> set[str]:
    files = [p for p in root.rglob("*.dcm") if ".qrclient" not in p.parts]
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


def instances(study: StudySpec) -> set[str]:
    return {i.sop_instance_uid for s in study.series for i in s.instances}


@pytest.mark.parametrize("command", ["get", "retrieve"])
def test_get_then_again_fetches_nothing(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, command: str
) -> None:
    study = find_patient(archive, "PAT004").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    first = qrclient(command, real_pacs.node, "-k", key, "--out", str(tmp_path), "--aet", OUR_AE)
    assert first.returncode == 0, first.stderr
    expected = instances(study)
    assert f"{len(expected)} instances received (0 already here)" in first.stdout
    assert stored_uids(tmp_path) == expected
    again = qrclient(command, real_pacs.node, "-k", key, "--out", str(tmp_path), "--format", "json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["received"] == 0
    assert summary["already_here"] == len(expected)
    assert summary["state"] == "complete"


WITHOUT_PYDICOM = """
import sys
from qrclient.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("pydicom imported" if "pydicom" in sys.modules else "no pydicom", code)
print("tomllib imported" if "tomllib" in sys.modules else "no tomllib")
"""


def assert_imports_neither_pydicom_nor_tomllib(args: list[str], config_home: Path) -> None:
    """Run the command line with ``args`` (to exit 0), without a configuration file."""
    without_config = unmeasured({**os.environ, "XDG_CONFIG_HOME": str(config_home)})
    without_config.pop("QRCLIENT_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYDICOM, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=without_config,
    )
    assert done.stdout.splitlines()[-2:] == ["no pydicom 0", "no tomllib"], done.stderr


@pytest.mark.parametrize("command", ["get", "move", "echo"])
def test_retrieve_and_echo_never_import_pydicom(
    real_pacs: RealPacs,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
    command: str,
) -> None:
    """pydicom takes some 70 ms to import: a retrieve or an echo must not need it.
    Nor tomllib (some 5 ms) when there is no configuration file."""
    study = find_patient(archive, "PAT004").studies[0]
    args = [command, real_pacs.node, "--aet", OUR_AE]
    if command != "echo":
        args += ["-k", f"StudyInstanceUID={study.study_instance_uid}", "--out", str(tmp_path)]
    if command == "move":
        args += ["--listen", f"127.0.0.1:{listen_ports[0]}"]
    assert_imports_neither_pydicom_nor_tomllib(args, tmp_path / "no-config")
    if command != "echo":
        assert stored_uids(tmp_path) == instances(study)


def test_move_to_our_listener(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    study = find_patient(archive, "PAT008").studies[0]
    result = qrclient(
        "move",
        real_pacs.node,
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "--out",
        str(tmp_path),
        "--listen",
        f"127.0.0.1:{listen_ports[0]}",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["received"] == len(instances(study))
    assert (summary["refused_instances"], summary["refused_connections"]) == (0, 0)
    assert stored_uids(tmp_path) == instances(study)


def test_move_by_patient_fetches_only_that_patients_instances(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """Issue 12.2 as reported: dcmqrscp ignores PatientID below STUDY level."""
    owner = find_patient(archive, "PAT005")
    result = qrclient(
        "move",
        real_pacs.node,
        "-k",
        f"PatientID={owner.patient_id}",
        "--out",
        str(tmp_path),
        "--listen",
        f"127.0.0.1:{listen_ports[0]}",
    )
    assert result.returncode == 0, result.stderr
    expected = set().union(*(instances(s) for s in owner.studies))
    assert f"{len(expected)} instances received" in result.stdout
    assert stored_uids(tmp_path) == expected


@pytest.mark.parametrize("command", ["move", "retrieve"])
def test_move_to_an_unknown_destination_exits_4_with_the_fix(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, command: str
) -> None:
    """Issue 12.8: one error for the 3 studies of PAT007, naming the peer and doctor."""
    owner = find_patient(archive, "PAT007")
    result = qrclient(
        command,
        real_pacs.node,
        "-k",
        f"PatientID={owner.patient_id}",
        "--dest",
        "NOBODY",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "register" in errors[0]
    assert f"qrclient doctor {real_pacs.node}" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["move", "retrieve"])
def test_a_move_to_another_ae_reports_its_counts(
    real_pacs: RealPacs,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
    command: str,
) -> None:
    """Issue 12.6: ``retrieve --dest AE`` moves (even where C-GET is accepted) and says
    what the PACS reports; DCMTK's storescp is the other AE."""
    study = find_patient(archive, "PAT002").studies[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "TCP_NODELAY": "1"}
    receiver = subprocess.Popen(
        [dcmtk.tool("storescp"), "-aet", THIRD_PARTY_AE, "-od", str(elsewhere),
         str(listen_ports[1])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(listen_ports[1])
        key = f"StudyInstanceUID={study.study_instance_uid}"
        args = [command, real_pacs.node, "-k", key, "--dest", THIRD_PARTY_AE]
        text = qrclient(*args, "--out", str(tmp_path / "store"))
        as_json = qrclient(*args, "--out", str(tmp_path / "store"), "--format", "json")
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    count = len(instances(study))
    assert text.returncode == 0, text.stderr
    assert f"moved to {THIRD_PARTY_AE}: {count} completed, 0 failed" in text.stdout
    assert text.stdout.rstrip().endswith("complete")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["destination"] == THIRD_PARTY_AE
    assert (summary["completed"], summary["received"], summary["state"]) == (
        count,
        0,
        "complete",
    )
    assert {p.name for p in elsewhere.iterdir()}  # storescp got files
    assert not list((tmp_path / "store").rglob("*.dcm"))


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_a_list_of_a_thousand_study_uids_is_split_over_requests(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    """Issue 13.12: over 64 KiB of UIDs (two real, 1,100 unknown) in one -k: no ValueError."""
    real = [s for _, s in all_studies(archive)][:2]
    fake = [f"1.2.826.0.1.3680043.8.498.999.{n + 1}.".ljust(64, "1") for n in range(1100)]
    uids = [real[0].study_instance_uid, *fake, real[1].study_instance_uid]
    key = "StudyInstanceUID=" + "\\".join(uids)
    assert len(key) > 65536
    result = qrclient("get", real_pacs.node, "-k", key, "--out", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert stored_uids(tmp_path) == instances(real[0]) | instances(real[1])


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ([], "nothing to retrieve"),
        (["StudyInstanceUID=1.2.*"], "wildcards"),
        (["PatientName=DOE"], "cannot select"),
        (["StudyInstanceUID="], "exact values"),
    ],
)
def test_bad_retrieve_keys_exit_2(
    orthanc: OrthancServer, tmp_path: Path, keys: list[str], words: str
) -> None:
    args = [a for k in keys for a in ("-k", k)]
    result = qrclient("get", node(orthanc), *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".qrclient").exists() or not list(tmp_path.rglob("*.dcm"))


def test_interrupted_get_leaves_no_partial_file_and_resumes(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "BIG001").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    command = [sys.executable, "-m", "qrclient", "get", real_pacs.node, "-k", key]
    process = subprocess.Popen(
        [*command, "--out", str(tmp_path), "--parallel", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(list(tmp_path.rglob("*.dcm"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    # Files had arrived: the summary of what is here, then 130 as for any Ctrl-C.
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert not list((tmp_path / ".qrclient" / "incoming").iterdir())
    here = stored_uids(tmp_path)
    assert 10 <= len(here) < 300
    assert f"{len(here)} instances received (0 already here)" in stdout
    assert "partial" in stdout
    rest = qrclient(
        "get", real_pacs.node, "-k", key, "--out", str(tmp_path), "--format", "json", "-p", "3"
    )
    assert rest.returncode == 0, rest.stderr
    summary = json.loads(rest.stdout)
    assert summary["already_here"] == len(here)
    assert summary["received"] == 300 - len(here)
    assert stored_uids(tmp_path) == instances(study)
    assert os.path.isdir(tmp_path / ".qrclient")


def test_a_busy_listen_port_is_explained(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT004").studies[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = qrclient(
            "move",
            node(orthanc),
            "-k",
            f"StudyInstanceUID={study.study_instance_uid}",
            "--out",
            str(tmp_path),
            "--listen",
            f"127.0.0.1:{port}",
        )
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--listen" in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_uids(tmp_path) == set()


def test_the_listen_port_is_bound_only_to_move_to_us(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    """A retrieve that uses C-GET, or a move with nothing to fetch, needs no port: one
    held by another program (another qrclient's move) must not stop it."""
    study = find_patient(archive, "PAT004").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        fetched = qrclient(
            "retrieve",
            node(orthanc),
            "-k",
            key,
            "--out",
            str(tmp_path),
            "--listen",
            listen,
            "--format",
            "json",
        )
        assert fetched.returncode == 0, fetched.stderr
        assert json.loads(fetched.stdout)["received"] == len(instances(study))
        again = qrclient(
            "move",
            node(orthanc),
            "-k",
            key,
            "--out",
            str(tmp_path),
            "--listen",
            listen,
            "--format",
            "json",
        )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["received"] == 0
    assert stored_uids(tmp_path) == instances(study)


def test_a_store_that_cannot_be_opened_is_one_line(orthanc: OrthancServer, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    result = qrclient(
        "get", node(orthanc), "-k", "StudyInstanceUID=1.2.3", "--out", str(not_a_directory)
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "cannot open the store" in result.stderr


def test_a_study_the_pacs_does_not_have_is_an_error(orthanc: OrthancServer, tmp_path: Path) -> None:
    result = qrclient(
        "get", node(orthanc), "-k", "StudyInstanceUID=1.2.3.4.5.6.7", "--out", str(tmp_path)
    )
    assert result.returncode == 4
    assert "no instances matching" in result.stderr
    assert "not found" in result.stdout


def test_move_from_in_a_node_and_as_an_option(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """move_from (node key or --move-from) adds addresses a PACS may deliver from; a
    value that is no address, network or host name is one line, exit 2."""
    peer = real_pacs.peer
    node = f'[nodes.pacs]\nae_title = "{peer.ae_title}"\nhost = "{peer.host}"\nport = {peer.port}\n'
    config = tmp_path / "config.toml"
    config.write_text(node + 'move_from = ["10.1.2.0/24", "pacs-b.example.org"]\n')
    assert load_config(config).nodes["pacs"].move_from == ("10.1.2.0/24", "pacs-b.example.org")
    config.write_text(node + 'move_from = "127.0.0.9"\n')
    study = find_patient(archive, "PAT008").studies[0]
    args = ["-k", f"StudyInstanceUID={study.study_instance_uid}", "--config", str(config)]
    listen = ["--listen", f"127.0.0.1:{listen_ports[0]}", "--out", str(tmp_path / "store")]
    moved = qrclient("move", "pacs", *args, *listen)
    assert moved.returncode == 0, moved.stderr
    assert stored_uids(tmp_path / "store") == instances(study)
    bad_option = qrclient("move", "pacs", *args, *listen, "--move-from", "not a host!")
    assert bad_option.returncode == 2
    assert bad_option.stderr.count("\n") == 1
    assert "--move-from 'not a host!'" in bad_option.stderr
    config.write_text(node + 'move_from = ["10.1.2.0/24", "no way!"]\n')
    bad_config = qrclient("move", "pacs", *args, *listen)
    assert bad_config.returncode == 2
    assert "line 5: nodes.pacs.move_from" in bad_config.stderr
    assert "Traceback" not in bad_option.stderr + bad_config.stderr

"""``qrclient get | move | retrieve`` as a user runs them, against the real Orthanc."""

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

from fixtures.dataset import Archive, StudySpec, find_patient
from fixtures.orthanc import OrthancServer
from tests.conftest import OUR_AE


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


def test_get_then_again_fetches_nothing(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT004").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    first = qrclient("get", node(orthanc), "-k", key, "--out", str(tmp_path), "--aet", OUR_AE)
    assert first.returncode == 0, first.stderr
    expected = instances(study)
    assert f"{len(expected)} instances received (0 already here)" in first.stdout
    assert stored_uids(tmp_path) == expected
    again = qrclient("get", node(orthanc), "-k", key, "--out", str(tmp_path), "--format", "json")
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
    without_config = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
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
    orthanc: OrthancServer,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
    command: str,
) -> None:
    """pydicom takes some 70 ms to import: a retrieve or an echo must not need it.
    Nor tomllib (some 5 ms) when there is no configuration file."""
    study = find_patient(archive, "PAT004").studies[0]
    args = [command, node(orthanc), "--aet", OUR_AE]
    if command != "echo":
        args += ["-k", f"StudyInstanceUID={study.study_instance_uid}", "--out", str(tmp_path)]
    if command == "move":
        args += ["--listen", f"127.0.0.1:{listen_ports[0]}"]
    assert_imports_neither_pydicom_nor_tomllib(args, tmp_path / "no-config")
    if command != "echo":
        assert stored_uids(tmp_path) == instances(study)


def test_move_to_our_listener(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    study = find_patient(archive, "PAT008").studies[0]
    result = qrclient(
        "move",
        node(orthanc),
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
    assert json.loads(result.stdout)["received"] == len(instances(study))
    assert stored_uids(tmp_path) == instances(study)


def test_move_to_an_unknown_destination_exits_4_with_the_fix(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT008").studies[0]
    result = qrclient(
        "move",
        node(orthanc),
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "--dest",
        "NOBODY",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 4, result.stderr
    assert "register" in result.stderr
    assert "Traceback" not in result.stderr


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
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "BIG001").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    command = [sys.executable, "-m", "qrclient", "get", node(orthanc), "-k", key]
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
    rest = qrclient("get", node(orthanc), "-k", key, "--out", str(tmp_path), "--format", "json")
    assert rest.returncode == 0, rest.stderr
    summary = json.loads(rest.stdout)
    assert summary["already_here"] == len(here)
    assert summary["received"] == 300 - len(here)
    assert stored_uids(tmp_path) == instances(study)
    assert os.path.isdir(tmp_path / ".qrclient")


def test_a_busy_listen_port_is_explained(orthanc: OrthancServer, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = qrclient(
            "move",
            node(orthanc),
            "-k",
            "StudyInstanceUID=1.2.3",
            "--out",
            str(tmp_path),
            "--listen",
            f"127.0.0.1:{port}",
        )
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--listen" in result.stderr
    assert "Traceback" not in result.stderr


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

"""The administrator's command-line rough edges (issue 16): a calling AE title per node,
-q on every command, Ctrl-C, a port that speaks HTTP, lenient input, the demo's config.

Every command runs as a real subprocess with its own configuration folder, against the
session's real Orthanc or DCMTK's dcmqrscp.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.dataset import Archive, find_patient
from fixtures.orthanc import OrthancServer, free_ports
from qrclient.cli import exit_codes
from qrclient.config import load_config
from qrclient.config.errors import ConfigError
from qrclient.tui.nodes import NodeBook
from tests.conftest import THIRD_PARTY_AE
from tests.test_cli_nodes import details, home, instances, ok, qrclient, stored
from tests.test_demo import demo_in_a_terminal, read_until

__all__ = ["home"]  # a fixture, used by name


def node_of(orthanc: OrthancServer) -> str:
    return f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"


# -- a calling AE title per node --------------------------------------------------------


def config_with_calling_ae(path: Path, orthanc: OrthancServer, listen_port: int) -> Path:
    path.write_text(
        'ae_title = "NOBODY"   # the file\'s: no PACS knows it\n'
        "[nodes.pacs]\n"
        f'ae_title = "{orthanc.aet}"\nhost = "{orthanc.host}"\nport = {orthanc.dicom_port}\n'
        f'calling_ae = "{THIRD_PARTY_AE}"\nlisten = "127.0.0.1:{listen_port}"\n'
        "[nodes.plain]\n"
        f'ae_title = "{orthanc.aet}"\nhost = "{orthanc.host}"\nport = {orthanc.dicom_port}\n',
        encoding="utf-8",
    )
    return path


def test_calling_ae_precedence_in_the_configuration(orthanc: OrthancServer, tmp_path: Path) -> None:
    config = load_config(config_with_calling_ae(tmp_path / "c.toml", orthanc, 11113))
    pacs, plain = config.nodes["pacs"], config.nodes["plain"]
    assert pacs.calling_ae == THIRD_PARTY_AE
    assert config.calling_ae(pacs) == THIRD_PARTY_AE  # the node's over the file's
    assert config.calling_ae(plain) == "NOBODY"  # the file's
    assert config.calling_ae(pacs, "OPTION") == "OPTION"  # --aet over both
    assert config.settings(pacs).calling_ae == THIRD_PARTY_AE

    # The UI resolves nodes the same way; --aet (given to the book) wins.
    def ui_calling_ae(book: NodeBook, name: str) -> str:
        settings = book.resolve(name).settings
        assert settings is not None
        return settings.calling_ae

    assert ui_calling_ae(NodeBook(config), "pacs") == THIRD_PARTY_AE
    assert ui_calling_ae(NodeBook(config), "plain") == "NOBODY"
    assert ui_calling_ae(NodeBook(config, calling_ae="GIVEN"), "pacs") == "GIVEN"


def test_a_bad_calling_ae_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[nodes.p]\nae_title = "P"\nhost = "h"\nport = 104\ncalling_ae = "WAY_TOO_LONG_AE_TITLE"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"line 5: nodes\.p\.calling_ae = .*1 to 16 characters"):
        load_config(bad)


def test_the_nodes_calling_ae_is_what_the_pacs_sees(
    home: Path,
    orthanc: OrthancServer,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
) -> None:
    """Orthanc knows THIRDPARTY at listen_ports[1] and not NOBODY: a C-MOVE to us by the
    node (whose calling_ae is THIRDPARTY) arrives only if the association said so."""
    config = str(config_with_calling_ae(tmp_path / "c.toml", orthanc, listen_ports[1]))
    logged = qrclient(home, "--config", config, "echo", "pacs", "-v")
    ok(logged)
    assert f"A-ASSOCIATE-RQ {THIRD_PARTY_AE} -> {orthanc.aet}" in logged.stderr
    overridden = qrclient(home, "--config", config, "echo", "pacs", "-v", "--aet", "OPTION")
    ok(overridden)
    assert f"A-ASSOCIATE-RQ OPTION -> {orthanc.aet}" in overridden.stderr
    plain = qrclient(home, "--config", config, "echo", "plain", "-v")
    ok(plain)
    assert f"A-ASSOCIATE-RQ NOBODY -> {orthanc.aet}" in plain.stderr

    study = find_patient(archive, "PAT008").studies[0]
    moved = qrclient(
        home,
        "--config",
        config,
        "move",
        "pacs",
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "-o",
        str(tmp_path / "store"),
        "--format",
        "json",
    )
    assert json.loads(ok(moved))["received"] == len(instances(study))
    assert stored(tmp_path / "store") == instances(study)


def test_nodes_add_calling_aet(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "nodes.toml"
    ok(
        qrclient(
            home, "nodes", "add", "pacs", "PACS@10.0.0.5:104", "--calling-aet", "WS12",
            "--config", str(config),
        )
    )  # fmt: skip
    assert 'calling_ae = "WS12"' in config.read_text(encoding="utf-8")
    shown = ok(qrclient(home, "nodes", "show", "pacs", "--config", str(config)))
    assert "calling AE   WS12" in shown
    as_json = json.loads(
        ok(qrclient(home, "nodes", "show", "pacs", "--config", str(config), "--format", "json"))
    )
    assert as_json["calling_ae"] == "WS12"
    assert as_json["ae_title"] == "PACS"  # the PACS's own, unchanged
    listed = ok(qrclient(home, "nodes", "list", "--config", str(config)))
    assert "CALLING-AE" in listed.splitlines()[0]
    assert "WS12" in listed.splitlines()[1]
    bad = qrclient(
        home, "nodes", "add", "other", "P@h:104", "--calling-aet", "A\\B", "--config", str(config)
    )
    assert bad.returncode == exit_codes.USAGE, details(bad)
    assert "--calling-aet" in bad.stderr
    assert "[nodes.other]" not in config.read_text(encoding="utf-8")


# -- a port that speaks HTTP ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("echo",),
        ("find", "-l", "study"),
        ("get", "-k", "StudyInstanceUID=1.2.3"),
        ("doctor", "--format", "json"),
    ],
    ids=lambda c: c[0],
)
def test_a_web_port_is_named_as_such(
    home: Path, orthanc: OrthancServer, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Someone gave the PACS's web port: every command says so where the answer to our
    A-ASSOCIATE-RQ is read, not 'unknown PDU type 0x48'."""
    web = f"{orthanc.aet}@{orthanc.host}:{orthanc.http_port}"
    out = ("-o", str(tmp_path / "store")) if command[0] == "get" else ()
    result = qrclient(home, command[0], web, *command[1:], *out)
    assert result.returncode == exit_codes.NETWORK, details(result)
    assert "Traceback" not in result.stderr
    said = result.stdout + result.stderr
    assert f"{orthanc.host}:{orthanc.http_port} speaks HTTP, not DICOM" in said, details(result)
    assert "'HTTP/1." in said  # the status line it answered, quoted
    assert "give the PACS's DICOM port" in said
    assert "0x48" not in said
    if command[0] == "doctor":
        report = json.loads(result.stdout)
        association = next(c for c in report["checks"] if c["name"] == "association")
        assert association["state"] == "failed"
        assert "speaks HTTP, not DICOM" in association["detail"]
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.dcm"))


# -- -q on every command ----------------------------------------------------------------


def quiet_ok(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 0 and nothing on stderr; returns stdout."""
    out = ok(result)
    assert result.stderr == "", details(result)
    return out


def test_quiet_network_commands(
    home: Path, orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    node = node_of(orthanc)
    assert quiet_ok(qrclient(home, "echo", node, "-q", "--count", "2")) == ""
    assert json.loads(quiet_ok(qrclient(home, "echo", node, "-q", "--format", "json")))["peer"]
    # Errors still say what happened.
    refused = qrclient(home, "echo", f"WRONG@{orthanc.host}:{orthanc.dicom_port}", "-q")
    assert refused.returncode == exit_codes.NETWORK
    assert "called AE title not recognised" in refused.stderr

    study = find_patient(archive, "PAT004").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    store = tmp_path / "store"
    assert quiet_ok(qrclient(home, "get", node, "-k", key, "-o", str(store), "-q")) == ""
    assert stored(store) == instances(study)
    again = json.loads(
        quiet_ok(qrclient(home, "get", node, "-k", key, "-o", str(store), "-q", "--format", "json"))
    )
    assert again["already_here"] == len(instances(study))

    matches = quiet_ok(qrclient(home, "find", node, "-l", "study", "-q", "-k", key, "-f", "csv"))
    assert study.study_instance_uid in matches


def test_quiet_doctor_prints_only_problems(
    home: Path, orthanc: OrthancServer, listen_ports: tuple[int, int]
) -> None:
    node = node_of(orthanc)
    listen = ("--listen", f"127.0.0.1:{listen_ports[0]}", "--move-wait", "5")
    healthy = qrclient(home, "doctor", node, "-q", *listen)
    assert quiet_ok(healthy) == ""
    sick = qrclient(home, "doctor", node, "-q", "--aet", "UNKNOWNAE", *listen)
    assert sick.returncode == exit_codes.FAILURE_STATUS, details(sick)
    lines = sick.stdout.splitlines()
    assert lines[0].startswith("  FAIL  C-MOVE to us"), details(sick)
    assert not any(line.startswith("  ok    ") for line in lines)
    assert "verdict: the PACS answers, but some checks failed" in lines
    assert any("register AE title UNKNOWNAE" in line for line in lines)


def test_quiet_store_and_nodes(
    home: Path, orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    assert (
        quiet_ok(
            qrclient(home, "nodes", "add", "p", node_of(orthanc), "--config", str(config), "-q")
        )
        == ""
    )
    assert "[nodes.p]" in config.read_text(encoding="utf-8")
    assert quiet_ok(qrclient(home, "nodes", "list", "-q")) == ""  # none: no hint either
    store = tmp_path / "store"
    study = find_patient(archive, "PAT003").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    quiet_ok(qrclient(home, "get", "p", "--config", str(config), "-k", key, "-o", str(store), "-q"))
    listing = quiet_ok(qrclient(home, "store", "ls", "-o", str(store), "-q"))
    assert study.study_instance_uid in listing
    assert " in " + str(store) not in listing  # no totals line
    assert quiet_ok(qrclient(home, "store", "verify", "-o", str(store), "-q")) == ""
    assert quiet_ok(qrclient(home, "store", "rebuild", "-o", str(store), "-q")) == ""
    assert quiet_ok(qrclient(home, "nodes", "remove", "p", "--config", str(config), "-q")) == ""
    assert "[nodes.p]" not in config.read_text(encoding="utf-8")


def test_quiet_demo_serves_without_its_request_log(home: Path) -> None:
    (port,) = free_ports(1)
    node = f"DEMO@127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "qrclient", "demo", "--serve", "--port", str(port), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            echo = qrclient(home, "echo", node, "-q")
            if echo.returncode == exit_codes.OK:
                break
            time.sleep(0.1)
        assert echo.returncode == exit_codes.OK, details(echo)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert out == ""  # no 'ready' line
    assert err == ""  # no request log, no 'stopped'


# -- the demo with a configuration file that does not exist yet --------------------------


def test_demo_opens_with_a_config_file_not_created_yet(tmp_path: Path) -> None:
    """$QRCLIENT_CONFIG names a file 'qrclient nodes add' would create: the demo opens
    (it needs no configuration), as 'nodes add' does, instead of stopping."""
    missing = tmp_path / "not-yet" / "config.toml"
    seen = bytearray()
    with demo_in_a_terminal(tmp_path, QRCLIENT_CONFIG=str(missing)) as (process, controller):
        assert read_until(controller, "DEMO@127.0.0.1:", seen), seen.decode(errors="replace")
        os.write(controller, b"\x11")  # Ctrl+Q
        assert process.wait(timeout=30) == 0
    assert "no such configuration file" not in seen.decode(errors="replace")
    assert not missing.exists()  # read as the defaults, not written

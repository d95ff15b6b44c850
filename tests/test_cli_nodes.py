"""Named nodes from the command line: ``qrclient nodes ...``, ``--config``, and commands
run by node name against the real Orthanc (session fixture ``orthanc``).

Every command runs as a real subprocess with its own configuration folder, so a user's
own configuration never leaks into a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from fixtures.dataset import Archive, StudySpec, all_studies, find_patient
from fixtures.orthanc import OrthancServer, free_ports
from fixtures.tls import make_pki
from qrclient.cli import exit_codes
from tests.conftest import OUR_AE
from tests.envs import unmeasured

TIMEOUT = 60.0

COMMENTED = """\
# Settings for the reading room workstation.
ae_title = "QRCLIENT"   # as registered on the PACS

# -- nodes --

[nodes.old]
ae_title = "OLDPACS"  # retired next year
host = "10.0.0.9"
port = 104
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty user configuration folder (XDG_CONFIG_HOME) for the subprocesses."""
    folder = tmp_path / "xdg"
    folder.mkdir()
    return folder


def qrclient(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "QRCLIENT_CONFIG"}
    environment.update({"XDG_CONFIG_HOME": str(home), "COLUMNS": "120", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
        check=False,
    )


def details(result: subprocess.CompletedProcess[str]) -> str:
    return f"\nexit {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, details(result)
    assert result.returncode == exit_codes.OK, details(result)
    return result.stdout


def usage_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr containing ``words``."""
    assert "Traceback" not in result.stderr + result.stdout, details(result)
    assert result.returncode == exit_codes.USAGE, details(result)
    assert result.stdout == "", details(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, details(result)
    assert lines[0].startswith("qrclient"), details(result)
    assert ": error: " in lines[0], details(result)
    for word in words:
        assert word in lines[0], details(result)
    return lines[0]


def default_file(home: Path) -> Path:
    return home / "qrclient" / "config.toml"


# -- nodes add / list / show / remove -------------------------------------------------


def test_add_list_show_remove_in_the_default_file(home: Path) -> None:
    assert qrclient(home, "nodes", "list").stderr.startswith("qrclient: no named nodes in ")
    assert json.loads(ok(qrclient(home, "nodes", "list", "--format", "json"))) == []

    added = ok(
        qrclient(
            home,
            "nodes",
            "add",
            "pacs",
            "ORTHANC@127.0.0.1:4242",
            "--method",
            "move",
            "--dest",
            "ARCHIVE",
            "--listen",
            "127.0.0.1:11200",
            "--parallel",
            "4",
            "-m",
            "patient",
            "--dimse-timeout",
            "90",
        )
    )
    assert added == f"added node pacs (ORTHANC@127.0.0.1:4242) in {default_file(home)}\n"
    ok(qrclient(home, "nodes", "add", "v6", "PACS6@[::1]:104"))

    table = ok(qrclient(home, "nodes", "list")).splitlines()
    assert table[0].split() == [
        "NAME",
        "NODE",
        "CALLING-AE",
        "MODEL",
        "METHOD",
        "DESTINATION",
        "LISTEN",
        "PARALLEL",
        "TLS",
    ]
    assert table[1].split() == [
        "pacs",
        "ORTHANC@127.0.0.1:4242",
        "QRCLIENT",
        "patient",
        "move",
        "ARCHIVE",
        "127.0.0.1:11200",
        "4",
        "off",
    ]
    assert table[2].split() == [
        "v6",
        "PACS6@[::1]:104",
        "QRCLIENT",
        "study",
        "auto",
        "-",
        "0.0.0.0:11113",
        "2",
        "off",
    ]

    shown = json.loads(ok(qrclient(home, "nodes", "show", "pacs", "--format", "json")))
    assert shown == {
        "name": "pacs",
        "configured": True,
        "node": "ORTHANC@127.0.0.1:4242",
        "ae_title": "ORTHANC",
        "host": "127.0.0.1",
        "port": 4242,
        "model": "patient",
        "method": "move",
        "destination": "ARCHIVE",
        "calling_ae": "QRCLIENT",
        "listen": "127.0.0.1:11200",
        "parallel": 4,
        "timeouts": {"connect": 10.0, "association": 30.0, "dimse": 90.0, "network": 30.0},
        "tls": None,
    }
    text = ok(qrclient(home, "nodes", "show", "v6"))
    assert "node         PACS6@[::1]:104\n" in text
    assert "destination  QRCLIENT (ours: our storage listener)\n" in text
    assert f"file         {default_file(home)}\n" in text
    listed = json.loads(ok(qrclient(home, "nodes", "list", "--format", "json")))
    assert [node["name"] for node in listed] == ["pacs", "v6"]

    removed = ok(qrclient(home, "nodes", "remove", "pacs"))
    assert removed == f"removed node pacs from {default_file(home)}\n"
    listed = json.loads(ok(qrclient(home, "nodes", "list", "--format", "json")))
    assert [node["name"] for node in listed] == ["v6"]
    usage_error(qrclient(home, "nodes", "show", "pacs"), "'pacs'", "configured: v6")


def test_add_and_remove_keep_comments_and_other_content(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(COMMENTED)
    ok(qrclient(home, "nodes", "add", "new", "NEW@pacs.example.org:11112", "--config", str(config)))
    text = config.read_text()
    assert text == COMMENTED + (
        '\n[nodes.new]\nae_title = "NEW"\nhost = "pacs.example.org"\nport = 11112\n'
    )
    ok(qrclient(home, "nodes", "remove", "old", "--config", str(config)))
    assert config.read_text() == (
        '# Settings for the reading room workstation.\nae_title = "QRCLIENT"   # as registered '
        'on the PACS\n\n# -- nodes --\n\n[nodes.new]\nae_title = "NEW"\nhost = '
        '"pacs.example.org"\nport = 11112\n'
    )
    assert not default_file(home).exists()


def test_replace_needs_the_flag(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(COMMENTED)
    usage_error(
        qrclient(home, "--config", str(config), "nodes", "add", "old", "X@h:1"),
        "node 'old' already exists",
        "--replace",
    )
    assert config.read_text() == COMMENTED
    replaced = ok(
        qrclient(home, "--config", str(config), "nodes", "add", "old", "X@h:1", "--replace")
    )
    assert replaced.startswith("replaced node old (X@h:1) in ")
    assert config.read_text() == COMMENTED.replace(
        'ae_title = "OLDPACS"  # retired next year\nhost = "10.0.0.9"\nport = 104\n',
        'ae_title = "X"\nhost = "h"\nport = 1\n',
    )


BAD_ADD = [
    pytest.param(("bad name", "X@h:1"), ("'bad name'", "letters, digits"), id="name-space"),
    pytest.param(("a.b", "X@h:1"), ("'a.b'",), id="name-dot"),
    pytest.param(("x@y", "X@h:1"), ("'x@y'",), id="name-at"),
    pytest.param(("n", "X@h"), ("'X@h'", "AET@host:port"), id="no-port"),
    pytest.param(("n", "X@h:70000"), ("70000",), id="port-range"),
    pytest.param(("n", "SEVENTEEN_CHARS_Q@h:1"), ("SEVENTEEN_CHARS_Q",), id="long-aet"),
    pytest.param(("n", "X@h:1", "--parallel", "0"), ("--parallel 0",), id="parallel-0"),
    pytest.param(("n", "X@h:1", "--parallel", "many"), ("'many'",), id="parallel-word"),
    pytest.param(("n", "X@h:1", "--listen", "h:port"), ("'port'",), id="listen"),
    pytest.param(("n", "X@h:1", "-m", "flat"), ("'flat'",), id="model"),
    pytest.param(("n", "X@h:1", "--method", "fetch"), ("'fetch'",), id="method"),
    pytest.param(("n", "X@h:1", "--dest", "SEVENTEEN_CHARS_D"), ("SEVENTEEN_CHARS_D",), id="dest"),
    pytest.param(("n", "X@h:1", "--dimse-timeout=-3"), ("--dimse-timeout -3",), id="timeout"),
    pytest.param(("n",), ("AET@HOST:PORT",), id="missing-address"),
]


@pytest.mark.parametrize(("args", "words"), BAD_ADD)
def test_bad_add_writes_nothing(
    home: Path, tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(COMMENTED)
    before = config.stat()
    usage_error(qrclient(home, "nodes", "add", *args, "--config", str(config)), *words)
    assert config.read_text() == COMMENTED
    assert config.stat().st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "xdg"]
    usage_error(qrclient(home, "nodes", "add", *args))
    assert not default_file(home).exists()


def test_remove_and_show_unknown_names(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(COMMENTED)
    usage_error(
        qrclient(home, "nodes", "remove", "nope", "--config", str(config)),
        "no node named 'nope'",
        "configured: old",
    )
    usage_error(qrclient(home, "nodes", "show", "nope", "--config", str(config)), "'nope'")
    usage_error(qrclient(home, "nodes", "remove", "old"), "no such configuration file")
    assert config.read_text() == COMMENTED


def test_nodes_needs_an_action(home: Path) -> None:
    usage_error(qrclient(home, "nodes"), "ACTION")


# -- which file ------------------------------------------------------------------------


def test_config_before_or_after_the_command_and_from_the_environment(
    home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text(COMMENTED)
    for args, env in (
        (("--config", str(config), "nodes", "list"), None),
        (("nodes", "list", "--config", str(config)), None),
        (("nodes", "list"), {"QRCLIENT_CONFIG": str(config)}),
    ):
        assert ok(qrclient(home, *args, env=env)).splitlines()[1].split()[:2] == [
            "old",
            "OLDPACS@10.0.0.9:104",
        ], args
    # The option wins over the environment.
    other = tmp_path / "other.toml"
    other.write_text("")
    result = qrclient(
        home, "nodes", "list", "--config", str(other), env={"QRCLIENT_CONFIG": str(config)}
    )
    assert result.stdout == ""
    assert str(other) in result.stderr


def test_missing_named_file_is_exit_2(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    usage_error(qrclient(home, "--config", str(missing), "echo", "X@127.0.0.1:1"), str(missing))
    usage_error(
        qrclient(home, "nodes", "list", env={"QRCLIENT_CONFIG": str(missing)}),
        f"{missing}: no such configuration file (named by $QRCLIENT_CONFIG)",
    )


def test_help_does_not_read_the_configuration(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "qrclient", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=unmeasured(),
    )
    assert result.returncode == 0, result.stderr
    assert "--config FILE" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "qrclient.cli.main" in imported
    assert not [name for name in imported if name.startswith("qrclient.config")]
    assert "tomllib" not in imported


# -- a broken file: one line, file + line + field, exit 2, for every command -------------

BROKEN = '# ok so far\n[nodes.pacs]\nae_title = "ORTHANC"\nhost = "127.0.0.1"\nport = 70000\n'
BROKEN_SYNTAX = '[nodes.pacs]\nae_title = "ORTHANC\nport = 1\n'


@pytest.mark.parametrize(
    "command",
    [
        ("echo", "pacs"),
        ("echo", "X@127.0.0.1:1"),
        ("find", "pacs", "-l", "study"),
        ("get", "pacs", "-k", "StudyInstanceUID=1.2.3"),
        ("move", "pacs", "-k", "StudyInstanceUID=1.2.3"),
        ("retrieve", "pacs", "-k", "StudyInstanceUID=1.2.3"),
        ("nodes", "list"),
        ("nodes", "show", "pacs"),
        ("nodes", "add", "other", "X@h:1"),
        ("nodes", "remove", "pacs"),
    ],
)
def test_broken_config_is_one_line_for_every_command(
    home: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = tmp_path / "config.toml"
    for text, where in (
        (BROKEN, f"{config} line 5: nodes.pacs.port = 70000: expected a TCP port 1-65535"),
        (BROKEN_SYNTAX, f"{config} line 2, column 20: nodes.pacs.ae_title: illegal character"),
    ):
        config.write_text(text)
        usage_error(qrclient(home, *command, env={"QRCLIENT_CONFIG": str(config)}), where)
        assert config.read_text() == text


# -- commands by node name against the real Orthanc -------------------------------------


def write_config(path: Path, orthanc: OrthancServer, listen_port: int, **extra: str) -> Path:
    lines = [f"{key} = {value}" for key, value in extra.items()]
    path.write_text(
        "\n".join(
            [
                *lines,
                "",
                "[nodes.pacs]",
                f'ae_title = "{orthanc.aet}"',
                f'host = "{orthanc.host}"',
                f"port = {orthanc.dicom_port}",
                f'listen = "127.0.0.1:{listen_port}"',
                'method = "move"',
                "timeouts = { dimse = 50 }",
                "",
                "[nodes.wrong]",
                'ae_title = "NOT_ORTHANC"',
                f'host = "{orthanc.host}"',
                f"port = {orthanc.dicom_port}",
                "",
            ]
        )
    )
    return path


@pytest.fixture
def configured(orthanc: OrthancServer, tmp_path: Path, listen_ports: tuple[int, int]) -> Path:
    store = tmp_path / "configured-store"
    return write_config(
        tmp_path / "config.toml", orthanc, listen_ports[0], store=json.dumps(str(store))
    )


def test_echo_by_name(home: Path, orthanc: OrthancServer, configured: Path) -> None:
    out = ok(qrclient(home, "--config", str(configured), "echo", "pacs"))
    address = f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"
    assert out.startswith(f"association with {address} accepted in ")
    # The node's called AE title is what the PACS checks: the wrong one is rejected.
    wrong = qrclient(home, "--config", str(configured), "echo", "wrong")
    assert wrong.returncode == exit_codes.NETWORK, details(wrong)
    assert "called AE title not recognised" in wrong.stderr


def test_our_ae_title_and_timeouts_from_the_file(
    home: Path, orthanc: OrthancServer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    config = write_config(
        tmp_path / "c.toml", orthanc, listen_ports[0], ae_title='"FROMFILE"', max_pdu="32768"
    )
    logged = qrclient(home, "--config", str(config), "echo", "pacs", "-v")
    ok(logged)
    assert "A-ASSOCIATE-RQ FROMFILE -> " in logged.stderr
    assert ", max PDU 32768\n" in logged.stderr
    overridden = qrclient(home, "--config", str(config), "echo", "pacs", "-v", "--aet", "OPTION")
    ok(overridden)
    assert "A-ASSOCIATE-RQ OPTION -> " in overridden.stderr
    # AET@host:port also takes our AE title from the file.
    address = f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"
    direct = qrclient(home, "--config", str(config), "echo", address, "-v")
    ok(direct)
    assert "A-ASSOCIATE-RQ FROMFILE -> " in direct.stderr


def test_find_by_name(
    home: Path, archive: Archive, configured: Path, orthanc: OrthancServer
) -> None:
    result = qrclient(
        home, "find", "pacs", "-l", "study", "-f", "ndjson", "--config", str(configured)
    )
    rows = [json.loads(line) for line in ok(result).splitlines()]
    found = {row["0020000D"]["Value"][0] for row in rows}
    assert found == {study.study_instance_uid for _, study in all_studies(archive)}
    assert f"qrclient: {len(found)} matches, " in result.stderr


def stored(root: Path) -> set[str]:
    files = [p for p in root.rglob("*.dcm") if ".qrclient" not in p.parts]
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


def instances(study: StudySpec) -> set[str]:
    return {i.sop_instance_uid for s in study.series for i in s.instances}


def test_get_by_name_into_the_configured_store(
    home: Path, archive: Archive, configured: Path, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT004").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    result = qrclient(
        home, "--config", str(configured), "get", "pacs", "-k", key, "--format", "json"
    )
    summary = json.loads(ok(result))
    store = tmp_path / "configured-store"
    assert summary["store"] == str(store)
    assert summary["received"] == len(instances(study))
    assert stored(store) == instances(study)
    # --out on the command line wins over the file's store.
    elsewhere = tmp_path / "option-store"
    again = qrclient(
        home, "--config", str(configured), "get", "pacs", "-k", key, "-o", str(elsewhere)
    )
    ok(again)
    assert stored(elsewhere) == instances(study)


def test_retrieve_by_name_uses_the_nodes_method_and_listener(
    home: Path, archive: Archive, configured: Path, tmp_path: Path
) -> None:
    """The node says method = "move" and where our listener is (the port Orthanc knows
    for our AE title): a plain ``retrieve pacs`` moves the study to us."""
    study = find_patient(archive, "PAT008").studies[0]
    result = qrclient(
        home,
        "--config",
        str(configured),
        "retrieve",
        "pacs",
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "-v",
        "--format",
        "json",
    )
    summary = json.loads(ok(result))
    assert summary["received"] == len(instances(study))
    assert "\n-> C-MOVE-RQ " in result.stderr
    assert "C-GET-RQ" not in result.stderr
    assert stored(tmp_path / "configured-store") == instances(study)


def test_listen_option_overrides_the_node(
    home: Path, archive: Archive, configured: Path, tmp_path: Path
) -> None:
    """--listen on a port Orthanc does not send to: nothing arrives, so the option (not
    the node's listen) was used."""
    study = find_patient(archive, "PAT008").studies[0]
    (unused,) = free_ports(1)
    result = qrclient(
        home,
        "--config",
        str(configured),
        "move",
        "pacs",
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "--listen",
        f"127.0.0.1:{unused}",
        "--aet",
        OUR_AE,
        "--format",
        "json",
        "-o",
        str(tmp_path / "nothing"),
    )
    assert result.returncode != exit_codes.OK, details(result)
    assert json.loads(result.stdout)["received"] == 0


def test_add_with_tls_options(home: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    config = tmp_path / "config.toml"

    def nodes(*args: str) -> subprocess.CompletedProcess[str]:
        return qrclient(home, "--config", str(config), "nodes", *args)

    ok(nodes("add", "plain", "X@h:1", "--tls"))
    relative_ca = os.path.relpath(pki.ca.cert, Path.cwd())
    ok(
        nodes(
            *("add", "secure", "Y@h:2", "--tls-ca", relative_ca),
            *("--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)),
            *("--tls-server-name", "pacs.local"),
        )
    )
    text = config.read_text()
    assert '[nodes.plain]\nae_title = "X"\nhost = "h"\nport = 1\ntls = true\n' in text
    assert f'[nodes.secure.tls]\nca = "{pki.ca.cert}"\n' in text  # absolute
    shown = json.loads(ok(nodes("show", "secure", "--format", "json")))
    assert shown["tls"] == {
        "ca": str(pki.ca.cert),
        "cert": str(pki.client.cert),
        "key": str(pki.client.key),
        "verify": True,
        "server_name": "pacs.local",
    }
    assert [line.split()[-1] for line in ok(nodes("list")).splitlines()] == ["TLS", "on", "on"]
    # A file that is not a PEM certificate: refused, nothing written.
    usage_error(nodes("add", "bad", "Z@h:3", "--tls-ca", str(config)), str(config))
    assert config.read_text() == text

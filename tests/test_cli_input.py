"""Bad command-line input: refused with exit code 2 and one line on stderr, before any I/O.

Each case runs ``python -m qrclient`` as a real subprocess; no PACS is needed.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.orthanc import free_ports
from qrclient import __version__
from qrclient.cli.main import _command_in, build_parser

TIMEOUT = 60.0
NODE = "{node}"  # replaced by an AET@127.0.0.1:port address in each test


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], names: str) -> None:
    """Exit 2, nothing on stdout, exactly one stderr line that names the bad value."""
    details = f"\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert "Traceback" not in result.stderr + result.stdout, details
    assert result.returncode == 2, details
    assert result.stdout == "", details
    lines = result.stderr.splitlines()
    assert len(lines) == 1, details
    assert result.stderr.endswith("\n"), details
    assert names in lines[0], details


def with_node(args: tuple[str, ...], node: str) -> list[str]:
    return [arg.replace(NODE, node) for arg in args]


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: a case wrongly accepted fails fast with exit 3."""
    (port,) = free_ports(1)
    return port


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain TCP listener; the kernel completes any connection into its backlog."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def connection_pending(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0.5)
    return bool(readable)


BAD_INPUT = [
    pytest.param(
        ("echo", "SEVENTEEN_CHARS_A@127.0.0.1:{port}"),
        "SEVENTEEN_CHARS_A",
        id="ae-title-17-chars-in-node",
    ),
    pytest.param(
        ("echo", "--aet", "SEVENTEEN_CHARS_B", NODE),
        "SEVENTEEN_CHARS_B",
        id="ae-title-17-chars-in-aet",
    ),
    pytest.param(
        ("find", "-l", "study", "--aet", "SEVENTEEN_CHARS_C", NODE),
        "SEVENTEEN_CHARS_C",
        id="ae-title-17-chars-in-aet-find",
    ),
    pytest.param(("echo", "PACS@127.0.0.1:70000"), "70000", id="bad-port-out-of-range"),
    pytest.param(("echo", "PACS@127.0.0.1:http"), "http", id="bad-port-not-a-number"),
    pytest.param(("echo", "PACS@127.0.0.1"), "PACS@127.0.0.1", id="missing-port"),
    pytest.param(("echo", "127.0.0.1:{port}"), "127.0.0.1:", id="missing-ae-title"),
    pytest.param(
        ("find", "-l", "study", "-k", "PatientNam=Smith", NODE),
        "PatientNam",
        id="unknown-keyword",
    ),
    pytest.param(("find", "-l", "everything", NODE), "everything", id="bad-level"),
    pytest.param(
        ("find", "-l", "study", "-m", "hierarchical", NODE), "hierarchical", id="bad-model"
    ),
    pytest.param(("find", "-l", "patient", NODE), "PATIENT", id="patient-level-study-root"),
    pytest.param(
        ("find", "-l", "study", "-k", "StudyDate=20241231-20240101", NODE),
        "20241231-20240101",
        id="bad-date-range",
    ),
    pytest.param(
        ("find", "-l", "study", "-k", "StudyDate=20241301", NODE),
        "20241301",
        id="bad-date",
    ),
    pytest.param(
        ("find", "-l", "series", "-k", "StudyInstanceUID=1.2.840.*", NODE),
        "1.2.840.*",
        id="wildcard-in-uid",
    ),
    pytest.param(
        # Modality=ct is read as CT with a note (test_lenient); this cannot be mended.
        ("find", "-l", "series", "-k", "Modality=c-t", NODE),
        "'c-t'",
        id="bad-modality",
    ),
    pytest.param(
        ("find", "-l", "study", "-k", "PatientID=1", "-k", "PatientID=2", NODE),
        "PatientID",
        id="conflicting-values",
    ),
    pytest.param(("echo", "--count", "0", NODE), "--count 0", id="count-0"),
    pytest.param(("echo", "--count", "many", NODE), "'many'", id="count-not-a-number"),
    pytest.param(("echo", "--connect-timeout", "-5", NODE), "-5", id="negative-connect-timeout"),
    pytest.param(
        ("find", "-l", "study", "--dimse-timeout=-1", NODE), "-1", id="negative-dimse-timeout"
    ),
    pytest.param(("echo", "--max-pdu", "10", NODE), "--max-pdu 10", id="max-pdu-10"),
    pytest.param(("echo", "--frobnicate", NODE), "--frobnicate", id="unknown-option"),
    pytest.param(("find", NODE), "--level", id="missing-required-level"),
    pytest.param(("echo",), "NODE", id="missing-node"),
    pytest.param(("frobnicate", NODE), "frobnicate", id="unknown-subcommand"),
]


@pytest.mark.parametrize(("args", "names"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], names: str, closed_port: int) -> None:
    node = f"PACS@127.0.0.1:{closed_port}"
    argv = [arg.replace("{port}", str(closed_port)) for arg in with_node(args, node)]
    assert_usage_error(run_cli(*argv), names)


@pytest.mark.parametrize(
    "args",
    [
        ("echo", "--count", "0", NODE),
        ("echo", "--max-pdu", "10", NODE),
        ("echo", "--aet", "SEVENTEEN_CHARS_B", NODE),
        ("find", "-l", "study", "-k", "StudyDate=20241231-20240101", NODE),
        ("find", "-l", "study", "-k", "PatientNam=Smith", NODE),
        ("find", "-l", "image", "-m", "hierarchical", NODE),
    ],
)
def test_bad_input_opens_no_connection(args: tuple[str, ...], listener: socket.socket) -> None:
    node = f"PACS@127.0.0.1:{listener.getsockname()[1]}"
    result = run_cli(*with_node(args, node))
    assert result.returncode == 2, result.stderr
    assert not connection_pending(listener), "bad input must be refused before connecting"


def test_value_on_binary_vr_refused_before_connecting(listener: socket.socket) -> None:
    """``-k PixelData=abc`` cannot be encoded: refuse it as input, do not connect and crash."""
    node = f"PACS@127.0.0.1:{listener.getsockname()[1]}"
    result = run_cli(
        "find",
        "-l",
        "image",
        "--connect-timeout",
        "2",
        "--association-timeout",
        "2",
        "-k",
        "StudyInstanceUID=1.2.3",
        "-k",
        "SeriesInstanceUID=1.2.3.4",
        "-k",
        "PixelData=abc",
        node,
    )
    assert_usage_error(result, "PixelData")
    assert not connection_pending(listener), "bad input must be refused before connecting"


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "echo" in result.stdout
    assert "find" in result.stdout
    assert "exit codes" in result.stdout


@pytest.mark.parametrize("command", ["echo", "find"])
def test_command_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "NODE" in result.stdout
    assert "--aet" in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"qrclient {__version__}"
    assert result.stderr == ""


def test_no_command_exits_2() -> None:
    result = run_cli()
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "echo" in output
    assert "find" in output


def test_no_command_usage_goes_to_stderr() -> None:
    """A usage error writes its diagnostics to stderr; stdout stays for results."""
    result = run_cli()
    assert result.returncode == 2
    assert result.stdout == "", "an error exit must not print its usage text on stdout"
    assert result.stderr.strip() != ""


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["get", "PACS", "-k", "PatientID=1"], "get"),
        (["--config", "echo", "find", "PACS", "-l", "study"], "find"),  # a file named "echo"
        (["--config=c.toml", "nodes", "list"], "nodes"),
        (["--version"], ""),
        ([], ""),
    ],
)
def test_only_the_named_commands_options_are_built(argv: list[str], command: str) -> None:
    """The parser adds the options of the command it will run: it parses as the whole."""
    assert _command_in(argv) == command
    if command:
        assert build_parser(command).parse_args(argv) == build_parser().parse_args(argv)


# -- limits on input ------------------------------------------------------------------


def _uids(count: int) -> str:
    return "\\".join(f"1.2.826.0.1.3680043.8.498.{10**30 + n}" for n in range(count))


def test_a_uid_list_one_request_cannot_carry_is_refused_before_connecting(
    listener: socket.socket,
) -> None:
    node = f"PACS@127.0.0.1:{listener.getsockname()[1]}"
    too_many = _uids(1200)  # 69,599 bytes: a UI value's length field holds 65,535
    result = run_cli("find", node, "-l", "series", "-k", f"StudyInstanceUID={too_many}")
    assert_usage_error(result, "StudyInstanceUID: 1,200 values of 69,599 bytes")
    assert "split them over several queries" in result.stderr
    assert not connection_pending(listener), "refused before connecting"
    # A list that fits goes out as it is (to a peer that then never answers).
    fits = run_cli(
        "find", node, "-l", "series", "-k", f"StudyInstanceUID={_uids(1000)}",
        "--association-timeout", "0.5",
    )  # fmt: skip
    assert fits.returncode == 3, fits.stderr
    assert "association timeout" in fits.stderr


CONFIG_CASES = [
    pytest.param(
        "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply", id="deep-array"
    ),
    pytest.param(
        "a = " + "{b = " * 50_000 + "1" + "}" * 50_000 + "\n", "nested too deeply", id="deep-table"
    ),
    pytest.param('store = "/tmp/a\\u0000b"\n', 'store = "/tmp/a\\u0000b"', id="nul-in-store"),
    pytest.param(
        '[nodes.p]\nae_title = "P"\nhost = "127.0.0.1"\nport = 104\ntls = { ca = "a\\u0000" }\n',
        "nodes.p.tls.ca",
        id="nul-in-ca-file",
    ),
    pytest.param(
        '[nodes.p]\nae_title = "P"\nhost = "127.0.0.1"\nport = 104\n'
        'tls = { server_name = "pacs\\u0000.local" }\n',
        "nodes.p.tls.server_name",
        id="nul-in-server-name",
    ),
    pytest.param("# " + "x" * (1 << 20) + "\n", "larger than 1 MiB", id="huge"),
]


@pytest.mark.parametrize(("text", "names"), CONFIG_CASES)
@pytest.mark.parametrize("command", ["echo", "get", "tui", "nodes"])
def test_a_configuration_that_cannot_be_used_is_one_line_exit_2(
    text: str, names: str, command: str, tmp_path: Path, listener: socket.socket
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    node = f"PACS@127.0.0.1:{listener.getsockname()[1]}"
    argv = {
        "echo": ["echo", node],
        "get": ["get", node, "-k", "StudyInstanceUID=1.2.3", "-o", str(tmp_path / "store")],
        "tui": ["tui", node],  # refused before the UI starts
        "nodes": ["nodes", "list"],
    }[command]
    result = run_cli("--config", str(config), *argv)
    assert_usage_error(result, names)
    assert str(config) in result.stderr
    assert not connection_pending(listener)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_device_as_configuration_is_refused_without_reading_it_all() -> None:
    assert_usage_error(run_cli("--config", "/dev/zero", "nodes", "list"), "larger than 1 MiB")


@pytest.mark.parametrize("name", [".pacs", "pacs..local", "pacs local", "-pacs"])
def test_a_tls_server_name_that_is_no_host_name_is_refused(name: str, closed_port: int) -> None:
    result = run_cli("echo", f"PACS@127.0.0.1:{closed_port}", f"--tls-server-name={name}")
    assert_usage_error(result, f"--tls-server-name: host {name!r}")

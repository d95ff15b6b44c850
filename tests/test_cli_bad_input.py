"""Bad input to every command, as a table: one stderr line naming the value, exit code 2.

Runs ``qrclient.cli.main.main`` in-process (the table is long; a subprocess per case
would cost minutes; tests/test_cli_input.py runs a selection as real subprocesses).
Each case also checks there is no side effect: no connection attempt (the node is a
listener that records connections), nothing written anywhere (the working directory and
the default data directory are an empty temporary directory), nothing on stdout.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrclient.cli.main import main

NETWORK_COMMANDS = ("echo", "find", "get", "move", "retrieve", "doctor")
RETRIEVE_COMMANDS = ("get", "move", "retrieve")
MOVE_COMMANDS = ("move", "retrieve")
NODE = "{node}"  # replaced by PACS@127.0.0.1:<the listener's port>
OUT = "{out}"  # replaced by a store directory that must not appear


def minimal(command: str) -> list[str]:
    """Arguments that make ``command`` valid, so only the case's own value is wrong."""
    if command == "find":
        return ["-l", "study"]
    if command in RETRIEVE_COMMANDS:
        return ["-k", "StudyInstanceUID=1.2.3", "--out", OUT]
    return []


def for_commands(
    commands: tuple[str, ...], name: str, args: list[str], names: str, *, node: str = NODE
) -> list[object]:
    """One case per command: its valid arguments plus ``args`` (and the node)."""
    return [
        pytest.param([command, node, *minimal(command), *args], names, id=f"{command}-{name}")
        for command in commands
    ]


def node_cases(name: str, node: str, names: str) -> list[object]:
    return for_commands(NETWORK_COMMANDS, name, [], names, node=node)


def option_cases(name: str, args: list[str], names: str) -> list[object]:
    return for_commands(NETWORK_COMMANDS, name, args, names)


CASES: list[object] = [
    # The node: AE title, host, port.
    *node_cases("ae-17-chars", "SEVENTEEN_CHARS_X@127.0.0.1:104", "SEVENTEEN_CHARS_X"),
    *node_cases("ae-backslash", "PA\\CS@127.0.0.1:104", "PA\\\\CS"),
    *node_cases("ae-control-char", "PA\x07CS@127.0.0.1:104", "PA\\x07CS"),
    *node_cases("ae-empty", "@127.0.0.1:104", "empty called AE title"),
    *node_cases("ae-blank", "   @127.0.0.1:104", "empty called AE title"),
    *node_cases("ae-non-ascii", "PACSÉ@127.0.0.1:104", "PACSÉ"),
    *node_cases("host-bad-chars", "PACS@bad_host!:104", "bad_host!"),
    *node_cases("host-ipv6-unbracketed", "PACS@::1:104", "brackets"),
    *node_cases("host-bad-ipv6", "PACS@[::zz]:104", "[::zz]"),
    *node_cases("host-leading-dash", "PACS@-pacs:104", "-pacs"),
    *node_cases("host-too-long", "PACS@" + "a" * 254 + ":104", "a" * 254),
    *node_cases("port-0", "PACS@127.0.0.1:0", "port 0"),
    *node_cases("port-70000", "PACS@127.0.0.1:70000", "70000"),
    *node_cases("port-text", "PACS@127.0.0.1:dicom", "'dicom'"),
    *node_cases("port-negative", "PACS@127.0.0.1:-4", "'-4'"),
    *node_cases("port-missing", "PACS@127.0.0.1", "PACS@127.0.0.1"),
    *node_cases("no-at", "127.0.0.1:104", "node '127.0.0.1:"),
    # Our AE title and the association options.
    *option_cases("aet-too-long", ["--aet", "SEVENTEEN_CHARS_Y"], "SEVENTEEN_CHARS_Y"),
    *option_cases("aet-backslash", ["--aet", "A\\B"], "A\\\\B"),
    *option_cases("aet-control-char", ["--aet", "A\tB"], "A\\tB"),
    *option_cases("aet-empty", ["--aet", ""], "empty calling AE title"),
    *option_cases("max-pdu-text", ["--max-pdu", "big"], "'big'"),
    *option_cases("max-pdu-small", ["--max-pdu", "100"], "--max-pdu 100"),
    *option_cases("max-pdu-huge", ["--max-pdu", "4294967296"], "--max-pdu 4294967296"),
    *option_cases("connect-timeout-0", ["--connect-timeout", "0"], "--connect-timeout 0"),
    *option_cases("dimse-timeout-negative", ["--dimse-timeout=-1"], "--dimse-timeout -1"),
    *option_cases("network-timeout-text", ["--network-timeout", "soon"], "'soon'"),
    *option_cases("association-timeout-nan", ["--association-timeout", "nan"], "nan"),
    *option_cases("association-timeout-inf", ["--association-timeout", "inf"], "inf"),
    *option_cases("dimse-timeout-huge", ["--dimse-timeout", "1e9"], "--dimse-timeout 1e+09"),
    *option_cases("unknown-option", ["--frobnicate"], "--frobnicate"),
    # echo
    pytest.param(["echo", NODE, "--count", "0"], "--count 0", id="echo-count-0"),
    pytest.param(["echo", NODE, "--count", "x"], "'x'", id="echo-count-text"),
    pytest.param(["echo", NODE, "--format", "xml"], "'xml'", id="echo-format"),
    # find: levels, models, keys, VRs, dates, UIDs
    pytest.param(["find", NODE], "--level", id="find-no-level"),
    pytest.param(["find", NODE, "-l", "studies"], "'studies'", id="find-bad-level"),
    pytest.param(["find", NODE, "-l", ""], "''", id="find-empty-level"),
    pytest.param(["find", NODE, "-l", "study", "-m", "flat"], "'flat'", id="find-bad-model"),
    pytest.param(["find", NODE, "-l", "patient"], "PATIENT", id="find-patient-in-study-root"),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "PatientNme=X"], "PatientNme", id="find-bad-keyword"
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "(zzzz,0010)=X"], "(zzzz,0010)", id="find-bad-tag"
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "0010,001=X"], "0010,001", id="find-short-tag"
    ),
    pytest.param(["find", NODE, "-l", "study", "-k", "=X"], "'=X'", id="find-empty-keyword"),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "StudyDate=20241301"], "20241301", id="find-bad-date"
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "StudyDate=2024-13-01"],  # 2024-01-01 is read
        "2024-13-01",
        id="find-impossible-date",
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "StudyDate=20240201-20240101"],
        "20240201-20240101",
        id="find-reversed-range",
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "StudyDate=20240101-20240230"],
        "20240230",
        id="find-range-bad-end",
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "StudyTime=250000"], "250000", id="find-bad-time"
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "PatientID=" + "9" * 65],
        "PatientID='999",
        id="find-lo-too-long",
    ),
    pytest.param(
        # Modality=ct is read as CT (with a note); a value upper case cannot mend is not.
        ["find", NODE, "-l", "series", "-k", "Modality=c-t"],
        "'c-t'",
        id="find-bad-cs",
    ),
    pytest.param(
        ["find", NODE, "-l", "series", "-k", "StudyInstanceUID=1.2.abc"],
        "1.2.abc",
        id="find-uid-letters",
    ),
    pytest.param(
        ["find", NODE, "-l", "series", "-k", "StudyInstanceUID=1." + "2" * 70],
        "1." + "2" * 70,
        id="find-uid-too-long",
    ),
    pytest.param(
        ["find", NODE, "-l", "series", "-k", "StudyInstanceUID=1.2.*"],
        "1.2.*",
        id="find-uid-wildcard",
    ),
    pytest.param(
        ["find", NODE, "-l", "study", "-k", "NumberOfStudyRelatedInstances=many"],
        "many",
        id="find-is-not-a-number",
    ),
    pytest.param(
        ["find", NODE, "-l", "image", "-k", "PixelData=abc"], "PixelData", id="find-binary-vr"
    ),
    pytest.param(["find", NODE, "-l", "study", "-f", "xml"], "'xml'", id="find-bad-format"),
    # get / move / retrieve
    *for_commands(RETRIEVE_COMMANDS, "parallel-0", ["--parallel", "0"], "--parallel 0"),
    *for_commands(RETRIEVE_COMMANDS, "parallel-17", ["--parallel", "17"], "--parallel 17"),
    *for_commands(RETRIEVE_COMMANDS, "parallel-text", ["--parallel", "all"], "'all'"),
    *for_commands(
        RETRIEVE_COMMANDS, "max-instance-text", ["--max-instance", "big"], "--max-instance big"
    ),
    *for_commands(
        RETRIEVE_COMMANDS, "max-instance-tiny", ["--max-instance", "100"], "--max-instance 100"
    ),
    *for_commands(
        RETRIEVE_COMMANDS, "max-instance-huge", ["--max-instance", "2T"], "--max-instance 2T"
    ),
    *for_commands(RETRIEVE_COMMANDS, "level", ["-l", "instance"], "'instance'"),
    *for_commands(RETRIEVE_COMMANDS, "model", ["-m", "worklist"], "'worklist'"),
    *for_commands(RETRIEVE_COMMANDS, "format", ["--format", "csv"], "'csv'"),
    *for_commands(
        RETRIEVE_COMMANDS, "uid-letters", ["-k", "SeriesInstanceUID=1.2.x", "-l", "series"], "1.2.x"
    ),
    *for_commands(
        RETRIEVE_COMMANDS,
        "uid-too-long",
        ["-k", "SeriesInstanceUID=1." + "3" * 70, "-l", "series"],
        "1." + "3" * 70,
    ),
    *for_commands(RETRIEVE_COMMANDS, "wildcard", ["-k", "PatientID=PAT*"], "'PAT*'"),
    *for_commands(RETRIEVE_COMMANDS, "not-unique", ["-k", "PatientName=DOE"], "PatientName"),
    *for_commands(RETRIEVE_COMMANDS, "empty-value", ["-k", "PatientID="], "PatientID"),
    *for_commands(MOVE_COMMANDS, "dest-too-long", ["--dest", "SEVENTEEN_CHARS_Z"], "SEVENTEEN"),
    *for_commands(MOVE_COMMANDS, "dest-backslash", ["--dest", "A\\B"], "A\\\\B"),
    *for_commands(MOVE_COMMANDS, "listen-text", ["--listen", "here"], "'here'"),
    *for_commands(MOVE_COMMANDS, "listen-0", ["--listen", "0"], "--listen port 0"),
    *for_commands(MOVE_COMMANDS, "listen-70000", ["--listen", "70000"], "70000"),
    *for_commands(MOVE_COMMANDS, "listen-bad-host", ["--listen", "bad_host:11113"], "bad_host"),
    *for_commands(MOVE_COMMANDS, "listen-empty-port", ["--listen", "127.0.0.1:"], "''"),
    # tui: its options are checked before the UI starts
    pytest.param(["tui", "--aet", "SEVENTEEN_CHARS_T"], "SEVENTEEN_CHARS_T", id="tui-aet"),
    pytest.param(["tui", "--aet", ""], "empty calling AE title", id="tui-aet-empty"),
    pytest.param(["tui", "--listen", "0"], "--listen port 0", id="tui-listen-0"),
    pytest.param(["tui", "--listen", "here"], "'here'", id="tui-listen-text"),
    pytest.param(["tui", "PACS@127.0.0.1:0"], "port 0", id="tui-node-port-0"),
    pytest.param(["tui", "PA\\CS@127.0.0.1:104"], "PA\\\\CS", id="tui-node-backslash"),
    *for_commands(MOVE_COMMANDS, "listen-open-bracket", ["--listen", "[::1:11113"], "[::1"),
    # doctor's own options
    pytest.param(["doctor", NODE, "--listen", "0"], "port 0", id="doctor-listen-0"),
    pytest.param(["doctor", NODE, "--listen", "here"], "'here'", id="doctor-listen-text"),
    pytest.param(["doctor", NODE, "--move-wait", "-1"], "-1", id="doctor-move-wait-negative"),
    pytest.param(["doctor", NODE, "--move-wait", "soon"], "'soon'", id="doctor-move-wait-text"),
    pytest.param(["doctor", NODE, "--format", "xml"], "'xml'", id="doctor-format"),
    # demo: checked before anything listens
    pytest.param(["demo", "--serve", "--port", "70000"], "70000", id="demo-port-70000"),
    pytest.param(["demo", "--serve", "--port", "x"], "'x'", id="demo-port-text"),
    pytest.param(["demo", "--serve", "--aet", "A\\B"], "A\\\\B", id="demo-aet-backslash"),
    pytest.param(
        ["demo", "--serve", "--destination", "nohost"], "nohost", id="demo-destination-no-at"
    ),
    pytest.param(
        ["demo", "--serve", "--destination", "DEST@127.0.0.1:0"],
        "port 0",
        id="demo-destination-port-0",
    ),
    # nodes: names and addresses are checked before the file is touched
    pytest.param(["nodes", "add", "bad name!", NODE], "bad name!", id="nodes-add-bad-name"),
    pytest.param(["nodes", "add", "pacs", "PACS@127.0.0.1:0"], "port 0", id="nodes-add-port-0"),
    pytest.param(
        ["nodes", "add", "pacs", NODE, "--method", "fetch"], "'fetch'", id="nodes-add-method"
    ),
    pytest.param(["nodes", "add", "pacs", NODE, "--parallel", "0"], "0", id="nodes-parallel-0"),
    pytest.param(["nodes", "show", "nosuchnode"], "nosuchnode", id="nodes-show-unknown"),
    pytest.param(
        ["nodes", "remove", "nosuchnode"], "no such configuration file", id="nodes-remove-no-file"
    ),
]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener standing in for the PACS: any connection to it is a failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory that is also where the default store would go."""
    monkeypatch.chdir(tmp_path)
    for variable in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path))
    return tmp_path


@pytest.fixture(autouse=True)
def no_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    """A case wrongly accepted by ``tui`` fails here instead of starting the UI."""

    def refuse(*args: object, **kwargs: object) -> int:
        raise AssertionError("bad input reached the terminal UI")

    monkeypatch.setattr("qrclient.tui.run", refuse)


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        return int(exc.code or 0)


@pytest.mark.parametrize(("argv", "names"), CASES)
def test_bad_input_is_one_line_exit_2_and_no_side_effect(
    argv: list[str],
    names: str,
    listener: socket.socket,
    sandbox: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = listener.getsockname()[1]
    out = sandbox / "store"
    argv = [a.replace(NODE, f"PACS@127.0.0.1:{port}").replace(OUT, str(out)) for a in argv]
    argv = [a.replace("127.0.0.1:104", f"127.0.0.1:{port}") for a in argv]
    code = run_main(argv)
    captured = capsys.readouterr()
    details = f"\nargv: {argv!r}\nstdout: {captured.out!r}\nstderr: {captured.err!r}"
    assert code == 2, details
    assert captured.out == "", details
    lines = captured.err.splitlines()
    assert len(lines) == 1, details
    assert lines[0].startswith("qrclient"), details
    assert ": error: " in lines[0], details
    assert names in lines[0], details
    assert "Traceback" not in captured.err, details
    readable, _, _ = select.select([listener], [], [], 0)
    assert not readable, "bad input must be refused before connecting" + details
    assert list(sandbox.iterdir()) == [], "bad input must not write anything" + details


def test_out_pointing_at_a_file_is_one_line_and_leaves_the_file(
    listener: socket.socket, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = sandbox / "notes.txt"
    target.write_text("mine")
    node = f"PACS@127.0.0.1:{listener.getsockname()[1]}"
    for command in RETRIEVE_COMMANDS:
        code = run_main([command, node, "-k", "StudyInstanceUID=1.2.3", "--out", str(target)])
        captured = capsys.readouterr()
        assert code == 2, captured.err
        lines = captured.err.splitlines()
        assert len(lines) == 1, captured.err
        assert str(target) in lines[0]
        assert "cannot open the store" in lines[0]
    assert target.read_text() == "mine"
    assert [p.name for p in sandbox.iterdir()] == ["notes.txt"]
    readable, _, _ = select.select([listener], [], [], 0)
    assert not readable

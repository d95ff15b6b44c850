"""``qrclient tui`` and ``qrclient`` alone: options checked first, the UI on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

QRCLIENT = [sys.executable, "-m", "qrclient"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*QRCLIENT, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tui", "nonsense"], "'nonsense' is neither a configured name"),
        (["tui", "--aet", "A" * 17], "calling AE title (--aet)"),
        (["tui", "--listen", "70000"], "--listen port"),
        (["tui", "--config", "/nonexistent/qrclient.toml"], "/nonexistent/qrclient.toml"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("qrclient: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_the_command_line_does_not_import_textual() -> None:
    code = "import sys, qrclient.cli.main; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def _read_until(fd: int, needle: bytes, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_qrclient_alone_on_a_terminal_opens_the_ui(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    environment = {**os.environ, "TERM": "xterm-256color", "QRCLIENT_CONFIG": ""}
    environment["XDG_DATA_HOME"] = environment["XDG_CONFIG_HOME"] = str(tmp_path)
    process = subprocess.Popen(
        QRCLIENT, stdin=terminal, stdout=terminal, stderr=terminal, env=environment
    )
    os.close(terminal)
    try:
        screen = _read_until(controller, b"Patient name", 30)
        assert b"Patient name" in screen
        os.write(controller, b"\x11")  # ctrl+q
        _read_until(controller, b"\x00never", 2)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)

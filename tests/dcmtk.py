"""What DCMTK's getscu and movescu fetch for a request: the reference the retrieves match."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pydicom

from benchmarks.common import require_executable
from qrclient.net import Peer

TIMEOUT = 60


def _uids(directory: Path) -> set[str]:
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in directory.rglob("*")
        if p.is_file()
    }


@functools.cache
def tool(name: str) -> str:
    """DCMTK's tool, not pynetdicom's script of the same name in the virtual environment."""
    return require_executable(name)


def _run(argv: Sequence[str]) -> None:
    argv = [tool(argv[0]), *argv[1:]]
    env = {**os.environ, "TCP_NODELAY": "1"}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env
    )
    # Both exit 0 also when some sub-operations failed; the files say what came.
    assert done.returncode == 0, done.stderr


def _keys(level: str, keys: Sequence[str]) -> list[str]:
    return ["-k", f"QueryRetrieveLevel={level}", *(a for k in keys for a in ("-k", k))]


def getscu(peer: Peer, level: str, keys: Sequence[str], *, patient_root: bool = False) -> set[str]:
    """The SOP Instance UIDs getscu receives for this C-GET."""
    with tempfile.TemporaryDirectory(prefix="getscu-") as out:
        model = "-P" if patient_root else "-S"
        _run(
            [
                "getscu", model, "-aec", peer.ae_title, "-aet", "QRCLIENT", "-od", out,
                peer.host, str(peer.port), *_keys(level, keys),
            ]
        )  # fmt: skip
        return _uids(Path(out))


def movescu(peer: Peer, level: str, keys: Sequence[str], our_ae: str, port: int) -> set[str]:
    """The SOP Instance UIDs movescu receives for this C-MOVE to ``our_ae`` on ``port``."""
    with tempfile.TemporaryDirectory(prefix="movescu-") as out:
        _run(
            [
                "movescu", "-S", "-aec", peer.ae_title, "-aet", our_ae, "-aem", our_ae,
                "+P", str(port), "-od", out, peer.host, str(peer.port), *_keys(level, keys),
            ]
        )  # fmt: skip
        return _uids(Path(out))

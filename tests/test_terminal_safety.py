"""A peer's text never reaches the terminal raw: escape sequences are shown, not obeyed.

A scripted peer puts ESC, CSI, OSC (and C1) sequences and Textual markup in its
implementation version name, error comments, UIDs and match values; every command's
stdout and stderr (with -v too) must show them as visible escapes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydicom.dataset import Dataset

from fixtures.orthanc import free_ports
from qrclient.net.uids import STORAGE_ROOT
from qrclient.present.output import make_writer
from qrclient.present.printable import printable, printable_json
from tests.fakepeer import PeerConnection, c_store_rq, fake_peer, response

pytestmark = [
    pytest.mark.anyio,
    # pydicom's, about the hostile values themselves (encoded by the peer, decoded by us)
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning"),
    pytest.mark.filterwarnings("ignore:Found unknown escape sequence:UserWarning"),
]

TIMEOUT = 60.0
# Clear the screen, retitle the window, a C1 CSI, then markup and an action link.
EVIL = "\x1b[2J\x1b]0;pwned\x07\x9b31m[bold]X[/bold][@click=app.quit]Q[/]"
EVIL_VERSION = b"\x1b]0;pwn\x07\x1b[2J[b]X"  # 16 bytes: the longest a version name gets
EVIL_UID = "1.2.\x1b[2J.\x1b]0;pwn\x07"
MARKUP = "[bold]X[/bold]"
# What a terminal would obey: every control character but the newline ending a line.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def evil_match() -> Dataset:
    match = Dataset()
    match.QueryRetrieveLevel = "STUDY"
    match.PatientName = "DOE^JOHN"
    match.PatientID = "\x1b[2J\x9b1m"
    match.AccessionNumber = MARKUP
    match.StudyDescription = EVIL
    match.StudyInstanceUID = "1.2.3.4"  # a UID: the UI can retrieve the study
    return match


def failure(command_field: int, message_id: int, status: int, sop_class: str) -> Dataset:
    final = response(command_field, message_id, status, sop_class)
    final.ErrorComment = EVIL
    return final


async def evil_peer(connection: PeerConnection) -> None:
    """Answers echo, find, get and move with text a terminal would obey."""
    await connection.accept(version_name=EVIL_VERSION)
    while True:
        try:
            context_id, command, _ = await connection.read_message()
        except EOFError as exc:  # anything but P-DATA: answer a release, else stop
            if "PDU type 5" in str(exc):
                await connection.send_raw(RELEASE_RP)
            return
        field, message_id = int(command.CommandField), int(command.MessageID)
        sop_class = str(command.AffectedSOPClassUID)
        if field == 0x0030:  # C-ECHO
            await connection.send_message(context_id, response(0x8030, message_id, 0, sop_class))
        elif field == 0x0020:  # C-FIND: one match, then a failure with a comment
            pending = response(0x8020, message_id, 0xFF00, sop_class)
            await connection.send_message(context_id, pending, evil_match())
            await connection.send_message(
                context_id, failure(0x8020, message_id, 0xC001, sop_class)
            )
        elif field == 0x0010:  # C-GET: an instance with a hostile UID, then a failure
            storage = next(c for c, a in connection.contexts.items() if a.startswith(STORAGE_ROOT))
            instance = Dataset()
            instance.SOPClassUID = CT_IMAGE_STORAGE
            instance.SOPInstanceUID = EVIL_UID
            store = c_store_rq(7, CT_IMAGE_STORAGE, EVIL_UID)
            await connection.send_message(storage, store, instance)
            await connection.read_message()  # our C-STORE response
            await connection.send_message(
                context_id, failure(0x8010, message_id, 0xC000, sop_class)
            )
        else:  # C-MOVE, anything else
            await connection.send_message(
                context_id, failure(command.CommandField | 0x8000, message_id, 0xA801, sop_class)
            )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # what is tested runs in a subprocess: one event loop here is enough


@pytest.fixture
async def evil_node() -> AsyncIterator[str]:
    async with fake_peer(evil_peer) as (port, _):
        yield f"EVIL@127.0.0.1:{port}"


async def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(TIMEOUT):
        environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}
        command = [sys.executable, "-m", "qrclient", *args]
        return await anyio.run_process(command, check=False, env=environment)


COMMANDS = [
    pytest.param(["echo", "{node}", "-v"], id="echo"),
    pytest.param(["find", "{node}", "-l", "study", "-f", "table", "-v"], id="find-table"),
    pytest.param(["find", "{node}", "-l", "study", "-f", "csv"], id="find-csv"),
    pytest.param(["find", "{node}", "-l", "study", "-f", "ndjson"], id="find-ndjson"),
    pytest.param(["find", "{node}", "-l", "study", "-f", "json"], id="find-json"),
    pytest.param(["get", "{node}", "-k", "StudyInstanceUID=1.2.3", "-o", "{out}", "-v"], id="get"),
    pytest.param(
        ["move", "{node}", "-k", "StudyInstanceUID=1.2.3", "-o", "{out}", "--listen", "{port}"],
        id="move",
    ),
    pytest.param(["doctor", "{node}", "--listen", "{port}", "--move-wait", "1"], id="doctor"),
]


@pytest.mark.parametrize("argv", COMMANDS)
async def test_nothing_from_the_peer_reaches_stdout_or_stderr_raw(
    argv: list[str], evil_node: str, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    values = {"{node}": evil_node, "{out}": str(tmp_path / "store"), "{port}": str(port)}
    done = await run_cli(*(values.get(arg, arg) for arg in argv))
    out, err = done.stdout.decode(), done.stderr.decode()
    details = f"\nexit {done.returncode}\nstdout: {out!r}\nstderr: {err!r}"
    assert "Traceback" not in err, details
    assert not RAW.search(out), details
    assert not RAW.search(err), details
    assert "Warning:" not in err, details  # a library's warnings too: one printable line
    # The peer's text was there, shown inert: as \x1b in text, as \u001b in JSON.
    assert "\\x1b" in out + err or "\\u001b" in out + err, details


def test_printable_escapes_what_a_terminal_obeys_and_keeps_the_rest() -> None:
    assert printable(EVIL) == (
        "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m[bold]X[/bold][@click=app.quit]Q[/]"
    )
    assert printable("a\tb\r\nc\x7f\u202eevil\u2028") == "a\\tb\\r\\nc\\x7f\\u202eevil\\u2028"
    names = "山田\u3000太郎 MÜLLER^JÜRGEN ΠΑΠΑΔΟΠΟΥΛΟΣ 👩\u200d⚕️"  # ideographic space, ZWJ
    assert printable(names) == names
    assert printable(printable(EVIL)) == printable(EVIL)  # escaping twice changes nothing


def test_printable_json_is_the_same_json_without_raw_controls() -> None:
    document = json.dumps({"a": EVIL, "b": ["\x85\u2029", 1]}, ensure_ascii=False, indent=1)
    inert = printable_json(document)
    assert json.loads(inert) == json.loads(document)
    assert not RAW.search(inert)
    assert "\u2029" not in inert


def test_a_match_without_a_key_asked_for_is_an_empty_cell() -> None:
    """Peers may leave out return keys (PS3.4 lets them): table and CSV show nothing."""
    match = Dataset()
    match.PatientName = "DOE^JOHN"
    for kind in ("table", "csv"):
        out = io.StringIO()
        writer = make_writer(kind, ["PatientName", "StudyDate", "(0008,0050)"], out)
        writer.add(match)
        writer.close()
        assert out.getvalue().splitlines()[-1].rstrip(",") == "DOE^JOHN"

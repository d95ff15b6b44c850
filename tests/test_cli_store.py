"""``qrclient store ls | verify | rebuild``, and how every command reports a store failure.

Each store failure is one error line, a hint naming a real command, and its own exit
code: 6 the store cannot be written (a full disk), 7 its index is damaged (or verify
found problems), 8 another qrclient holds it. The hinted commands are run as printed.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrclient.cli.main import main
from qrclient.store import Store
from tests.test_store import (
    HOLD,
    REPO,
    ROOT_UID,
    corrupt_pages,
    make_dataset,
    on_small_disk,
    store_dataset,
)

STUDY = f"{ROOT_UID}.1.1"


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Home, data and configuration folders in a temporary directory, no configuration."""
    monkeypatch.chdir(tmp_path)
    for variable in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path))
    monkeypatch.delenv("QRCLIENT_CONFIG", raising=False)
    return tmp_path


def fill(root: Path) -> Path:
    """A store of 4 CT instances in two series and 1 MR instance of another patient."""
    with Store.open(root) as store:
        for number in range(4):
            series = f"{ROOT_UID}.2.{1 + number % 2}"
            store_dataset(store, make_dataset(number, SeriesInstanceUID=series))
        other = make_dataset(9, PatientID="PAT2", Modality="MR", StudyDate="20230102")
        other.StudyInstanceUID, other.SeriesInstanceUID = f"{ROOT_UID}.1.2", f"{ROOT_UID}.2.9"
        other.SeriesNumber = ""
        store_dataset(store, other)
    return root.resolve()


def qrclient(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout and stderr lines of ``qrclient argv`` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err.splitlines()


def test_ls_lists_patients_studies_and_series(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fill(sandbox / "store")
    code, out, err = qrclient(capsys, "store", "ls", "-o", str(root))
    assert (code, err) == (0, [])
    assert out.splitlines()[0] == "PAT1  Ünlü^Ayşe"
    assert out.splitlines()[1].startswith(f"  2024-01-31  Thorax  ACC1  {STUDY}  2 series, 4 ")
    assert out.splitlines()[2].startswith(f"    CT  #4  Axial  {ROOT_UID}.2.1  2 instances, ")
    assert out.splitlines()[4] == "PAT2  Ünlü^Ayşe"
    assert out.splitlines()[6].startswith(f"    MR  Axial  {ROOT_UID}.2.9  1 instance, ")
    assert out.splitlines()[-1].startswith(
        "2 patients, 2 studies, 3 series, 5 instances, 0.0 MB in "
    )
    assert len(out.splitlines()) == 8


def test_ls_as_json(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fill(sandbox / "store")
    code, out, err = qrclient(capsys, "store", "ls", "--out", str(root), "--format", "json")
    assert (code, err) == (0, [])
    listing = json.loads(out)
    assert listing["store"] == str(root)
    assert listing["totals"]["instances"] == 5
    assert listing["totals"]["bytes"] == sum(
        p.stat().st_size for p in root.rglob("*.dcm") if ".qrclient" not in p.parts
    )
    first, second = listing["patients"]
    assert (first["patient_id"], second["patient_id"]) == ("PAT1", "PAT2")
    [study] = first["studies"]
    assert study["study_uid"] == STUDY
    assert [(s["series_uid"], s["instances"]) for s in study["series"]] == [
        (f"{ROOT_UID}.2.1", 2),
        (f"{ROOT_UID}.2.2", 2),
    ]
    assert study["folder"] == str(root / "PAT1" / STUDY)


def test_the_store_is_the_configured_one_else_the_default(
    sandbox: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = qrclient(capsys, "store", "ls")
    assert code == 0
    assert out.endswith(f"0 instances, 0.0 MB in {sandbox / 'qrclient' / 'store'}\n")
    configured = fill(sandbox / "configured")
    config = sandbox / "config.toml"
    config.write_text(f'store = "{configured}"\n')
    monkeypatch.setenv("QRCLIENT_CONFIG", str(config))
    for action in ("ls", "verify"):
        code, out, _ = qrclient(capsys, "store", action)
        assert code == 0
        assert str(configured) in out.splitlines()[-1]


def test_verify_lists_each_problem_and_its_hint_mends_them(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fill(sandbox / "store")
    code, out, err = qrclient(capsys, "store", "verify", "-o", str(root))
    assert (code, err) == (0, [])
    assert out == f"5 instances indexed, every file in place and readable: {root}\n"
    with Store.open(root) as store:
        gone, damaged = store.instances()[:2]
    (root / gone.path).unlink()
    (root / damaged.path).write_bytes(b"DICM")
    (root / "notes.txt").write_text("mine")
    code, out, err = qrclient(capsys, "store", "verify", "-o", str(root))
    assert code == 7
    assert out.splitlines() == [
        f"missing: {gone.path} (SOP Instance UID {gone.sop_instance_uid})",
        f"changed: {damaged.path} has 4 bytes, not {damaged.size}",
        "unindexed: notes.txt (not a DICOM Part-10 file)",
    ]
    assert err[0] == f"qrclient: error: 3 problems in the store {root} (5 instances indexed)"
    assert err[1].endswith(f"to index the files anew: qrclient store rebuild --out {root}")
    code, out, _ = qrclient(capsys, *hinted(err[1])[1:])
    assert code == 0
    assert out.startswith("indexed 3 instances (2 patients, 2 studies, 2 series, 0.0 MB) ")
    assert out.endswith(f" from the files in {root}\n")
    code, out, _ = qrclient(capsys, "store", "verify", "-o", str(root), "--format", "json")
    assert code == 7  # notes.txt and the damaged file are not DICOM: still there
    assert json.loads(out) == {
        "store": str(root),
        "instances": 3,
        "problems": [
            f"unindexed: {damaged.path} (not a DICOM Part-10 file)",
            "unindexed: notes.txt (not a DICOM Part-10 file)",
        ],
    }


def hinted(hint: str) -> list[str]:
    """The command a ``qrclient: hint:`` line ends with (after its last ": "), as argv."""
    return shlex.split(hint.rsplit(": ", 1)[1])


def test_a_damaged_index_is_exit_7_and_the_hinted_rebuild_mends_it(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fill(sandbox / "store")
    corrupt_pages(root / ".qrclient" / "index.sqlite")
    for action in ("ls", "verify"):
        code, out, err = qrclient(capsys, "store", action, "-o", str(root))
        assert (code, out) == (7, "")
        assert len(err) == 2
        assert err[0].startswith(
            "qrclient: error: cannot read the store: the store index "
            f"{root}/.qrclient/index.sqlite is damaged ("
        )
        assert (
            err[1]
            == f"qrclient: hint: rebuild it from the files: qrclient store rebuild --out {root}"
        )
    code, out, _ = qrclient(capsys, *hinted(err[1])[1:])
    assert code == 0
    assert out.startswith("indexed 5 instances (2 patients, 2 studies, 3 series")
    code, _, _ = qrclient(capsys, "store", "verify", "-o", str(root))
    assert code == 0


def test_a_store_in_use_is_exit_8_and_wait_waits_for_it(
    sandbox: Path, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    root = fill(sandbox / "store")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        get = ["get", f"PACS@127.0.0.1:{closed_port}", "-k", "StudyInstanceUID=1.2.3", "-o"]
        for argv in (["store", "verify", "-o"], ["store", "rebuild", "-o"], get):
            code, out, err = qrclient(capsys, *argv, str(root))  # refused before connecting
            assert (code, out) == (8, "")
            assert err == [
                f"qrclient: error: the store {root} is in use by another qrclient "
                f"(process {holder.pid})",
                "qrclient: hint: wait for it to finish (--wait SECONDS waits for it), or use "
                "another store (--out DIR)",
            ]
        code, out, _ = qrclient(capsys, "store", "ls", "-o", str(root))  # reads, no lock
        assert code == 0
        assert "5 instances" in out
        waiting = subprocess.Popen(
            [sys.executable, "-m", "qrclient", "store", "verify", "-o", str(root), "--wait", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        holder.stdin.close()  # the holder lets go while the other waits
        stdout, stderr = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, stderr
        assert stdout.startswith("5 instances indexed")
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


@pytest.mark.parametrize("wait", ["-1", "soon", "1e9"])
def test_a_bad_wait_is_bad_usage(
    sandbox: Path, capsys: pytest.CaptureFixture[str], wait: str
) -> None:
    code, out, err = qrclient(capsys, "store", "verify", "-o", str(sandbox), "--wait", wait)
    assert (code, out, len(err)) == (2, "", 1)
    assert "--wait" in err[0]


def test_verify_of_a_folder_that_is_no_store_creates_nothing(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = qrclient(capsys, "store", "verify", "-o", str(sandbox / "nothing"))
    assert (code, out) == (2, "")
    nothing = sandbox / "nothing"
    assert err[0] == f"qrclient: error: no qrclient store at {nothing} (it has no .qrclient folder)"
    assert list(sandbox.iterdir()) == []


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound, not listening): a connection there fails."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


FULL_DISK_CLI = """
import os, sys
from qrclient.cli.main import main

disk = sys.argv[1]
os.mkdir(f"{disk}/store")  # the store's folder exists; its disk is then filled
descriptor = os.open(f"{disk}/filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(descriptor, bytes(4096))
except OSError:
    pass
print("exit", main(sys.argv[2:]), flush=True)
"""


@pytest.mark.parametrize("command", ["rebuild", "get"])
def test_a_full_disk_is_exit_6_and_says_so(tmp_path: Path, closed_port: int, command: str) -> None:
    store = tmp_path / "disk" / "store"
    argv = ["store", "rebuild", "-o", str(store)]
    if command == "get":
        argv = ["get", f"PACS@127.0.0.1:{closed_port}", "-k", "StudyInstanceUID=1.2.3"]
        argv += ["--out", str(store)]
    process = on_small_disk(tmp_path, FULL_DISK_CLI, *argv)
    assert process.stdout == "exit 6\n", process.stderr
    err = process.stderr.splitlines()
    index = "index.sqlite.new" if command == "rebuild" else "index.sqlite"  # built beside
    assert err == [
        f"qrclient: error: cannot open the store: the disk holding {store}/.qrclient/"
        f"{index} is full",
        "qrclient: hint: free some space, then index the files received: qrclient store "
        f"rebuild --out {store}",
    ]

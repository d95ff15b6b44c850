"""Faults against a real Orthanc of this module's own (the tests kill and freeze it).

The PACS killed mid C-GET / C-MOVE, stopped with SIGSTOP mid-query / mid-retrieve,
qrclient itself killed with SIGKILL mid-retrieve, and a store that refuses writes: each
ends in a clear error or a partial job, never with an incomplete file in the store or an
index that disagrees with the files, and the next run fetches only what is missing.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pydicom
import pytest
from pydicom.dataset import Dataset

from fixtures.dataset import Archive, StudySpec, find_patient
from fixtures.orthanc import OrthancServer, free_ports
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    run_with_listener,
)
from qrclient.net import ContextRequest, DicomTimeout, Peer, Settings, Timeouts, open_association
from qrclient.net.datasets import encode_dataset
from qrclient.ops.find import find
from qrclient.ops.query import build_query
from qrclient.store import Store, StoredInstance
from qrclient.vocabulary import Level, Method, Model
from tests.conftest import OUR_AE, start_orthanc

LIMIT = 120.0  # seconds: a job that outlives this hangs
EXPLICIT = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Pacs:
    server: OrthancServer
    listen_port: int  # where Orthanc sends C-MOVE sub-operations for OUR_AE
    study: StudySpec  # 300 CT images

    @property
    def peer(self) -> Peer:
        return Peer(self.server.aet, self.server.host, self.server.dicom_port)

    @property
    def node(self) -> str:
        return str(self.peer)

    @property
    def uids(self) -> set[str]:
        return {i.sop_instance_uid for s in self.study.series for i in s.instances}

    @property
    def key(self) -> str:
        return f"StudyInstanceUID={self.study.study_instance_uid}"


@pytest.fixture(scope="module")
def module_pacs(tmp_path_factory: pytest.TempPathFactory, archive: Archive) -> Iterator[Pacs]:
    big = find_patient(archive, "BIG001")
    (port,) = free_ports(1)
    server = start_orthanc(
        tmp_path_factory.mktemp("faults-orthanc"),
        (big,),
        DicomModalities={"qrclient": [OUR_AE, "127.0.0.1", port]},
        DicomAssociationCloseDelay=0,
    )
    yield Pacs(server, port, big.studies[0])
    server.stop(graceful=False)


@pytest.fixture
def pacs(module_pacs: Pacs) -> Iterator[Pacs]:
    """The module's PACS, running and not frozen whatever the previous test did."""
    module_pacs.server.start()
    yield module_pacs
    if module_pacs.server.is_running():
        module_pacs.server.resume()
    module_pacs.server.start()


def assert_store_consistent(root: Path) -> set[str]:
    """No temporary file, every file parses, the index matches the files; returns UIDs."""
    assert not list((root / ".qrclient" / "incoming").iterdir())
    with Store.open(root) as store:
        assert store.removed_leftovers == 0
        assert store.verify() == []
        held = {i.sop_instance_uid: i for i in store.instances()}
        for uid, item in held.items():
            assert pydicom.dcmread(store.root / item.path).SOPInstanceUID == uid
    files = [p for p in root.rglob("*") if p.is_file() and ".qrclient" not in p.parts]
    assert len(files) == len(held)
    return set(held)


def qrclient(*args: str, timeout: float = LIMIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_qrclient(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qrclient", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_files(root: Path, count: int, process: subprocess.Popen[str]) -> int:
    """Block until ``count`` instances are stored under ``root`` (the kill lands then)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        found = sum(1 for p in root.rglob("*.dcm") if ".qrclient" not in p.parts)
        if found >= count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"{count} instances never arrived: {process.poll()=}")


async def run_job(job: RetrieveJob, pacs: Pacs) -> RetrieveOutcome:
    return await run_with_listener(job, "127.0.0.1", pacs.listen_port)


def new_job(pacs: Pacs, store: Store, method: Method, settings: Settings) -> RetrieveJob:
    request = RetrieveRequest.parse(Level.STUDY, Model.STUDY, [pacs.key])
    return RetrieveJob.into_store(pacs.peer, request, store, settings, parallel=1, method=method)


# -- the PACS killed mid-transfer ---------------------------------------------------------


def test_pacs_killed_mid_c_get_is_partial_and_resumes(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = ("get", pacs.node, "-k", pacs.key, "--out", str(out), "--parallel", "1")
    process = start_qrclient(*args, "--format", "json")
    wait_for_files(out, 20, process)
    pacs.server.stop(graceful=False)
    stdout, stderr = process.communicate(timeout=LIMIT)
    assert process.returncode == 5, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    assert summary["state"] == "partial"
    # "closed the connection" while reading, "broke while sending" while answering.
    assert any("the connection" in e for e in summary["errors"]), summary
    held = assert_store_consistent(out)
    assert 20 <= len(held) == summary["received"] < 300
    assert held < pacs.uids

    pacs.server.start()
    rest = qrclient(*args, "--format", "json")
    assert rest.returncode == 0, rest.stderr
    again = json.loads(rest.stdout)
    assert again["already_here"] == len(held)
    assert again["received"] == 300 - len(held)
    assert assert_store_consistent(out) == pacs.uids


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_pacs_killed_mid_c_move_is_partial_and_resumes(pacs: Pacs, tmp_path: Path) -> None:
    settings = Settings(calling_ae=OUR_AE)
    with Store.open(tmp_path / "store") as store:
        job = new_job(pacs, store, Method.MOVE, settings)
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as group:
                group.start_soon(run_job, job, pacs)
                async for snapshot in job.progress.watch(interval=0):
                    if snapshot.received >= 20:
                        pacs.server.stop(graceful=False)
                        break
        outcome = job.outcome
        assert outcome.state is RetrieveState.PARTIAL, outcome
        assert outcome.network_failures == 1, outcome.errors
        assert 20 <= outcome.received < 300
    held = assert_store_consistent(tmp_path / "store")
    assert len(held) == outcome.received

    pacs.server.start()
    with Store.open(tmp_path / "store") as store:
        with anyio.fail_after(LIMIT):
            rest = await run_job(new_job(pacs, store, Method.MOVE, settings), pacs)
        assert rest.state is RetrieveState.COMPLETE, rest.errors
        assert rest.skipped == len(held)
        assert rest.received == 300 - len(held)
    assert assert_store_consistent(tmp_path / "store") == pacs.uids


# -- the PACS frozen (SIGSTOP): the configured timeouts fire ------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_pacs_frozen_mid_query_fires_the_dimse_timeout(pacs: Pacs) -> None:
    settings = Settings(calling_ae=OUR_AE, timeouts=Timeouts(dimse=0.5, network=0.5))
    query = build_query(Level.SERIES, Model.STUDY, [pacs.key], default_keys=True)

    async def query_while_frozen() -> None:
        async with open_association(
            pacs.peer, [ContextRequest(Model.STUDY.find_sop_class)], settings
        ) as association:
            pacs.server.pause()  # associated, and now the PACS stops answering
            async with find(association, query) as matches:
                async for _ in matches:
                    pass

    with anyio.fail_after(10), pytest.raises(DicomTimeout) as caught:
        await query_while_frozen()
    assert caught.value.which == "dimse"
    assert "dimse timeout: no" in caught.value.message
    assert "--dimse-timeout" in caught.value.hint


def test_pacs_frozen_before_answering_fires_the_association_timeout(pacs: Pacs) -> None:
    pacs.server.pause()
    result = qrclient("find", pacs.node, "-l", "study", "--association-timeout", "0.5")
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("qrclient: error: association timeout: no A-ASSOCIATE answer")
    assert "--association-timeout" in lines[1]
    assert len(lines) == 2


def test_pacs_frozen_mid_retrieve_fires_a_named_timeout(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "store"
    process = start_qrclient(
        "get",
        pacs.node,
        "-k",
        pacs.key,
        "--out",
        str(out),
        "--parallel",
        "1",
        "--dimse-timeout",
        "1",
        "--network-timeout",
        "1",
    )
    wait_for_files(out, 20, process)
    pacs.server.pause()
    stdout, stderr = process.communicate(timeout=LIMIT)
    pacs.server.resume()
    assert process.returncode == 5, stderr
    assert "Traceback" not in stderr
    assert "partial" in stdout
    # Which timeout depends on whether the freeze came between messages or inside one.
    timeout_lines = [line for line in stderr.splitlines() if "timeout: no" in line]
    assert len(timeout_lines) == 1, stderr
    assert "dimse timeout" in timeout_lines[0] or "network timeout" in timeout_lines[0]
    assert "--dimse-timeout" in timeout_lines[0] or "--network-timeout" in timeout_lines[0]
    held = assert_store_consistent(out)
    assert 20 <= len(held) < 300


# -- qrclient killed, a store that refuses writes ------------------------------------------


def test_qrclient_killed_mid_retrieve_leaves_a_store_that_resumes(
    pacs: Pacs, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    args = ("get", pacs.node, "-k", pacs.key, "--out", str(out), "--parallel", "1")
    process = start_qrclient(*args)
    wait_for_files(out, 30, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=LIMIT)
    assert process.returncode == -signal.SIGKILL

    # Opening the store cleans what the kill left; index rows are committed in groups,
    # so complete files may not be indexed yet, never a row without its file.
    with Store.open(out) as store:
        assert not list((out / ".qrclient" / "incoming").iterdir())
        problems = store.verify()
        assert all(p.startswith("unindexed: ") for p in problems), problems
        indexed = {i.sop_instance_uid for i in store.instances()}
        for item in store.instances():
            assert pydicom.dcmread(store.root / item.path).SOPInstanceUID == item.sop_instance_uid

    rest = qrclient(*args, "--format", "json")
    assert rest.returncode == 0, rest.stderr
    summary = json.loads(rest.stdout)
    assert summary["already_here"] == len(indexed)
    assert summary["received"] == 300 - len(indexed)
    assert assert_store_consistent(out) == pacs.uids


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("error", "words"), [(errno.EROFS, "read-only file system"), (errno.ENOSPC, "disk is full")]
)
async def test_a_store_refusing_writes_fails_the_retrieve_clearly(
    pacs: Pacs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, words: str
) -> None:
    def refuse(source: object, target: object, **descriptors: int) -> None:
        raise OSError(error, os.strerror(error), str(target))

    with Store.open(tmp_path / "store") as store:
        monkeypatch.setattr(os, "replace", refuse)
        job = new_job(pacs, store, Method.GET, Settings(calling_ae=OUR_AE))
        with anyio.fail_after(LIMIT):
            outcome = await run_job(job, pacs)
        monkeypatch.undo()
        assert outcome.state is RetrieveState.FAILED
        assert outcome.received == 0
        # One line per refused instance, naming the cause, then the peer's final status.
        refused = [e for e in outcome.errors if not e.startswith("C-GET ended")]
        assert len(refused) == outcome.failed == 300
        assert all(words in e for e in refused), refused[:2]
        assert store.instances() == []
    assert assert_store_consistent(tmp_path / "store") == set()


# -- the store: the disk over the index, conflicts, a damaged index -----------------------


def test_files_deleted_from_the_store_are_fetched_again(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = ("get", pacs.node, "-k", pacs.key, "--out", str(out), "--format", "json")
    first = qrclient(*args)
    assert first.returncode == 0, first.stderr
    deleted = sorted(p for p in out.rglob("*.dcm") if ".qrclient" not in p.parts)[::30]
    assert len(deleted) == 10
    for path in deleted:
        path.unlink()
    again = qrclient(*args)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["received"], summary["already_here"]) == (10, 290)
    assert all(path.is_file() for path in deleted)
    assert assert_store_consistent(out) == pacs.uids


def seed_conflict(out: Path, uid: str) -> StoredInstance:
    """Store, as received from OTHERPACS, a different instance with ``uid`` in a study of
    its own (so the PACS's study looks new to the retrieve, which then fetches it all)."""
    other = Dataset()
    other.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    other.SOPInstanceUID = uid
    other.PatientID = "ELSEWHERE"
    other.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.4242"
    other.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.4243"
    with Store.open(out) as store:
        incoming = store.begin(other.SOPClassUID, uid, EXPLICIT, "OTHERPACS")
        incoming.write(encode_dataset(other, EXPLICIT))
        return incoming.commit()


def test_a_different_instance_kept_from_another_pacs_is_not_replaced(
    pacs: Pacs, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    uid = min(pacs.uids)
    kept = seed_conflict(out, uid)
    args = ("get", pacs.node, "-k", pacs.key, "--out", str(out), "--format", "json")
    first = qrclient(*args)
    summary = json.loads(first.stdout)
    assert (summary["received"], summary["failed"]) == (299, 1), first.stderr
    [conflict] = [e for e in summary["errors"] if uid in e]
    assert "a different instance with this SOP Instance UID is kept" in conflict
    assert f"received from OTHERPACS ({kept.path})" in conflict
    assert "delete that file and retrieve again" in conflict
    assert first.returncode in (4, 5)  # a failed sub-operation: the retrieve's own verdict
    assert pydicom.dcmread(out / kept.path).PatientID == "ELSEWHERE"
    # As the hint says: delete it, and the same command fetches the PACS's one.
    (out / kept.path).unlink()
    second = qrclient(*args)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["received"] == 1
    assert assert_store_consistent(out) == pacs.uids


def test_overwrite_replaces_a_different_instance_as_it_arrives(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "store"
    kept = seed_conflict(out, min(pacs.uids))
    args = ("get", pacs.node, "-k", pacs.key, "--out", str(out), "--format", "json")
    result = qrclient(*args, "--overwrite")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["received"], summary["failed"], summary["errors"]) == (300, 0, [])
    assert not (out / kept.path).exists()  # replaced, at the PACS's path
    assert assert_store_consistent(out) == pacs.uids


def test_a_damaged_index_fails_a_retrieve_with_exit_7_and_a_real_command(
    pacs: Pacs, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    args = ("get", pacs.node, "-k", pacs.key, "--out", str(out))
    assert qrclient(*args).returncode == 0
    index = out / ".qrclient" / "index.sqlite"
    data = index.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    index.write_bytes(data[:page] + b"\xa5" * (len(data) - page))
    damaged = qrclient(*args)
    assert damaged.returncode == 7, damaged.stderr
    assert "Traceback" not in damaged.stderr
    error, hint = damaged.stderr.splitlines()[-2:]
    assert error.startswith("qrclient: error: cannot read the store: the store index ")
    assert "is damaged (database disk image is malformed)" in error
    assert hint == f"qrclient: hint: rebuild it from the files: qrclient store rebuild --out {out}"
    rebuilt = qrclient("store", "rebuild", "--out", str(out))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith("indexed 300 instances (1 patient, 1 study, ")
    resumed = qrclient(*args, "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["already_here"] == 300

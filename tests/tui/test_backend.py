"""The UI's backend against the real Orthanc: shared listener, queue, errors, listen address."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from fixtures.dataset import Archive, all_studies, find_patient
from fixtures.orthanc import OrthancServer, free_ports
from qrclient.jobs.retrieve import RetrieveOutcome, RetrieveRequest, RetrieveState
from qrclient.net import ConnectFailed, ContextRequest, Peer, Settings, open_association
from qrclient.net.events import DimseReceived, Event
from qrclient.net.uids import VERIFICATION
from qrclient.ops.progress import Snapshot
from qrclient.store import Store
from qrclient.tui.backend import Node, RealBackend
from qrclient.vocabulary import Level, Method, Model

pytestmark = pytest.mark.anyio


def _study(uid: str) -> RetrieveRequest:
    return RetrieveRequest.parse(Level.STUDY, Model.STUDY, [f"StudyInstanceUID={uid}"])


def _small_studies(archive: Archive) -> list[str]:
    return [s.study_instance_uid for p, s in all_studies(archive) if p.patient_id != "BIG001"]


def _ignore(snapshot: Snapshot) -> None:
    return None


def _port_is_free(port: int) -> bool:
    """Free to listen on again, as our listener would (SO_REUSEADDR, like anyio's): only
    a socket still listening there counts, not connections closing in TIME_WAIT."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_jobs_started_together_share_one_listener_and_queue(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """Several C-MOVE jobs started in one tick: one listener, two at a time, all done,
    and afterwards neither the port nor the store's lock is held."""
    studies = _small_studies(archive)[:4]
    backend = RealBackend(
        tmp_path / "store", Settings("QRCLIENT"), listen=("127.0.0.1", listen_ports[0])
    )
    node = Node(peer, Method.MOVE)
    running, peak = set[int](), [0]

    async def job(number: int, uid: str) -> RetrieveOutcome:
        def progressed(snapshot: Snapshot) -> None:
            running.add(number)  # the first report: the job has started
            peak[0] = max(peak[0], len(running))

        try:
            return await backend.retrieve(node, _study(uid), progressed)
        finally:
            running.discard(number)

    try:
        outcomes = await asyncio.gather(*(job(n, uid) for n, uid in enumerate(studies)))
    finally:
        await backend.aclose()
    assert [o.state for o in outcomes] == [RetrieveState.COMPLETE] * len(studies)
    assert all(o.received > 0 for o in outcomes)
    assert peak[0] == 2
    assert _port_is_free(listen_ports[0])
    with Store.open(tmp_path / "store") as store:
        assert len(store.instances()) == sum(o.received for o in outcomes)


async def test_a_retrieve_starting_while_the_last_one_releases(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """The next job starts while the previous one gives back the listener and store:
    it gets its own, not the ones being closed."""
    first, second = _small_studies(archive)[:2]
    backend = RealBackend(
        tmp_path / "store", Settings("QRCLIENT"), listen=("127.0.0.1", listen_ports[0])
    )
    node = Node(peer, Method.MOVE)
    follower: list[asyncio.Task[RetrieveOutcome]] = []

    def start_the_next(snapshot: Snapshot) -> None:
        if snapshot.finished and not follower:  # the first job is about to release
            follower.append(asyncio.ensure_future(backend.retrieve(node, _study(second), _ignore)))

    try:
        outcome = await backend.retrieve(node, _study(first), start_the_next)
        later = await follower[0]
    finally:
        await backend.aclose()
    assert outcome.state is RetrieveState.COMPLETE
    assert later.state is RetrieveState.COMPLETE, later.errors
    assert later.received > 0


async def test_a_refused_connection_is_reported_as_itself(tmp_path: Path) -> None:
    """Task groups wrap errors; the UI gets the error and its hint, not the group."""
    [closed] = free_ports(1)
    backend = RealBackend(tmp_path / "store", Settings("QRCLIENT"))
    node = Node(Peer("NOBODY", "127.0.0.1", closed), Method.GET)
    try:
        with pytest.raises(ConnectFailed) as raised:
            await backend.retrieve(node, _study("1.2.3"), _ignore)
    finally:
        await backend.aclose()
    assert "refused" in raised.value.message
    assert raised.value.hint


async def test_the_nodes_listen_address_and_the_fallback_to_get(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """A node's own listen address is used; when the listener cannot start, AUTO uses
    C-GET and says why."""
    first, second = _small_studies(archive)[:2]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        # The app's default address is taken; the node's own is where Orthanc sends to.
        backend = RealBackend(tmp_path / "store", Settings("QRCLIENT"), listen=("127.0.0.1", taken))
        try:
            moved = await backend.retrieve(
                Node(peer, Method.MOVE, listen=("127.0.0.1", listen_ports[0])),
                _study(first),
                _ignore,
            )
            fallback = await backend.retrieve(Node(peer, Method.AUTO), _study(second), _ignore)
        finally:
            await backend.aclose()
    assert moved.state is RetrieveState.COMPLETE, moved.errors
    assert fallback.state is RetrieveState.COMPLETE, fallback.errors
    assert fallback.notes[0].startswith("no C-MOVE to us (cannot listen on 127.0.0.1:")
    assert fallback.notes[0].endswith("using C-GET")


async def test_listener_refusals_are_counted_in_the_jobs_outcome(
    orthanc: OrthancServer,
    peer: Peer,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
) -> None:
    big = find_patient(archive, "BIG001").studies[0].study_instance_uid
    knocked: list[asyncio.Task[None]] = []

    async def knock() -> None:
        # Someone calls our listener by the wrong AE title while the move runs.
        wrong = Peer("SOMEONEELSE", "127.0.0.1", listen_ports[0])
        try:
            with pytest.raises(Exception, match="called AE title"):
                async with open_association(wrong, [ContextRequest(VERIFICATION)], Settings("X")):
                    pass
        finally:
            orthanc.resume()

    def pause_and_knock(event: Event) -> None:
        if not knocked and isinstance(event, DimseReceived) and event.command == "C-STORE-RQ":
            orthanc.pause()
            knocked.append(asyncio.ensure_future(knock()))

    backend = RealBackend(
        tmp_path / "store",
        Settings("QRCLIENT"),
        observer=pause_and_knock,
        listen=("127.0.0.1", listen_ports[0]),
    )
    try:
        outcome = await backend.retrieve(Node(peer, Method.MOVE), _study(big), _ignore)
        await knocked[0]
    finally:
        orthanc.resume()
        await backend.aclose()
    # Counted and said, apart from the errors: a stranger does not spoil the job.
    refusals = [e for e in outcome.refusals if e.startswith("our listener refused")]
    assert len(refusals) == 1
    assert outcome.refused_connections == 1
    assert "SOMEONEELSE" in refusals[0] or "called AE" in refusals[0]
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors

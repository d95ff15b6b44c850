"""What the terminal UI asks of the world, as a small protocol, and the real thing.

The UI only talks to a :class:`Backend`: the real one runs the async core against a
PACS and the local store; tests and benchmarks swap in a scripted one. Everything
DICOM happens below this line.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import anyio

from qrclient.client import Client, Connection, Local, resolve
from qrclient.config import Config
from qrclient.jobs.doctor import Report as DoctorReport
from qrclient.jobs.retrieve import RetrieveJob, RetrieveOutcome, RetrieveRequest
from qrclient.net import Peer, Settings
from qrclient.net.events import Observer
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT
from qrclient.ops.find import FindOutcome, FindResults
from qrclient.ops.progress import Progress, Snapshot
from qrclient.ops.query import Query, build_query
from qrclient.present.browse import Row, match_row, remote_totals
from qrclient.store import StoreError
from qrclient.store.jobs import Job as DurableJob
from qrclient.store.jobs import read_jobs
from qrclient.store.overview import StoreView, StudyHolding
from qrclient.vocabulary import Level, Method, Model

ProgressCallback = Callable[[Snapshot], None]


@dataclass(frozen=True, slots=True)
class Node:
    """A peer to work with and how to retrieve from it."""

    peer: Peer
    method: Method = Method.AUTO
    name: str = ""  # the configured name, "" for an ad hoc node
    settings: Settings | None = None  # the node's own timeouts, TLS...; None: the app's
    destination: str | None = None  # C-MOVE destination; None: us (our listener)
    listen: tuple[str, int] | None = None  # where our listener waits; None: the app's
    move_from: tuple[str, ...] = ()  # other addresses its C-MOVE deliveries may come from
    # The client's resolution of a configured node (qrclient.client.resolve); None: an
    # ad hoc node, resolved by the backend from the fields above and the app's settings.
    connection: Connection | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.peer})" if self.name else str(self.peer)


@dataclass(frozen=True, slots=True)
class EchoResult:
    association_ms: float
    round_trip_ms: float
    peer_version: str
    peer_class_uid: str
    peer_max_pdu: int


class Matches(Protocol):
    """A running C-FIND: iterate for rows; ``outcome`` holds the final status."""

    outcome: FindOutcome

    def __aiter__(self) -> AsyncIterator[Row]: ...


class Backend(Protocol):
    @property
    def store_root(self) -> Path: ...

    async def echo(self, node: Node) -> EchoResult: ...

    def find(self, node: Node, query: Query) -> AbstractAsyncContextManager[Matches]: ...

    async def retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        """Retrieve into the store. A backend may queue the request: the first call of
        ``on_progress`` says it has started. Errors come as themselves, not in groups."""
        ...

    def local_counts(self, level: Level, uids: list[str]) -> dict[str, int]: ...

    def holdings(self) -> list[StudyHolding]: ...

    async def remote_totals(self, node: Node, study_uids: list[str]) -> dict[str, int]: ...

    async def doctor(self, node: Node) -> DoctorReport:
        """``qrclient doctor``'s checks of ``node`` (name, TCP, association, echo, find,
        get, move back to our listener, result cap...)."""
        ...

    def stored_files(self, level: Level, uid: str) -> list[Path]:
        """The files the store holds of a study, series or instance (IMAGE) by its UID;
        StoreError if its index cannot be read."""
        ...

    def durable_jobs(self) -> list[DurableJob]:
        """The store's cohort jobs (``qrclient retrieve --from``), as the store keeps
        them across runs; StoreError if its index cannot be read."""
        ...

    async def resume(self, job_id: int) -> tuple[int, str]:
        """Resume a durable job until it ends: (exit code as ``qrclient jobs resume``
        gives it, its last error line). Cancelled: the job is interrupted, and says so."""
        ...

    async def aclose(self) -> None: ...


class _RowStream:
    """The core's stream of data sets as rows of text."""

    def __init__(self, results: FindResults) -> None:
        self._results = results
        self.outcome = results.outcome

    async def __aiter__(self) -> AsyncIterator[Row]:
        async for dataset in self._results:
            yield match_row(dataset)


class RealBackend:
    """The async core against a real PACS, into one local store.

    The store is opened (and locked) only while retrieves run; browsing reads its index
    through one read-only view without the lock. C-MOVEs to us share one storage
    listener per address, started by the first retrieve that needs it and stopped with
    the last one. At most ``max_jobs`` retrieves run at once; the others wait their turn.
    """

    def __init__(
        self,
        store_root: Path,
        settings: Settings,
        *,
        observer: Observer | None = None,
        listen: tuple[str, int] = (DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT),
        max_jobs: int = 2,
        config_path: str | None = None,
    ) -> None:
        self._store_root = Path(store_root)
        self._config_path = config_path  # for the node names of durable jobs
        self.settings = replace(settings, observer=observer) if observer else settings
        self._listen = listen
        self._view = StoreView(self._store_root)
        # The store and our listeners, shared by every node's retrieves.
        self._local = Local(self._store_root, max_jobs=max_jobs, get_if_cannot_listen=True)

    @property
    def store_root(self) -> Path:
        return self._store_root

    def _client(self, node: Node) -> Client:
        """A client for ``node`` into the app's store, always with the app's observer."""
        observer = self.settings.observer
        if node.connection is not None:
            # Our listener: the node's own address, else the app's (--listen, the file's).
            listen = node.listen or self._listen
            connection = replace(node.connection, store=self._store_root, listen=listen)
            return Client(connection.observed(observer), local=self._local)
        settings = self.settings if node.settings is None else node.settings
        connection = resolve(
            node.peer,
            Config(),
            settings=replace(settings, observer=observer),
            method=node.method,
            destination=node.destination,
            listen=node.listen or self._listen,
            store=self._store_root,
            move_from=node.move_from,
        )
        return Client(connection, local=self._local)

    async def echo(self, node: Node) -> EchoResult:
        async with self._client(node) as client:
            result = await client.echo()
        return EchoResult(
            result.association_seconds * 1000,
            result.round_trips[0] * 1000,
            result.peer_version or "?",
            result.peer_class_uid or "?",
            result.peer_max_pdu,
        )

    @asynccontextmanager
    async def _find(self, node: Node, query: Query) -> AsyncIterator[Matches]:
        async with self._client(node) as client, client.find(query) as results:
            yield _RowStream(results)  # each match once: a PACS may repeat them

    def find(self, node: Node, query: Query) -> AbstractAsyncContextManager[Matches]:
        return self._find(node, query)

    async def retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        async def follow(progress: Progress) -> None:
            async for snapshot in progress.watch(interval=0.2):
                on_progress(snapshot)

        jobs: list[RetrieveJob] = []
        async with self._client(node) as client:
            outcome = await client.retrieve(request, watch=follow, on_start=jobs.append)
        on_progress(jobs[0].progress.snapshot())
        return outcome

    def local_counts(self, level: Level, uids: list[str]) -> dict[str, int]:
        if level is Level.STUDY:
            return self._view.study_counts(uids)
        if level is Level.SERIES:
            return self._view.series_counts(uids)
        if level is Level.IMAGE:
            return self._view.present(uids)
        return {}

    def holdings(self) -> list[StudyHolding]:
        """What the store holds; reads the index (call it off the UI thread)."""
        store = self._local.store
        if store is not None:
            with suppress(StoreError):  # closed meanwhile: what is committed is enough
                store.flush()  # show what a running retrieve received so far
        return self._view.holdings()

    async def remote_totals(self, node: Node, study_uids: list[str]) -> dict[str, int]:
        async def find_rows(level: Level, keys: list[str]) -> AsyncIterator[Mapping[str, str]]:
            query = build_query(level, Model.STUDY, keys, default_keys=False)
            async with self.find(node, query) as matches:
                async for row in matches:
                    yield row

        return await remote_totals(find_rows, study_uids)

    async def doctor(self, node: Node) -> DoctorReport:
        async with self._client(node) as client:
            return await client.doctor()

    def stored_files(self, level: Level, uid: str) -> list[Path]:
        if level is Level.IMAGE:
            found = self._view.instance_file(uid)
            paths = [found] if found else []
        elif level is Level.SERIES:
            paths = self._view.series_files(uid)
        elif level is Level.STUDY:
            paths = self._view.study_files(uid)
        else:
            paths = []
        return [self._store_root / path for path in paths]

    def durable_jobs(self) -> list[DurableJob]:
        return read_jobs(self._store_root)

    async def resume(self, job_id: int) -> tuple[int, str]:
        """``qrclient jobs resume`` in a process of its own: the very resume of the
        command line (the job's kept options, its pacing, verification and report), its
        progress in the store, where the jobs panel reads it."""
        command = [sys.executable, "-m", "qrclient", "jobs", "resume", str(job_id)]
        command += ["--out", str(self._store_root), "-q", "--wait", "3600"]
        if self._config_path:
            command += ["--config", self._config_path]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, errors = await process.communicate()
        except asyncio.CancelledError:
            # As a Ctrl-C: the job records where it stopped, and stays resumable.
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                await process.wait()
            if process.returncode is None:
                process.kill()
            raise
        lines = errors.decode("utf-8", "replace").strip().splitlines()[-1:]
        return process.returncode or 0, lines[0].removeprefix("qrclient: ") if lines else ""

    async def aclose(self) -> None:
        await self._local.aclose()
        self._view.close()

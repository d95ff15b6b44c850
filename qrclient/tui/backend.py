"""What the terminal UI asks of the world, as a small protocol, and the real thing.

The UI only talks to a :class:`Backend`: the real one runs the async core against a
PACS and the local store; tests and benchmarks swap in a scripted one. Everything
DICOM happens below this line.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import anyio

from qrclient.jobs.doctor import DoctorOptions, diagnose_peer
from qrclient.jobs.doctor import Report as DoctorReport
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    move_listener,
    note_refusals,
)
from qrclient.net import ContextRequest, Peer, Settings, open_association
from qrclient.net.errors import ListenFailed
from qrclient.net.events import Observer
from qrclient.net.listener import Refusal, StorageListener
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT
from qrclient.net.uids import VERIFICATION
from qrclient.ops import echo as echo_operation
from qrclient.ops.find import FindOutcome, FindResults, find_distinct
from qrclient.ops.move import MoveRouter
from qrclient.ops.progress import Snapshot
from qrclient.ops.query import Query, build_query
from qrclient.present.browse import Row, match_row, remote_totals
from qrclient.present.failures import describe, main_error
from qrclient.store import Store, StoreError
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


class _SharedListener:
    """Our storage listener on one address, serving every retrieve that moves to us."""

    def __init__(self, router: MoveRouter) -> None:
        self.router = router
        self.listener: StorageListener | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def refusals(self) -> int:
        return len(self.listener.refusals) if self.listener is not None else 0

    def refused_since(self, count: int) -> list[Refusal]:
        return self.listener.refusals[count:] if self.listener is not None else []

    async def start(self, host: str, port: int, settings: Settings) -> None:
        """Listen on ``host:port``; raises the listener's error (e.g. ListenFailed)."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def serve() -> None:
            try:
                async with move_listener(self.router, host, port, settings) as listener:
                    self.listener = listener
                    ready.set_result(None)
                    await asyncio.Event().wait()  # until the last retrieve ends
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise

        self.task = asyncio.create_task(serve())
        try:
            await ready
        except BaseException as exc:
            await self.stop()  # collect the failed task's error: it is reported here
            raise main_error(exc) from None

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError, Exception):  # stopping: nothing to report
                await self.task


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
        self._store: Store | None = None
        self._listeners: dict[tuple[str, int], _SharedListener] = {}
        # Opening the store and listeners, and closing them, one at a time: retrieves
        # start in the same tick, and one may start while the last one's are closing.
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max_jobs)  # a big selection must not flood the PACS
        self._retrieving = 0
        self._idle = asyncio.Event()  # no retrieve running: the store may be closed
        self._idle.set()

    @property
    def store_root(self) -> Path:
        return self._store_root

    def _settings(self, node: Node) -> Settings:
        """The node's own settings when it has them, always with the app's observer."""
        if node.settings is None:
            return self.settings
        return replace(node.settings, observer=self.settings.observer)

    async def echo(self, node: Node) -> EchoResult:
        started = time.perf_counter()
        async with open_association(
            node.peer, [ContextRequest(VERIFICATION)], self._settings(node)
        ) as association:
            associated = time.perf_counter() - started
            round_trip = await echo_operation.echo(association)
        return EchoResult(
            associated * 1000,
            round_trip * 1000,
            association.peer_implementation_version_name or "?",
            str(association.peer_implementation_class_uid or "?"),
            association.peer_max_pdu or 0,
        )

    @asynccontextmanager
    async def _find(self, node: Node, query: Query) -> AsyncIterator[Matches]:
        context = ContextRequest(query.sop_class)
        async with (
            open_association(node.peer, [context], self._settings(node)) as association,
            find_distinct(association, query) as results,  # a PACS may repeat matches
        ):
            yield _RowStream(results)

    def find(self, node: Node, query: Query) -> AbstractAsyncContextManager[Matches]:
        return self._find(node, query)

    async def retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        async with self._slots:
            self._retrieving += 1
            self._idle.clear()
            try:
                return await self._retrieve(node, request, on_progress)
            except BaseExceptionGroup as group:
                # Task groups wrap what ended the job: report the error that matters.
                raise main_error(group) from None
            finally:
                self._retrieving -= 1
                if not self._retrieving:
                    # Shielded: a cancelled job must still give the store back.
                    with anyio.CancelScope(shield=True):
                        await self._release()

    async def _release(self, *, force: bool = False) -> None:
        """Between retrieves hold nothing: the store's lock (so a command-line retrieve
        can use the same store while the UI stays open) and our listeners' ports."""
        async with self._lock:
            if self._retrieving and not force:
                return  # one started while we waited: it uses what is open
            listeners, self._listeners = list(self._listeners.values()), {}
            for listener in listeners:
                await listener.stop()
            store, self._store = self._store, None
            try:
                if store is not None:
                    store.close()  # StoreError if its last rows cannot be committed
            finally:
                self._idle.set()

    async def _prepare(
        self, node: Node, settings: Settings
    ) -> tuple[Store, Method, _SharedListener | None, str]:
        """The open store, the method to use, the listener for moves to us, and a note
        when the listener cannot start and C-GET is used instead."""
        async with self._lock:
            if self._store is None:
                self._store = Store.open(self._store_root)
            store = self._store
            to_us = node.destination in (None, settings.calling_ae)
            if node.method is Method.GET or not to_us:
                return store, node.method, None, ""
            address = node.listen or self._listen
            shared = self._listeners.get(address)
            if shared is not None and shared.alive:
                if shared.router.our_ae == settings.calling_ae:
                    return store, node.method, shared, ""
                # A node with a calling AE title of its own: the PACS connects to that one.
                busy = f"our listener there answers as {shared.router.our_ae}"
                if node.method is Method.MOVE:
                    raise ListenFailed(
                        f"cannot also listen as {settings.calling_ae} on {address[1]}: {busy}",
                        "give this node its own listen address, or wait for the other retrieve",
                    )
                return store, Method.GET, None, f"no C-MOVE to us ({busy}): using C-GET"
            shared = _SharedListener(MoveRouter(settings.calling_ae, store))
            try:
                await shared.start(*address, self.settings)
            except Exception as exc:
                if node.method is Method.MOVE:
                    raise
                # No listener: C-GET is the only way left; say why.
                why, _ = describe(exc)
                return store, Method.GET, None, f"no C-MOVE to us ({why}): using C-GET"
            self._listeners[address] = shared
            return store, node.method, shared, ""

    async def _retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        settings = self._settings(node)
        store, method, shared, note = await self._prepare(node, settings)
        refused_before = shared.refusals if shared is not None else 0
        job = RetrieveJob.into_store(
            node.peer,
            request,
            store,
            settings,
            method=method,
            destination=node.destination,
            router=shared.router if shared is not None else None,
            move_from=node.move_from,
            node=node.name,
        )
        async with anyio.create_task_group() as group:

            async def follow() -> None:
                async for snapshot in job.progress.watch(interval=0.2):
                    on_progress(snapshot)

            group.start_soon(follow)
            try:
                outcome = await job.run()
            finally:
                group.cancel_scope.cancel()
                store.flush()  # the index names what arrived, even if the app is killed
        on_progress(job.progress.snapshot())
        if note:
            outcome.notes.insert(0, note)
        if shared is not None:
            # Refused while this job ran: perhaps its peer, under another AE title.
            note_refusals(outcome, shared.refused_since(refused_before))
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
        store = self._store
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
        host, port = node.listen or self._listen
        return await diagnose_peer(node.peer, self._settings(node), DoctorOptions(host, port))

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
        # Cancelled retrieves finish their C-CANCEL (a few seconds at most) before the
        # store they write into is closed.
        with anyio.move_on_after(10):
            await self._idle.wait()
        await self._release(force=True)
        self._view.close()

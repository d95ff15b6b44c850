"""What the terminal UI asks of the world, as a small protocol, and the real thing.

The UI only talks to a :class:`Backend`: the real one runs the async core against a
PACS and the local store; tests and benchmarks swap in a scripted one. Everything
DICOM happens below this line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import anyio

from qrclient.net import ContextRequest, Peer, Settings, open_association
from qrclient.net.association import Observer
from qrclient.net.presentation import VERIFICATION
from qrclient.ops import echo as echo_operation
from qrclient.ops.browse import Row, match_row, remote_totals
from qrclient.ops.find import FindOutcome, FindResults, find
from qrclient.ops.move import MoveRouter
from qrclient.ops.progress import Snapshot
from qrclient.ops.query import Level, Model, Query, build_query
from qrclient.ops.retrieve import (
    Method,
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    move_listener,
)
from qrclient.store import Store
from qrclient.store.overview import StoreView, StudyHolding

ProgressCallback = Callable[[Snapshot], None]


@dataclass(frozen=True, slots=True)
class Node:
    """A peer to work with and how to retrieve from it."""

    peer: Peer
    method: Method = Method.AUTO
    name: str = ""  # the configured name, "" for an ad hoc node
    settings: Settings | None = None  # the node's own timeouts, TLS...; None: the app's
    destination: str | None = None  # C-MOVE destination; None: us (our listener)

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
    ) -> RetrieveOutcome: ...

    def local_counts(self, level: Level, uids: list[str]) -> dict[str, int]: ...

    def holdings(self) -> list[StudyHolding]: ...

    async def remote_totals(self, node: Node, study_uids: list[str]) -> dict[str, int]: ...

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
    without the lock. C-MOVEs to us share one storage listener (one port per process),
    started by the first retrieve that needs it and stopped with the last one.
    """

    def __init__(
        self,
        store_root: Path,
        settings: Settings,
        *,
        observer: Observer | None = None,
        listen: tuple[str, int] = ("0.0.0.0", 11113),
    ) -> None:
        self._store_root = Path(store_root)
        self.settings = replace(settings, observer=observer) if observer else settings
        self._listen = listen
        self._store: Store | None = None
        self._router: MoveRouter | None = None
        self._listener: asyncio.Task[None] | None = None
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
        return replace(
            node.settings,
            calling_ae=self.settings.calling_ae,
            observer=self.settings.observer,
        )

    def _open_store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self._store_root)
        return self._store

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
            find(association, query) as results,
        ):
            yield _RowStream(results)

    def find(self, node: Node, query: Query) -> AbstractAsyncContextManager[Matches]:
        return self._find(node, query)

    async def retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        self._retrieving += 1
        self._idle.clear()
        try:
            return await self._retrieve(node, request, on_progress)
        finally:
            self._retrieving -= 1
            if not self._retrieving:
                # Shielded: a cancelled job must still give the store back.
                with anyio.CancelScope(shield=True):
                    await self._release()
                self._idle.set()

    async def _release(self) -> None:
        """Between retrieves hold nothing: the store's lock (so a command-line retrieve
        can use the same store while the UI stays open) and our listener's port."""
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError, Exception):  # stopping: nothing to report
                await self._listener
            self._listener = None
            self._router = None
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        store = self._open_store()
        settings = self._settings(node)
        method, router = node.method, None
        to_us = node.destination in (None, settings.calling_ae)
        if method is not Method.GET and to_us:
            try:
                router = await self._shared_router(store)
            except Exception:
                if method is Method.MOVE:
                    raise
                method = Method.GET  # no listener: C-GET is the only way left
        job = RetrieveJob.into_store(
            node.peer,
            request,
            store,
            settings,
            method=method,
            destination=node.destination,
            router=router,
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
        return outcome

    async def _shared_router(self, store: Store) -> MoveRouter:
        """The router of our one storage listener, started on first use."""
        if self._router is not None and self._listener is not None and not self._listener.done():
            return self._router
        router = MoveRouter(self.settings.calling_ae, store)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        host, port = self._listen

        async def serve() -> None:
            try:
                async with move_listener(router, host, port, self.settings):
                    ready.set_result(None)
                    await asyncio.Event().wait()  # until the session ends
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise

        self._listener = asyncio.create_task(serve())
        await ready
        self._router = router
        return router

    def local_counts(self, level: Level, uids: list[str]) -> dict[str, int]:
        view = StoreView(self._store_root)
        if level is Level.STUDY:
            return view.study_counts(uids)
        if level is Level.SERIES:
            return view.series_counts(uids)
        if level is Level.IMAGE:
            return view.present(uids)
        return {}

    def holdings(self) -> list[StudyHolding]:
        if self._store is not None:
            self._store.flush()  # show what a running retrieve received so far
        return StoreView(self._store_root).holdings()

    async def remote_totals(self, node: Node, study_uids: list[str]) -> dict[str, int]:
        async def find_rows(level: Level, keys: list[str]) -> AsyncIterator[Mapping[str, str]]:
            query = build_query(level, Model.STUDY, keys, default_keys=False)
            async with self.find(node, query) as matches:
                async for row in matches:
                    yield row

        return await remote_totals(find_rows, study_uids)

    async def aclose(self) -> None:
        # Cancelled retrieves finish their C-CANCEL (a few seconds at most) before the
        # store they write into is closed.
        with anyio.move_on_after(10):
            await self._idle.wait()
        await self._release()

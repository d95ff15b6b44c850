"""Our storage listener for the C-MOVEs of retrieve jobs, and what it refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from qrclient.jobs.retrieve.job import RetrieveJob
from qrclient.jobs.retrieve.model import RetrieveOutcome
from qrclient.net.listener import Refusal, StorageListener
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT
from qrclient.net.settings import Settings
from qrclient.ops.move import MoveRouter

ACCEPTANCE = (
    "our listener takes a C-MOVE's instances only from the PACS's AE title and "
    "addresses (and those in move_from), while one of our moves runs"
)


@asynccontextmanager
async def move_listener(
    router: MoveRouter | None, host: str, port: int, settings: Settings
) -> AsyncIterator[StorageListener | None]:
    """Serve our storage listener for ``router`` while the block runs (None: no listener)."""
    if router is None:
        yield None
        return
    listener = StorageListener(router.our_ae, router, host=host, port=port, settings=settings)
    async with anyio.create_task_group() as group:
        await group.start(listener.serve)
        try:
            yield listener
        finally:
            group.cancel_scope.cancel()


@asynccontextmanager
async def on_demand_listener(
    router: MoveRouter | None, host: str, port: int, settings: Settings
) -> AsyncIterator[OnDemandListener | None]:
    """As :func:`move_listener`, but the port is bound only when a job first moves to us
    (the router's ``start_listening``): a retrieve that turns out to use C-GET, or finds
    everything already here, must not fail because another program holds the port."""
    if router is None:
        yield None
        return
    async with anyio.create_task_group() as group:
        lazy = OnDemandListener(router, host, port, settings, group)
        router.start_listening = lazy.start
        try:
            yield lazy
        finally:
            router.start_listening = None
            group.cancel_scope.cancel()


class OnDemandListener:
    """A storage listener started in ``group`` the first time :meth:`start` is awaited."""

    def __init__(
        self,
        router: MoveRouter,
        host: str,
        port: int,
        settings: Settings,
        group: anyio.abc.TaskGroup,
    ) -> None:
        self._router = router
        self._address = (host, port)
        self._settings = settings
        self._group = group
        self._starting = anyio.Lock()
        self.listener: StorageListener | None = None

    async def start(self) -> None:
        async with self._starting:  # several units may move at once: bind once
            if self.listener is not None:
                return
            host, port = self._address
            listener = StorageListener(
                self._router.our_ae, self._router, host=host, port=port, settings=self._settings
            )
            await self._group.start(listener.serve)
            self.listener = listener

    @property
    def refusals(self) -> Sequence[Refusal]:
        return self.listener.refusals if self.listener is not None else ()


def note_refusals(outcome: RetrieveOutcome, refusals: Sequence[Refusal]) -> None:
    """Count the associations our listener refused while the job ran, and say why."""
    if not refusals:
        return
    outcome.refused_connections += len(refusals)
    outcome.refuse(f"our listener refused an association: {r.reason}" for r in refusals)
    outcome.notes.append(ACCEPTANCE)


async def run_with_listener(
    job: RetrieveJob, host: str = DEFAULT_LISTEN_HOST, port: int = DEFAULT_LISTEN_PORT
) -> RetrieveOutcome:
    """Run ``job`` with a listener of its own for moves to us, bound when the job first
    moves to us; refusals are counted."""
    async with on_demand_listener(job.router, host, port, job.settings) as listener:
        outcome = await job.run()
    if listener is not None:
        note_refusals(outcome, listener.refusals)
    if job.router is not None and job.router.unexpected.count:
        outcome.refused_instances += job.router.unexpected.count
        outcome.refuse(job.router.unexpected.reasons)
    return outcome

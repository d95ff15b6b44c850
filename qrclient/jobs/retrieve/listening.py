"""Our storage listener for the C-MOVEs of retrieve jobs, and what it refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from qrclient.jobs.retrieve.job import RetrieveJob
from qrclient.jobs.retrieve.model import RetrieveOutcome
from qrclient.net.association import Settings
from qrclient.net.listener import Refusal, StorageListener
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT
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
    """Run ``job`` with a listener of its own for moves to us; refusals are counted."""
    async with move_listener(job.router, host, port, job.settings) as listener:
        outcome = await job.run()
    if listener is not None:
        note_refusals(outcome, listener.refusals)
    if job.router is not None and job.router.unexpected.count:
        outcome.refused_instances += job.router.unexpected.count
        outcome.refuse(job.router.unexpected.reasons)
    return outcome

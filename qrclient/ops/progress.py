"""Progress of a retrieve: counters, rates, and a way to watch them change.

Updates are cheap (a few integer additions and an event set) because they happen once
per received instance on the hot path; watchers see the latest snapshot, never a
backlog, so a slow progress bar can never hold up the transfer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import anyio


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a retrieve has done so far; sub-operation counts are the peer's."""

    remaining: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    received: int = 0  # instances stored here (C-GET, or C-MOVE to our listener)
    received_bytes: int = 0
    skipped: int = 0  # already in the store, not fetched again
    elapsed: float = 0.0
    first_instance_after: float | None = None
    done: bool = False

    @property
    def instances_per_second(self) -> float:
        return self.received / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.received_bytes / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(slots=True)
class Progress:
    """Mutable counters behind the snapshots; one per job."""

    started: float = field(default_factory=time.perf_counter)
    _state: Snapshot = field(default_factory=Snapshot)
    _changed: anyio.Event | None = None

    def snapshot(self) -> Snapshot:
        return replace(self._state, elapsed=time.perf_counter() - self.started)

    def update(self, **changes: object) -> None:
        self._state = replace(self._state, **changes)  # type: ignore[arg-type]
        self._notify()

    def add(self, *, received: int = 0, received_bytes: int = 0, skipped: int = 0) -> None:
        state = self._state
        first = state.first_instance_after
        if received and first is None:
            first = time.perf_counter() - self.started
        self._state = replace(
            state,
            received=state.received + received,
            received_bytes=state.received_bytes + received_bytes,
            skipped=state.skipped + skipped,
            first_instance_after=first,
        )
        self._notify()

    def finish(self) -> None:
        self.update(done=True)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def watch(self, interval: float = 0.1) -> AsyncIterator[Snapshot]:
        """Yield a snapshot at most every ``interval`` seconds while it changes."""
        while True:
            snapshot = self.snapshot()
            yield snapshot
            if snapshot.done:
                return
            self._changed = self._changed or anyio.Event()
            await self._changed.wait()
            await anyio.sleep(interval)

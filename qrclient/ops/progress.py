"""Progress of a retrieve: counters, rates, and a way to watch them change.

Updates are cheap (a few integer additions and an event set) because they happen once
per received instance on the hot path; watchers see the latest snapshot, never a
backlog, so a slow progress bar can never hold up the transfer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

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
    lost: int = 0  # acknowledged to the peer, then not stored (the disk failed meanwhile)
    refused: int = 0  # instances outside the request, refused and not stored
    elapsed: float = 0.0
    first_instance_after: float | None = None
    finished: bool = False  # the retrieve has ended

    @property
    def succeeded(self) -> int:
        """Sub-operations that worked: at least what arrived here (parallel operations
        report their own counts late), or what the peer says (C-MOVE to another AE)."""
        return max(self.completed + self.warning, self.received)

    @property
    def done(self) -> int:
        """Sub-operations over, either way."""
        return self.succeeded + self.failed

    @property
    def total(self) -> int | None:
        """All sub-operations; None while the peer has not said how many remain."""
        return None if self.remaining is None else self.done + self.remaining

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the rate so far; None when unknown or nothing is left."""
        if not self.remaining or not self.done or self.elapsed <= 0:
            return None
        return self.remaining / (self.done / self.elapsed)

    @property
    def instances_per_second(self) -> float:
        return self.received / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.received_bytes / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(slots=True)
class _Counts:
    remaining: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0


class Progress:
    """Mutable counters behind the snapshots; one per job.

    Plain attributes, updated in place: a snapshot is only built when someone asks. A
    job runs several C-GET/C-MOVE operations, in parallel: each reports its own
    sub-operation counts, and the job's are their sums. Remaining is what the plan
    expects minus what is done, or, without a plan, the sum the operations report.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._expected: int | None = None
        self._operations: dict[int, _Counts] = {}
        self._received = 0
        self._received_bytes = 0
        self._skipped = 0
        self._lost = 0
        self._refused = 0
        self._first_instance_after: float | None = None
        self._finished = False
        self._changed: anyio.Event | None = None

    def snapshot(self) -> Snapshot:
        operations = self._operations.values()
        counts = Snapshot(
            completed=sum(c.completed for c in operations),
            failed=sum(c.failed for c in operations),
            warning=sum(c.warning for c in operations),
            received=self._received,
            received_bytes=self._received_bytes,
            skipped=self._skipped,
            lost=self._lost,
            refused=self._refused,
            first_instance_after=self._first_instance_after,
            finished=self._finished,
            elapsed=time.perf_counter() - self.started,
        )
        return replace(counts, remaining=self._remaining(counts.done))

    def expect(self, sub_operations: int) -> None:
        """The plan: how many sub-operations the job's operations will ask for in all."""
        self._expected = sub_operations
        self._notify()

    def update(
        self,
        operation: int,
        *,
        remaining: int | None = None,
        completed: int | None = None,
        failed: int | None = None,
        warning: int | None = None,
    ) -> None:
        """One operation's sub-operation counts as the peer reported them (None: not
        reported this time); ``operation`` tells the job's operations apart."""
        counts = self._operations.setdefault(operation, _Counts())
        counts.remaining = counts.remaining if remaining is None else remaining
        counts.completed = counts.completed if completed is None else completed
        counts.failed = counts.failed if failed is None else failed
        counts.warning = counts.warning if warning is None else warning
        self._notify()

    def _remaining(self, done: int) -> int | None:
        """The plan minus what is done (counted as Snapshot.done counts it), else what
        the operations report."""
        if self._expected is not None:
            return max(0, self._expected - done)
        reported = [c.remaining for c in self._operations.values() if c.remaining is not None]
        return sum(reported) if reported else None

    def add(
        self,
        *,
        received: int = 0,
        received_bytes: int = 0,
        skipped: int = 0,
        lost: int = 0,
        refused: int = 0,
    ) -> None:
        if received and self._first_instance_after is None:
            self._first_instance_after = time.perf_counter() - self.started
        self._received += received
        self._received_bytes += received_bytes
        self._skipped += skipped
        self._lost += lost
        self._refused += refused
        self._notify()

    def finish(self) -> None:
        self._finished = True
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def watch(self, interval: float = 0.1) -> AsyncGenerator[Snapshot, None]:
        """Yield a snapshot at most every ``interval`` seconds while it changes."""
        while True:
            snapshot = self.snapshot()
            yield snapshot
            if snapshot.finished:
                return
            self._changed = self._changed or anyio.Event()
            await self._changed.wait()
            await anyio.sleep(interval)

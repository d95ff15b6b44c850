"""Retrieve jobs as the UI tracks them: what was asked, how far it got, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from textual.worker import Worker

from qrclient.jobs.retrieve import RetrieveOutcome, RetrieveRequest, RetrieveState
from qrclient.ops.progress import Snapshot
from qrclient.tui.backend import Node


class JobState(Enum):
    QUEUED = "queued"  # waiting for a free slot: the backend runs a few at a time
    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"
    NOT_FOUND = "not found"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)

    @property
    def retryable(self) -> bool:
        return self in (JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED)


@dataclass(eq=False)
class Job:
    id: int
    label: str
    node: Node
    request: RetrieveRequest
    state: JobState = JobState.QUEUED
    snapshot: Snapshot = field(default_factory=Snapshot)
    outcome: RetrieveOutcome | None = None
    error: str = ""
    attempts: int = 1
    worker: Worker[None] | None = None

    def finish(self, outcome: RetrieveOutcome | None, error: str = "") -> None:
        self.outcome, self.error = outcome, error
        if outcome is None:
            self.state = JobState.FAILED if error else JobState.CANCELLED
            return
        self.state = {
            RetrieveState.COMPLETE: JobState.COMPLETE,
            RetrieveState.PARTIAL: JobState.PARTIAL,
            RetrieveState.FAILED: JobState.FAILED,
            RetrieveState.NOT_FOUND: JobState.NOT_FOUND,
        }[outcome.state]
        if outcome.cancelled and outcome.state is RetrieveState.FAILED:
            self.state = JobState.CANCELLED
        if not error and outcome.errors:
            self.error = outcome.errors[0]


def progress_line(snapshot: Snapshot) -> str:
    """Sub-operations done / failed / remaining, rate and time left."""
    parts = [f"{snapshot.received} received"]
    if snapshot.skipped:
        parts.append(f"{snapshot.skipped} already here")
    parts.append(f"{snapshot.succeeded} done")
    parts.append(f"{snapshot.failed} failed")
    if snapshot.refused:
        parts.append(f"{snapshot.refused} refused")
    if snapshot.remaining is not None:
        parts.append(f"{snapshot.remaining} remaining")
    parts.append(f"{snapshot.megabytes_per_second:.1f} MB/s")
    eta = snapshot.eta_seconds
    if eta is not None and not snapshot.finished:
        parts.append(f"ETA {_duration(eta)}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = int(seconds) // 60
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{int(seconds) % 60:02d}"
        if minutes >= 60
        else (f"{minutes}:{int(seconds) % 60:02d}")
    )


def fraction(snapshot: Snapshot) -> tuple[float, float | None]:
    """(progress, total) for a progress bar; total None while unknown."""
    total = snapshot.total
    return float(snapshot.done), None if total is None else float(total)

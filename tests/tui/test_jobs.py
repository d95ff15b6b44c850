"""How a job's progress and end are told: done / failed / remaining, rate, ETA, state."""

from __future__ import annotations

from qrclient.jobs.retrieve import RetrieveOutcome, RetrieveRequest
from qrclient.net import Peer
from qrclient.ops.progress import Snapshot
from qrclient.tui.backend import Node
from qrclient.tui.jobs import Job, JobState, fraction, progress_line
from qrclient.vocabulary import Level, Model


def _job() -> Job:
    request = RetrieveRequest.parse(Level.STUDY, Model.STUDY, ["StudyInstanceUID=1.2"])
    return Job(1, "1 study", Node(Peer("PACS", "127.0.0.1", 104)), request)


def test_progress_line_counts_rate_and_time_left() -> None:
    snapshot = Snapshot(
        remaining=150, completed=50, failed=2, received=50, received_bytes=25_000_000,
        skipped=10, elapsed=10.0,
    )  # fmt: skip
    assert progress_line(snapshot) == (
        "50 received · 10 already here · 50 done · 2 failed · 150 remaining · 2.5 MB/s · ETA 29 s"
    )
    assert fraction(snapshot) == (52.0, 202.0)


def test_progress_before_the_peer_reports_counts() -> None:
    snapshot = Snapshot(received=3, received_bytes=1_000_000, elapsed=2.0)
    assert fraction(snapshot) == (3.0, None)  # an indeterminate bar
    assert "ETA" not in progress_line(snapshot)


def test_long_eta_in_minutes() -> None:
    snapshot = Snapshot(remaining=5000, completed=10, received=10, elapsed=10.0)
    assert progress_line(snapshot).endswith("ETA 1:23:20")


def _ended(outcome: RetrieveOutcome | None, error: str = "") -> tuple[JobState, str]:
    job = _job()
    job.finish(outcome, error)
    return job.state, job.error


def test_job_states_from_outcomes() -> None:
    assert _ended(RetrieveOutcome(planned=5, received=5)) == (JobState.COMPLETE, "")
    partial = RetrieveOutcome(planned=5, received=3, failed=2, errors=["lost"])
    assert _ended(partial) == (JobState.PARTIAL, "lost")
    assert JobState.PARTIAL.retryable
    assert not JobState.COMPLETE.retryable
    assert _ended(RetrieveOutcome(planned=0)) == (JobState.NOT_FOUND, "")
    assert _ended(None) == (JobState.CANCELLED, "")
    assert _ended(None, "connection refused") == (JobState.FAILED, "connection refused")

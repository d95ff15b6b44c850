"""The jobs panel: every retrieve of the session with its progress; cancel and retry."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Label, ProgressBar, Static

from qrclient.jobs.retrieve import RetrieveRequest
from qrclient.ops.progress import Snapshot
from qrclient.present.failures import describe
from qrclient.present.printable import printable
from qrclient.tui.backend import Backend, Node
from qrclient.tui.jobs import Job, JobState, fraction, progress_line
from qrclient.tui.messages import JobFinished, JobProgressed, Note, Report


class JobView(Vertical, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel", "Cancel job"),
        Binding("r", "retry", "Retry job"),
    ]

    class Cancel(Message):
        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    class Retry(Message):
        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, job: Job) -> None:
        super().__init__(id=f"job-{job.id}")
        self.job = job

    def compose(self) -> ComposeResult:
        with Horizontal():
            # The label names what was selected: values from the peer, shown as text.
            title = printable(f"#{self.job.id} {self.job.label} from {self.job.node}")
            yield Label(title, classes="job-title", markup=False)
            yield Label("", classes="job-state")
        yield ProgressBar(show_eta=False, classes="job-bar")
        yield Static("", classes="job-detail")
        yield Static("", classes="job-error", markup=False)

    def on_mount(self) -> None:
        self.refresh_job()

    def refresh_job(self) -> None:
        job = self.job
        snapshot = job.snapshot
        try:
            state_label = self.query_one(".job-state", Label)
        except NoMatches:
            return  # not composed yet: its on_mount shows the job as it is then
        state_label.update(job.state.value)
        progress, total = fraction(snapshot)
        bar = self.query_one(ProgressBar)
        if job.state is JobState.COMPLETE and total is None:
            total = progress = max(1.0, progress)
        bar.update(total=total, progress=progress)
        self.query_one(".job-detail", Static).update(progress_line(snapshot))
        self.query_one(".job-error", Static).update(printable(job.error))
        for state in JobState:
            self.set_class(job.state is state, f"-{state.name.lower().replace('_', '-')}")

    def action_cancel(self) -> None:
        self.post_message(self.Cancel(self.job.id))

    def action_retry(self) -> None:
        self.post_message(self.Retry(self.job.id))


class JobsPanel(VerticalScroll):
    """Every retrieve of the session, newest first; runs them through the backend."""

    class JobEnded(Message):
        """A job ended (whatever its state): what the store holds changed."""

        def __init__(self, job: Job) -> None:
            super().__init__()
            self.job = job

    def __init__(self, backend: Backend, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.backend = backend
        self.jobs: dict[int, Job] = {}

    def compose(self) -> ComposeResult:
        yield Static(
            "No retrieves yet. Select rows in the results (space, a) and press r.", id="no-jobs"
        )

    @property
    def shown(self) -> bool:
        """On screen (its tab is the active one)."""
        return self.is_mounted and all(
            node.display for node in self.ancestors_with_self if isinstance(node, Widget)
        )

    @property
    def running(self) -> list[Job]:
        return [job for job in self.jobs.values() if not job.state.ended]

    def start(self, label: str, node: Node, request: RetrieveRequest) -> Job:
        """A new job, shown first and started (queued until the backend has a slot)."""
        job = Job(len(self.jobs) + 1, label, node, request)
        self.jobs[job.id] = job
        self.query_one("#no-jobs").display = False
        self.mount(JobView(job), before=0)
        self._run(job)
        return job

    def focus_first(self) -> None:
        views = self.query(JobView)
        if views:
            views.first().focus()

    def _run(self, job: Job) -> None:
        job.state = JobState.QUEUED  # until the backend starts it and reports progress
        job.error = ""
        job.worker = self.run_worker(
            self._retrieve(job), group=f"job-{job.id}", exit_on_error=False
        )

    async def _retrieve(self, job: Job) -> None:
        def progressed(snapshot: Snapshot) -> None:
            self.post_message(JobProgressed(job.id, snapshot))

        try:
            outcome = await self.backend.retrieve(job.node, job.request, progressed)
        except asyncio.CancelledError:
            self.post_message(JobFinished(job.id, None))
            raise
        except Exception as exc:
            self.post_message(JobFinished(job.id, None, *describe(exc)))
        else:
            self.post_message(JobFinished(job.id, outcome))

    def refresh_job(self, job: Job) -> None:
        try:
            view = self.query_one(f"#job-{job.id}", JobView)
        except NoMatches:
            return  # not mounted yet: it shows the job when it is
        view.refresh_job()

    def on_job_progressed(self, event: JobProgressed) -> None:
        job = self.jobs.get(event.job_id)
        if job is not None and not job.state.ended:
            job.state = JobState.RUNNING
            job.snapshot = event.snapshot
            self.refresh_job(job)

    def on_job_finished(self, event: JobFinished) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        job.finish(event.outcome, event.error)
        self.refresh_job(job)
        outcome = event.outcome
        summary = f"job #{job.id} {job.label}: {job.state.value}"
        notes: list[str] = []
        if outcome is not None:
            summary += f", {outcome.received} received, {outcome.skipped} already here"
            summary += f", {outcome.failed} failed"
            if outcome.refused_instances or outcome.refused_connections:
                summary += (
                    f", refused {outcome.refused_instances} instances and "
                    f"{outcome.refused_connections} connections"
                )
            notes += [f"job #{job.id}: {refusal}" for refusal in outcome.refusals[:10]]
            notes += [f"job #{job.id}: {note}" for note in outcome.notes]
            notes += [f"job #{job.id} error: {error}" for error in outcome.errors[:10]]
        for note in [*notes, summary]:
            self.post_message(Note(note))
        if self.shown:
            pass  # the job's own line says it: a toast would only cover the jobs below
        elif job.state is JobState.COMPLETE:
            self.notify(summary, title="Retrieve")
        elif job.state is JobState.CANCELLED:
            self.notify(summary, title="Retrieve", severity="warning")
        else:
            self.post_message(Report(job.error or summary, event.hint, f"Retrieve #{job.id}"))
        self.post_message(self.JobEnded(job))

    def on_job_view_cancel(self, event: JobView.Cancel) -> None:
        job = self.jobs.get(event.job_id)
        if job is not None and job.worker is not None and job.worker.is_running:
            job.worker.cancel()

    def on_job_view_retry(self, event: JobView.Retry) -> None:
        job = self.jobs.get(event.job_id)
        if job is None or not job.state.retryable:
            self.notify("only failed, partial or cancelled jobs can be retried", title="Retry")
            return
        job.attempts += 1
        self._run(job)
        self.refresh_job(job)

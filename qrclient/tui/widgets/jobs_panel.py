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
from textual.worker import Worker

from qrclient.jobs.retrieve import RetrieveRequest
from qrclient.ops.progress import Snapshot
from qrclient.present.failures import describe
from qrclient.present.printable import printable
from qrclient.store import StoreError
from qrclient.store.jobs import Job as DurableJob
from qrclient.tui.backend import Backend, Node
from qrclient.tui.jobs import Job, JobState, fraction, progress_line
from qrclient.tui.messages import JobFinished, JobProgressed, Note, Report, ResumeEnded


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


def describe_durable(job: DurableJob, resuming: bool) -> str:
    """One line for a job the store keeps (a cohort: ``retrieve --from``)."""
    state = "resuming…" if resuming else job.state.value
    source = f" ({job.source})" if job.source else ""
    return (
        f"store job #{job.id} {job.command} from {job.node}{source}: "
        f"{job.done}/{job.total} rows done · {state} · {job.updated_at}"
    )


class DurableJobView(Static, can_focus=True):
    """A job kept in the store across runs; r resumes it, c stops the resume."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "resume", "Resume job"),
        Binding("c", "stop", "Stop resume"),
    ]

    class Resume(Message):
        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    class Stop(Message):
        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, job: DurableJob, resuming: bool) -> None:
        super().__init__(id=f"durable-{job.id}", markup=False)
        self.job_id = job.id
        self.show(job, resuming)

    def show(self, job: DurableJob, resuming: bool) -> None:
        self.update(printable(describe_durable(job, resuming)))  # names from a file
        self.set_class(resuming, "-running")

    def action_resume(self) -> None:
        self.post_message(self.Resume(self.job_id))

    def action_stop(self) -> None:
        self.post_message(self.Stop(self.job_id))


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
        self.durable: list[DurableJob] = []
        self.resuming: dict[int, Worker[None]] = {}  # durable job id -> its resume

    def compose(self) -> ComposeResult:
        yield Static(
            "No retrieves yet. Select rows in the results (space, a) and press r.", id="no-jobs"
        )
        with Vertical(id="durable"):
            yield Label("Jobs kept in the store (r resumes one)", classes="durable-title")

    def on_mount(self) -> None:
        self.load_durable()
        self.set_interval(1.0, self._follow_resumes)

    # -- the store's durable jobs ------------------------------------------------------

    def load_durable(self) -> None:
        """The store's jobs as it keeps them now (a resume writes its progress there)."""
        try:
            self.durable = self.backend.durable_jobs()
        except StoreError as exc:
            self.post_message(Report(str(exc), title="Store jobs"))
            self.durable = []
        box = self.query_one("#durable", Vertical)
        box.display = bool(self.durable)
        shown = {view.job_id: view for view in box.query(DurableJobView)}
        for job in self.durable:
            resuming = job.id in self.resuming
            if job.id in shown:
                shown.pop(job.id).show(job, resuming)
            else:
                box.mount(DurableJobView(job, resuming))
        for view in shown.values():
            view.remove()

    def _follow_resumes(self) -> None:
        if self.resuming:
            self.load_durable()

    def on_durable_job_view_resume(self, event: DurableJobView.Resume) -> None:
        job = next((j for j in self.durable if j.id == event.job_id), None)
        if job is None or event.job_id in self.resuming:
            return
        if not job.resumable:
            self.notify(f"store job #{job.id} is finished: nothing to resume", title="Resume")
            return
        self.resuming[job.id] = self.run_worker(
            self._resume(job.id), group=f"durable-{job.id}", exit_on_error=False
        )
        self.load_durable()
        self.post_message(Note(f"store job #{job.id}: resuming"))

    def on_durable_job_view_stop(self, event: DurableJobView.Stop) -> None:
        worker = self.resuming.get(event.job_id)
        if worker is not None:
            worker.cancel()

    async def _resume(self, job_id: int) -> None:
        try:
            code, error = await self.backend.resume(job_id)
        except asyncio.CancelledError:
            self.post_message(ResumeEnded(job_id, None, ""))
            raise
        except Exception as exc:
            self.post_message(ResumeEnded(job_id, None, describe(exc)[0]))
        else:
            self.post_message(ResumeEnded(job_id, code, error))

    def on_resume_ended(self, event: ResumeEnded) -> None:
        self.resuming.pop(event.job_id, None)
        self.load_durable()
        job = next((j for j in self.durable if j.id == event.job_id), None)
        done = f", {job.done}/{job.total} rows done" if job is not None else ""
        if event.code == 0:
            self.post_message(Note(f"store job #{event.job_id}: finished{done}"))
            if not self.shown:
                self.notify(f"store job #{event.job_id} finished{done}", title="Resume")
        elif event.code is None and not event.error:
            self.post_message(Note(f"store job #{event.job_id}: stopped{done}; r resumes it"))
        else:
            why = event.error or f"exit code {event.code}"
            self.post_message(Report(f"store job #{event.job_id}: {why}{done}", "", "Resume"))

    @property
    def shown(self) -> bool:
        """On screen (its tab is the active one)."""
        return self.is_mounted and all(
            node.display for node in self.ancestors_with_self if isinstance(node, Widget)
        )

    @property
    def running(self) -> list[Job]:
        return [job for job in self.jobs.values() if not job.state.ended]

    @property
    def busy(self) -> int:
        """Retrieves and resumes still running: what quitting would stop."""
        return len(self.running) + len(self.resuming)

    def start(self, label: str, node: Node, request: RetrieveRequest) -> Job:
        """A new job, shown first and started (queued until the backend has a slot)."""
        job = Job(len(self.jobs) + 1, label, node, request)
        self.jobs[job.id] = job
        self.query_one("#no-jobs").display = False
        self.mount(JobView(job), before=0)
        self._run(job)
        return job

    def focus_first(self) -> None:
        for kind in (JobView, DurableJobView):
            views = self.query(kind)
            if views:
                views.first().focus()
                return

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

"""The jobs panel: every retrieve of the session with its progress; cancel and retry."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Label, ProgressBar, Static

from qrclient.present.printable import printable
from qrclient.tui.jobs import Job, JobState, fraction, progress_line


class JobView(Vertical, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel", "Cancel job"),
        Binding("r", "retry", "Retry job"),
    ]

    DEFAULT_CSS = """
    JobView {
        height: auto;
        padding: 0 1;
        border-left: blank;
    }
    JobView:focus {
        background: $boost;
        border-left: thick $accent;
    }
    JobView > Horizontal {
        height: 1;
    }
    JobView .job-title {
        width: 1fr;
        text-style: bold;
    }
    JobView .job-state {
        width: auto;
    }
    JobView.-complete .job-state { color: $success; }
    JobView.-partial .job-state { color: $warning; }
    JobView.-failed .job-state { color: $error; }
    JobView.-cancelled .job-state { color: $warning; }
    JobView .job-detail {
        color: $text-muted;
    }
    JobView .job-error {
        color: $error;
    }
    JobView ProgressBar Bar {
        width: 1fr;
    }
    """

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
    DEFAULT_CSS = """
    JobsPanel > #no-jobs {
        color: $text-muted;
        padding: 1 2;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(
            "No retrieves yet. Select rows in the results (space, a) and press r.", id="no-jobs"
        )

    def add_job(self, job: Job) -> None:
        self.query_one("#no-jobs").display = False
        view = JobView(job)
        self.mount(view, before=0)

    def refresh_job(self, job: Job) -> None:
        try:
            view = self.query_one(f"#job-{job.id}", JobView)
        except NoMatches:
            return  # not mounted yet: it shows the job when it is
        view.refresh_job()

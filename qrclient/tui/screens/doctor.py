"""The doctor (f7) for the node in the node bar: ``qrclient doctor``'s report, in the UI."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from qrclient.jobs.doctor import Report, State, Verdict
from qrclient.present.doctor import report_lines
from qrclient.present.failures import describe
from qrclient.present.printable import printable
from qrclient.tui.backend import Backend, Node


class DoctorScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Close"),
        Binding("f7", "run", "Run again"),
    ]

    def __init__(self, backend: Backend, node: Node) -> None:
        super().__init__()
        self.backend = backend
        self.node = node
        self.report: Report | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="doctor-caption", markup=False)
        with VerticalScroll(id="doctor"):
            yield Static("", id="doctor-report", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        self.report = None
        self._caption(f"doctor: checking {self.node}… (up to half a minute)", "-running")
        self.query_one("#doctor-report", Static).update("")
        self.run_worker(self._diagnose(), group="doctor", exclusive=True, exit_on_error=False)

    async def _diagnose(self) -> None:
        try:
            report = await self.backend.doctor(self.node)
        except Exception as exc:  # the doctor reports what it can; this is a bug's way out
            message, hint = describe(exc)
            self._caption(f"doctor: {message}", "-error")
            self.query_one("#doctor-report", Static).update(printable(hint))
            return
        self.report = report
        kind = {
            Verdict.HEALTHY: "-ok",
            Verdict.PROBLEMS: "-warning",
            Verdict.UNREACHABLE: "-error",
        }[report.verdict]
        failed = sum(c.state is State.FAILED for c in report.checks)
        self._caption(f"doctor: {self.node}: {report.verdict.value}, {failed} failed", kind)
        self.query_one("#doctor-report", Static).update("\n".join(report_lines(report)))

    def _caption(self, text: str, kind: str) -> None:
        caption = self.query_one("#doctor-caption", Static)
        caption.update(printable(text))
        for name in ("-running", "-ok", "-warning", "-error"):
            caption.set_class(name == kind, name)

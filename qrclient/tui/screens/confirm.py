"""Asked before quitting while jobs run: they would stop (a durable one stays resumable)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class ConfirmQuit(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "dismiss(True)", "Quit"),
        Binding("n,escape", "dismiss(False)", "Stay"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        jobs = "1 job is" if self.running == 1 else f"{self.running} jobs are"
        with Vertical(id="confirm"):
            yield Label(f"{jobs} still running: quitting stops them.")
            yield Label("A store job can be resumed later; a retrieve can be run again.")
            yield Label("Quit now? y: quit · n or escape: stay", classes="hint")

"""The query history (ctrl+r): run a past query again, or put it in the form to edit."""

from __future__ import annotations

from typing import ClassVar, Literal

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from qrclient.present.printable import printable
from qrclient.tui.history import Entry

Choice = tuple[Literal["run", "edit"], Entry]


class HistoryScreen(ModalScreen[Choice | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("e", "edit", "Edit in the form"),
        Binding("enter", "run", "Run again", priority=True),
    ]

    def __init__(self, entries: list[Entry]) -> None:
        super().__init__()
        self.entries = list(reversed(entries))  # newest first

    def compose(self) -> ComposeResult:
        with Vertical(id="history"):
            yield Label("Past queries: enter runs one again, e puts it in the form, escape closes")
            # The queries quote patients: plain text, never markup.
            options = [Option(printable(e.describe())) for e in self.entries]
            yield OptionList(*options, id="history-list")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        if not self.entries:
            self.query_one(Label).update("No past queries yet in this store.")

    def _chosen(self) -> Entry | None:
        index = self.query_one(OptionList).highlighted
        return self.entries[index] if index is not None and self.entries else None

    def action_run(self) -> None:
        entry = self._chosen()
        self.dismiss(("run", entry) if entry else None)

    def action_edit(self) -> None:
        entry = self._chosen()
        self.dismiss(("edit", entry) if entry else None)

"""The help screen (``?``): every key binding, grouped by where it works."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("Anywhere", "f1 ?", "this help (? outside text fields)"),
    ("", "f6", "echo the node (or enter in the node field)"),
    ("", "f7", "doctor: every check of the node, what is wrong and how to fix it"),
    ("", "ctrl+f", "go to the query form; tab / shift+tab: next / previous field"),
    ("", "ctrl+r", "past queries (kept in the store): enter runs one again, e edits it"),
    ("", "f2 f3 f4 f5", "results, jobs, store, log"),
    ("", "escape", "cancel the running query (C-CANCEL, then abort)"),
    ("", "ctrl+q", "quit"),
    ("Query form", "enter", "run the query; empty fields match everything at that level"),
    ("Results", "enter", "open: a patient's studies, a study's series, a series' images"),
    ("", "backspace", "up one level"),
    ("", "space", "select the row (again: unselect) and move down to the next"),
    ("", "a", "select all rows shown (again: none)"),
    ("", "r", "retrieve the selection, or the row, into the local store"),
    ("", "← → s", "choose a column (scrolls to the rest), sort by it (again: reverse)"),
    ("", "/", "filter the rows shown (case and accents ignored); enter: back to the table"),
    ("", "c  C", "copy the row's UID / the whole row (tab-separated) to the clipboard"),
    ("", "x", "export the rows shown to a file: .csv, .ndjson or .json"),
    ("", "i", "the row's header: tags, VRs, values; / searches (the file if stored)"),
    ("", "v", "preview the stored images of the row; ← → page through the series"),
    ("Jobs", "c", "cancel the job"),
    ("", "r", "retry a failed, partial or cancelled job (fetches what is missing)"),
    ("Store", "r", "fetch what is missing of the study or series under the cursor"),
    ("", "u", "update the list"),
    ("", "t", "count what the node holds of each study and series"),
)

MATCHING = (
    "Fields take DICOM matching: * and ? wildcards, dates YYYYMMDD or YYYY-MM-DD, "
    "lists with \\. More keys: KEY=VALUE (match) or KEY (return it), separated by "
    "spaces, e.g. BodyPartExamined=CHEST InstitutionName."
)


def key_table() -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for where, keys, what in KEYS:
        table.add_row(where, keys, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "qrclient keys (escape closes)"
            yield Static(key_table())
            yield Static(Text(MATCHING), id="matching")

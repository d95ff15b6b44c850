"""Browsing: the results of a query, drill-down and back up, filter, selection.

The panel runs the C-FINDs itself through the backend it is given; it tells the screen
what it cannot do alone by messages: a retrieve wanted, an error to report, a line for
the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Static

from qrclient.ops.find import FindState
from qrclient.ops.query import Query, QueryError, build_query
from qrclient.present.browse import (
    Row,
    Selection,
    child_level,
    count_column,
    drill_keys,
    level_noun,
    ordered_columns,
    path_label,
    retrieve_selections,
    unique_key,
)
from qrclient.present.failures import describe
from qrclient.present.printable import printable
from qrclient.store import StoreError
from qrclient.tui.backend import Backend, Node
from qrclient.tui.messages import FindEnded, MatchesArrived, Note, Report
from qrclient.tui.widgets.breadcrumb import Breadcrumb
from qrclient.tui.widgets.results import ResultsTable
from qrclient.vocabulary import Level, Model

if TYPE_CHECKING:
    from textual.worker import Worker

HERE = "Here"
BATCH_SECONDS = 0.1  # rows reach the table at most this often while a query streams
YIELD_SECONDS = 0.002  # the find loop lets key presses through at least this often


# The UIDs of the levels above each level: repeated on every row when the query pins them.
_PARENT_UIDS = {
    Level.SERIES: ("StudyInstanceUID",),
    Level.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID"),
}


def _columns(query: Query) -> list[str]:
    """The query's columns, with Here (how much the store holds) before the UIDs, and
    without a parent's UID that the query matches exactly (the breadcrumb names it)."""
    pinned = {
        key.name
        for key in query.keys
        if key.name in _PARENT_UIDS.get(query.level, ())
        and key.value
        and "\\" not in key.value
        and not any(c in key.value for c in "*?")
    }
    columns = [c for c in ordered_columns(query.level, query.return_keywords) if c not in pinned]
    if query.level is not Level.PATIENT:
        first_uid = next((n for n, c in enumerate(columns) if c.endswith("UID")), len(columns))
        columns.insert(first_uid, HERE)
    return columns


@dataclass(slots=True)
class Place:
    """One level of the browse path: the query that filled the table, and its rows.

    The node is the one the first query went to: the UIDs below it are that node's,
    whatever the node field says later.
    """

    node: Node
    level: Level
    model: Model
    keys: list[str]
    label: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    cursor: int = 0
    complete: bool = False
    status: str = ""  # how its query ended, shown again on the way back up


class BrowsePanel(Vertical):
    """Breadcrumb, results table, status line and filter; runs the queries."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retrieve", "Retrieve"),
        Binding("backspace", "up", "Up", show=False),
        Binding("slash", "filter", "Filter", show=False),
        Binding("c", "copy_uid", "Copy UID", show=False),
        Binding("C", "copy_row", "Copy row", show=False),
        Binding("x", "export", "Export", show=False),
        Binding("i", "header", "Header", show=False),
        Binding("v", "preview", "View", show=False),
    ]

    class RetrieveWanted(Message):
        """Retrieve ``selections`` from ``node``; ``parent`` names where they are."""

        def __init__(self, node: Node, level: Level, selections: list[Selection], parent: str):
            super().__init__()
            self.node = node
            self.level = level
            self.selections = selections
            self.parent = parent

    def __init__(
        self, backend: Backend, *, clock: Callable[[], float], id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.backend = backend
        self.clock = clock  # durations shown; fixed in snapshot tests
        self.places: list[Place] = []
        self.generation = 0
        self.find_worker: Worker[None] | None = None
        self.find_started = 0.0
        self._store_broken = False

    def compose(self) -> ComposeResult:
        yield Breadcrumb(id="breadcrumb")
        yield ResultsTable(id="results-table")
        with Horizontal(id="filter-bar"):
            yield Static("", id="results-status", markup=False)
            yield Static("", id="selection")
            yield Input(placeholder="/ filter", id="filter", compact=True)

    def on_mount(self) -> None:
        self.query_one(Breadcrumb).show(["no query yet: fill in the form and press Enter"])
        self.show_status("Enter runs the query · ? help")

    @property
    def table(self) -> ResultsTable:
        return self.query_one(ResultsTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#filter", Input)

    def show_status(self, text: str, kind: str = "") -> None:
        status = self.query_one("#results-status", Static)
        status.update(printable(text), layout=False)  # fixed size: no layout for each batch
        for name in ("running", "error", "warning"):
            status.set_class(kind == name, f"-{name}")

    def _report(self, message: str, hint: str = "", title: str = "Error") -> None:
        self.post_message(Report(message, hint, title))

    def _note(self, text: str) -> None:
        self.post_message(Note(text))

    # -- querying ----------------------------------------------------------------------

    def run_query(self, node: Node, level: Level, model: Model, keys: list[str]) -> None:
        """A new query from the form: the browse path starts again at its level."""
        try:
            query = build_query(level, model, keys)
        except QueryError as exc:
            self._report(str(exc), title="Query")
            return
        label = f"{level.value.lower()} query"
        if keys:
            label += " " + " ".join(keys)
        self.places = [Place(node, level, model, keys, label, _columns(query))]
        self._store_broken = False  # a new query: try the store again
        self._start_find(query)
        self.table.focus()

    def _start_find(self, query: Query) -> None:
        self.cancel_find()
        self.generation += 1
        place = self.places[-1]
        node = place.node
        self.table.set_columns(place.columns)
        if place.level is Level.IMAGE and "InstanceNumber" in place.columns:
            self.table.sort_by("InstanceNumber")  # a PACS answers in any order
        self.filter_input.value = ""
        self._show_path()
        for warning in query.warnings:
            self._note(f"warning: {warning}")
        self.show_status(f"querying {node} at {place.level.value.lower()} level…", "running")
        self.find_started = self.clock()
        self.find_worker = self.run_worker(
            self._find(node, query, self.generation),
            group="find",
            exclusive=True,
            exit_on_error=False,
        )
        self.screen.refresh_bindings()

    @property
    def finding(self) -> bool:
        return self.find_worker is not None and self.find_worker.is_running

    def cancel_find(self) -> None:
        if self.find_worker is not None and self.find_worker.is_running:
            self.find_worker.cancel()

    def cancel_query(self) -> bool:
        """Escape: cancel the running query, or leave the filter; False if neither."""
        if self.finding:
            self.cancel_find()
            self.show_status(f"{self.table.row_count:,} matches, cancelling…", "warning")
            return True
        if self.screen.focused is self.filter_input:
            self.filter_input.value = ""
            self.table.focus()
            return True
        return False

    async def _find(self, node: Node, query: Query, generation: int) -> None:
        started = self.clock()
        matches = None
        batch: list[Row] = []
        try:
            async with self.backend.find(node, query) as matches:
                posted = yielded = time.perf_counter()
                async for row in matches:
                    batch.append(row)
                    now = time.perf_counter()
                    if now - yielded >= YIELD_SECONDS:
                        if now - posted >= BATCH_SECONDS:
                            self.post_message(MatchesArrived(generation, batch))
                            batch, posted = [], now
                        await asyncio.sleep(0)  # matches may come from a buffer: let keys in
                        yielded = time.perf_counter()
        except asyncio.CancelledError:
            self._end_find(generation, batch, matches, started)
            raise
        except Exception as exc:
            self.post_message(MatchesArrived(generation, batch))
            self.post_message(FindEnded(generation, None, 0.0, *describe(exc)))
        else:
            self._end_find(generation, batch, matches, started)

    def _end_find(self, generation: int, batch: list[Row], matches: object, started: float) -> None:
        self.post_message(MatchesArrived(generation, batch))
        outcome = getattr(matches, "outcome", None)
        self.post_message(FindEnded(generation, outcome, self.clock() - started))

    def on_matches_arrived(self, event: MatchesArrived) -> None:
        if event.generation != self.generation or not event.rows:
            return
        self._fill_local_counts(event.rows)
        self.table.add_rows(event.rows)
        elapsed = self.clock() - self.find_started
        self.show_status(f"{self.table.row_count:,} matches so far… ({elapsed:.1f} s)", "running")
        self._show_selection()

    def on_find_ended(self, event: FindEnded) -> None:
        if event.generation != self.generation:
            return
        self.screen.refresh_bindings()
        count = self.table.row_count
        place = self.places[-1] if self.places else None
        outcome = event.outcome
        if outcome is None or event.error:
            self.show_status(f"{count:,} matches, failed: {event.error}", "error")
            self._report(event.error or "the query failed", event.hint, title="Query")
            return
        status = f", {outcome.status}" if outcome.status else ""
        text = f"{count:,} matches, {outcome.state.value}{status}, {event.seconds:.2f} s"
        kind = ""
        if outcome.state is FindState.CANCELLED:
            text = f"{count:,} matches, cancelled" + (" (aborted)" if outcome.aborted else "")
            kind = "warning"
        elif outcome.state in (FindState.TRUNCATED, FindState.WARNING):
            kind = "warning"
        if place is not None:
            place.complete = outcome.state in (FindState.SUCCESS, FindState.WARNING)
            place.status = text
        for warning in outcome.warnings:
            self._note(f"warning: {warning}")
        if outcome.state is FindState.TRUNCATED:
            self.notify(outcome.warnings[-1], title="Query", severity="warning")
        self.show_status(text, kind)
        self._note(f"query: {text}")

    def _fill_local_counts(self, rows: list[Row]) -> None:
        """The Here column: how much of each match the local store already holds."""
        if not self.places or self._store_broken:
            return
        level = self.places[-1].level
        if level is Level.PATIENT:
            return
        key = unique_key(level)
        uids = [row[key] for row in rows if row.get(key)]
        try:
            counts = self.backend.local_counts(level, uids)
        except StoreError as exc:
            self._store_broken = True
            self._report(str(exc), title="Store")
            return
        total_key = count_column(level)
        for row in rows:
            here = counts.get(row.get(key, ""), 0)
            if not here:
                continue
            assert isinstance(row, dict)
            total = row.get(total_key, "") if total_key else ""
            row[HERE] = "✔" if level is Level.IMAGE else (f"{here}/{total}" if total else str(here))

    def refresh_here(self) -> None:
        """The Here column again: a retrieve ended."""
        rows = self.table.all_rows()
        if rows and len(rows) <= 20_000:
            self._fill_local_counts(rows)
            self.table.update_rows(rows, HERE)

    # -- browsing ----------------------------------------------------------------------

    def _show_path(self) -> None:
        parts = [str(self.places[0].node), *(p.label for p in self.places)]
        self.query_one(Breadcrumb).show(parts)

    @on(ResultsTable.Activated)
    def drill(self, event: ResultsTable.Activated) -> None:
        if not self.places:
            return
        place = self.places[-1]
        if child_level(place.level) is None:
            self.notify("images are the lowest level: r retrieves them", title="Browse")
            return
        try:
            level, keys = drill_keys(place.level, place.model, event.row)
            query = build_query(level, place.model, keys)
        except QueryError as exc:
            self._report(str(exc), title="Browse")
            return
        place.rows = self.table.all_rows()
        place.cursor = self.table.cursor
        label = path_label(place.level, event.row)
        name = event.row.get("PatientName", "")
        above = {p.level for p in self.places}
        if place.level is Level.STUDY and name and Level.PATIENT not in above:
            label = f"{name} {label}"  # whose study: no patient level above names it
        self.places.append(Place(place.node, level, place.model, keys, label, _columns(query)))
        self._start_find(query)

    def action_up(self) -> None:
        if len(self.places) < 2:
            return
        self.cancel_find()
        self.generation += 1  # late rows of the abandoned query are dropped
        self.places.pop()
        place = self.places[-1]
        table = self.table
        table.set_columns(place.columns)
        table.add_rows(place.rows)
        table.action_jump(place.cursor)
        self.refresh_here()  # what was retrieved down there shows up here
        self._show_path()
        if place.complete:
            self.show_status(place.status)
        else:
            self.show_status(f"{len(place.rows):,} matches (the query had not finished)", "warning")
        self._show_selection()

    def action_filter(self) -> None:
        self.filter_input.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._show_selection()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def on_results_table_selection_changed(self, event: ResultsTable.SelectionChanged) -> None:
        self._show_selection()

    def _show_selection(self) -> None:
        table = self.table
        parts = []
        if table.filter_text:
            parts.append(f"{table.shown_count:,} shown")
        if table.selected_count:
            parts.append(f"{table.selected_count:,} selected")
        text = " · ".join(parts)
        selection = self.query_one("#selection", Static)
        if text != str(selection.content):
            selection.update(text)  # width auto: a layout, but only when it changes

    # -- retrieving --------------------------------------------------------------------

    def action_retrieve(self) -> None:
        if not self.places:
            self.notify("query first, then select rows to retrieve", title="Retrieve")
            return
        place = self.places[-1]
        rows = self.table.selected_rows()
        if not rows:
            self.notify("nothing to retrieve: no rows", title="Retrieve")
            return
        try:
            selections = retrieve_selections(place.level, place.model, rows)
        except QueryError as exc:
            self._report(str(exc), title="Retrieve")
            return
        parent = place.label if len(self.places) > 1 else ""
        self.post_message(self.RetrieveWanted(place.node, place.level, selections, parent))

    # -- keeping the work --------------------------------------------------------------

    def action_copy_uid(self) -> None:
        """The row's own UID (PatientID at patient level) to the clipboard (OSC 52: the
        terminal's clipboard, over SSH too)."""
        row = self.table.current_row
        if not self.places or row is None:
            return
        key = unique_key(self.places[-1].level)
        value = row.get(key, "")
        if not value:
            self.notify(f"this row has no {key}", title="Copy", severity="warning")
            return
        self.app.copy_to_clipboard(value)
        self.notify(f"copied {key} {value}", title="Copy")

    def action_copy_row(self) -> None:
        """The row's values, tab-separated in the query's column order (pastes into a
        spreadsheet as cells)."""
        row = self.table.current_row
        if not self.places or row is None:
            return
        columns = [c for c in self.places[-1].columns if c != HERE]
        self.app.copy_to_clipboard("\t".join(row.get(c, "") for c in columns))
        self.notify(f"copied the row ({len(columns)} values)", title="Copy")

    # -- looking inside ----------------------------------------------------------------

    def action_header(self) -> None:
        """The row's data set: the stored file for an instance that is here, else what
        the PACS answered for the row."""
        from pydicom import dcmread

        from qrclient.present.browse import dataset_of
        from qrclient.tui.screens.header import HeaderScreen

        row = self.table.current_row
        if not self.places or row is None:
            return
        place = self.places[-1]
        uid = row.get("SOPInstanceUID", "")
        files = self._files(Level.IMAGE, uid) if place.level is Level.IMAGE and uid else []
        if files:
            try:
                dataset = dcmread(files[0], stop_before_pixels=True)
            except Exception as exc:  # a damaged file: say so, show what the PACS said
                self._report(f"cannot read {files[0]}: {exc}", title="Header")
            else:
                self.app.push_screen(HeaderScreen(dataset, f"stored file {files[0]}"))
                return
        title = f"what {place.node} answered for this {place.level.value.lower()}"
        self.app.push_screen(HeaderScreen(dataset_of(row), title))

    def action_preview(self) -> None:
        """The pictures the store holds of the row: a series (from the instance under the
        cursor), or a study."""
        from qrclient.tui.preview import missing, series_order
        from qrclient.tui.screens.preview import PreviewScreen

        row = self.table.current_row
        if not self.places or row is None:
            return
        why = missing()
        if why:
            self.notify(why, title="Preview", severity="warning")
            return
        level = self.places[-1].level
        start = 0
        if level is Level.IMAGE:
            files = series_order(self._files(Level.SERIES, row.get("SeriesInstanceUID", "")))
            here = self._files(Level.IMAGE, row.get("SOPInstanceUID", ""))
            start = files.index(here[0]) if here and here[0] in files else 0
        elif level is Level.SERIES:
            files = series_order(self._files(Level.SERIES, row.get("SeriesInstanceUID", "")))
        else:
            files = self._files(Level.STUDY, row.get("StudyInstanceUID", ""))
        if not files:
            self.notify("none of it is in the store yet: r retrieves it", title="Preview")
            return
        renderer = getattr(self.app, "preview_renderer", "auto")
        label = f"{level_noun(level, 1)} {path_label(level, row)}"
        self.app.push_screen(PreviewScreen(files, start, label, renderer))

    def _files(self, level: Level, uid: str) -> list[Path]:
        if not uid:
            return []
        try:
            return self.backend.stored_files(level, uid)
        except StoreError as exc:
            self._report(str(exc), title="Store")
            return []

    def action_export(self) -> None:
        from qrclient.tui.screens.export import ExportScreen

        if not self.places or not self.table.shown_count:
            self.notify("nothing to export: run a query first", title="Export")
            return
        place = self.places[-1]
        name = f"qrclient-{place.level.value.lower()}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        self.app.push_screen(ExportScreen(name, self.table.shown_count), self._export)

    def _export(self, name: str | None) -> None:
        from qrclient.tui.export import ExportError, export_rows

        if not name or not self.places:
            return
        keywords = [c for c in self.places[-1].columns if c != HERE]
        path = Path(name).expanduser()
        try:
            count = export_rows(path, self.table.shown_rows(), keywords)
        except ExportError as exc:
            self._report(str(exc), title="Export")
            return
        self._note(f"exported {count} rows to {path}")
        self.notify(f"{count:,} rows written to {path}", title="Export")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys that mean something in the table are text in the filter.
        if action in ("retrieve", "up", "filter", "copy_uid", "copy_row", "export") or action in (
            "header",
            "preview",
        ):
            return not isinstance(self.screen.focused, Input)
        return True

"""The main screen: node, query form, results with drill-down, jobs, store and log."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from qrclient.net.peer import NodeError
from qrclient.ops.find import FindState
from qrclient.ops.query import Query, QueryError, build_query
from qrclient.present.browse import (
    Row,
    child_level,
    count_column,
    drill_keys,
    form_keys,
    level_noun,
    ordered_columns,
    path_label,
    retrieve_selections,
    unique_key,
)
from qrclient.present.failures import describe
from qrclient.present.printable import printable
from qrclient.store import StoreError
from qrclient.store.overview import StudyHolding
from qrclient.tui.backend import Node
from qrclient.tui.jobs import Job, JobState
from qrclient.tui.messages import (
    EchoEnded,
    FindEnded,
    JobEnded,
    JobProgressed,
    MatchesArrived,
    StoreRead,
    TotalsArrived,
)
from qrclient.tui.widgets.breadcrumb import Breadcrumb
from qrclient.tui.widgets.jobs_panel import JobsPanel, JobView
from qrclient.tui.widgets.log_pane import LogPane
from qrclient.tui.widgets.node_bar import NodeBar
from qrclient.tui.widgets.query_form import QueryForm
from qrclient.tui.widgets.results import ResultsTable
from qrclient.tui.widgets.store_panel import StorePanel
from qrclient.vocabulary import Level, Model

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel
    from textual.worker import Worker

    from qrclient.tui.app import QrclientApp

HERE = "Here"
BATCH_SECONDS = 0.1  # rows reach the table at most this often while a query streams
YIELD_SECONDS = 0.002  # the find loop lets key presses through at least this often


def _columns(query: Query) -> list[str]:
    """The query's columns, with Here (how much the store holds) before the UIDs."""
    columns = ordered_columns(query.level, query.return_keywords)
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


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("escape", "cancel_query", "Cancel"),
        Binding("r", "retrieve", "Retrieve"),
        Binding("backspace", "up", "Up", show=False),
        Binding("slash", "filter", "Filter", show=False),
        Binding("f6", "echo", "Echo", show=False),
        Binding("ctrl+f", "form", "Query form", show=False),
        Binding("f2", "tab('results')", "Results", show=False),
        Binding("f3", "tab('jobs')", "Jobs"),
        Binding("f4", "tab('store')", "Store"),
        Binding("f5", "tab('log')", "Log"),
        Binding("u", "store_update", "Update store list", show=False),
        Binding("t", "store_totals", "Count on node", show=False),
    ]

    DEFAULT_CSS = """
    #results-status {
        height: 1;
        width: 1fr;
        padding: 0 1;
        background: $panel;
    }
    #results-status.-running { color: $accent; }
    #results-status.-error { color: $error; }
    #results-status.-warning { color: $warning; }
    #filter-bar { height: 1; background: $panel; }
    #filter-bar > Input { width: 30; }
    #filter-bar > #selection { width: auto; padding: 0 1; color: $success; }
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    """

    def __init__(self, node_text: str = "", names: list[str] | None = None) -> None:
        super().__init__()
        self._node_text = node_text
        self._names = names or []
        self.places: list[Place] = []
        self.generation = 0
        self.find_worker: Worker[None] | None = None
        self.find_started = 0.0
        self.jobs: dict[int, Job] = {}
        self._store_broken = False
        self._totals_wanted = False  # t pressed before the store list was read

    @property
    def qr_app(self) -> QrclientApp:
        from qrclient.tui.app import QrclientApp

        assert isinstance(self.app, QrclientApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield NodeBar(self._node_text, self._names)
        yield QueryForm(id="query-form")
        with TabbedContent(initial="results", id="tabs"):
            with TabPane("Results", id="results"), Vertical():
                yield Breadcrumb(id="breadcrumb")
                yield ResultsTable(id="results-table")
                with Horizontal(id="filter-bar"):
                    yield Static("", id="results-status", markup=False)
                    yield Static("", id="selection")
                    yield Input(placeholder="/ filter", id="filter", compact=True)
            with TabPane("Jobs", id="jobs"):
                yield JobsPanel(id="jobs-panel")
            with TabPane("Store", id="store"):
                yield StorePanel(id="store-panel")
            with TabPane("Log", id="log"):
                yield LogPane(id="log-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(QueryForm).focus_first()
        self.query_one(Breadcrumb).show(["no query yet: fill in the form and press Enter"])
        self._status("Enter runs the query · ? help")

    # -- widgets -----------------------------------------------------------------------

    @property
    def table(self) -> ResultsTable:
        return self.query_one(ResultsTable)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    def _status(self, text: str, kind: str = "") -> None:
        status = self.query_one("#results-status", Static)
        status.update(printable(text), layout=False)  # fixed size: no layout for each batch
        for name in ("running", "error", "warning"):
            status.set_class(kind == name, f"-{name}")

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every toast as plain, printable text: toasts quote the peer (errors, warnings,
        row labels), whose text must never act as markup (links run actions) or escapes."""
        text = "\n".join(printable(line) for line in message.split("\n"))
        super().notify(
            text, title=printable(title), severity=severity, timeout=timeout, markup=False
        )

    def report(self, message: str, hint: str = "", *, title: str = "Error") -> None:
        """An error for people: a notification, and the log pane for the record."""
        self.log_pane.note(f"error: {message}" + (f" (hint: {hint})" if hint else ""))
        self.notify(f"{message}\n{hint}" if hint else message, title=title, severity="error")

    def _node(self) -> Node | None:
        try:
            return self.qr_app.nodes.resolve(self.query_one(NodeBar).node_text)
        except (NodeError, QueryError, ValueError, KeyError) as exc:
            self.report(str(exc).strip("'\""), title="Node")
            self.query_one("#node", Input).focus()
            return None

    # -- echo --------------------------------------------------------------------------

    def action_echo(self) -> None:
        self.post_message(NodeBar.EchoRequested(self.query_one(NodeBar).node_text))

    def on_node_bar_echo_requested(self, event: NodeBar.EchoRequested) -> None:
        node = self._node()
        if node is None:
            return
        self.query_one(NodeBar).show_status(f"echoing {node}…")
        self.run_worker(self._echo(node), group="echo", exclusive=True, exit_on_error=False)

    async def _echo(self, node: Node) -> None:
        try:
            result = await self.qr_app.backend.echo(node)
        except Exception as exc:
            self.post_message(EchoEnded(str(node), None, *describe(exc)))
        else:
            self.post_message(EchoEnded(str(node), result))

    def on_echo_ended(self, event: EchoEnded) -> None:
        bar = self.query_one(NodeBar)
        result = event.result
        if result is None:
            bar.show_status(f"✘ {event.error}", ok=False)
            self.report(event.error, event.hint, title=f"Echo {event.node}")
            return
        text = (
            f"✔ echo {result.round_trip_ms:.1f} ms, association {result.association_ms:.1f} ms"
            f" · {result.peer_version}, max PDU {result.peer_max_pdu or 'unlimited'}"
        )
        bar.show_status(text, ok=True)
        self.log_pane.note(f"echo {event.node}: {text[2:]}")

    # -- querying ----------------------------------------------------------------------

    def on_query_form_submitted(self, event: QueryForm.Submitted) -> None:
        node = self._node()
        if node is None:
            return
        try:
            keys = form_keys(event.level, event.values)
            query = build_query(event.level, event.model, keys)
        except QueryError as exc:
            self.report(str(exc), title="Query")
            return
        label = f"{event.level.value.lower()} query"
        if keys:
            label += " " + " ".join(keys)
        self.places = [Place(node, event.level, event.model, keys, label, _columns(query))]
        self._store_broken = False  # a new query: try the store again
        self._start_find(query)
        self.table.focus()

    def _start_find(self, query: Query) -> None:
        self._cancel_find()
        self.generation += 1
        place = self.places[-1]
        node = place.node
        table = self.table
        table.set_columns(place.columns)
        self.query_one("#filter", Input).value = ""
        self._show_path()
        for warning in query.warnings:
            self.log_pane.note(f"warning: {warning}")
        self._status(f"querying {node} at {place.level.value.lower()} level…", "running")
        self.find_started = self.qr_app.clock()
        self.find_worker = self.run_worker(
            self._find(node, query, self.generation),
            group="find",
            exclusive=True,
            exit_on_error=False,
        )

    def _cancel_find(self) -> None:
        if self.find_worker is not None and self.find_worker.is_running:
            self.find_worker.cancel()

    async def _find(self, node: Node, query: Query, generation: int) -> None:
        started = self.qr_app.clock()
        matches = None
        batch: list[Row] = []
        try:
            async with self.qr_app.backend.find(node, query) as matches:
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
        self.post_message(FindEnded(generation, outcome, self.qr_app.clock() - started))

    def on_matches_arrived(self, event: MatchesArrived) -> None:
        if event.generation != self.generation or not event.rows:
            return
        self._fill_local_counts(event.rows)
        self.table.add_rows(event.rows)
        elapsed = self.qr_app.clock() - self.find_started
        self._status(f"{self.table.row_count:,} matches so far… ({elapsed:.1f} s)", "running")
        self._show_selection()

    def on_find_ended(self, event: FindEnded) -> None:
        if event.generation != self.generation:
            return
        count = self.table.row_count
        place = self.places[-1] if self.places else None
        outcome = event.outcome
        if outcome is None or event.error:
            self._status(f"{count:,} matches, failed: {event.error}", "error")
            self.report(event.error or "the query failed", event.hint, title="Query")
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
            self.log_pane.note(f"warning: {warning}")
        if outcome.state is FindState.TRUNCATED:
            self.notify(outcome.warnings[-1], title="Query", severity="warning")
        self._status(text, kind)
        self.log_pane.note(f"query: {text}")

    def action_cancel_query(self) -> None:
        if self.find_worker is not None and self.find_worker.is_running:
            self.find_worker.cancel()
            self._status(f"{self.table.row_count:,} matches, cancelling…", "warning")
        elif self.focused is self.query_one("#filter", Input):
            self.query_one("#filter", Input).value = ""
            self.table.focus()

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
            counts = self.qr_app.backend.local_counts(level, uids)
        except (StoreError, sqlite3.Error, OSError) as exc:
            self._store_broken = True
            self.report(str(exc), title="Store")
            return
        total_key = count_column(level)
        for row in rows:
            here = counts.get(row.get(key, ""), 0)
            if not here:
                continue
            assert isinstance(row, dict)
            total = row.get(total_key, "") if total_key else ""
            row[HERE] = "✔" if level is Level.IMAGE else (f"{here}/{total}" if total else str(here))

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
            self.report(str(exc), title="Browse")
            return
        place.rows = self.table.all_rows()
        place.cursor = self.table.cursor
        label = path_label(place.level, event.row)
        self.places.append(Place(place.node, level, place.model, keys, label, _columns(query)))
        self._start_find(query)

    def action_up(self) -> None:
        if len(self.places) < 2:
            return
        self._cancel_find()
        self.generation += 1  # late rows of the abandoned query are dropped
        self.places.pop()
        place = self.places[-1]
        table = self.table
        table.set_columns(place.columns)
        table.add_rows(place.rows)
        table.action_jump(place.cursor)
        self._refresh_here()  # what was retrieved down there shows up here
        self._show_path()
        if place.complete:
            self._status(place.status)
        else:
            self._status(f"{len(place.rows):,} matches (the query had not finished)", "warning")
        self._show_selection()

    def action_filter(self) -> None:
        self.query_one(TabbedContent).active = "results"
        self.query_one("#filter", Input).focus()

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
            self.report(str(exc), title="Retrieve")
            return
        parent = place.label if len(self.places) > 1 else ""
        for selection in selections:
            job = Job(len(self.jobs) + 1, selection.label(parent), place.node, selection.request)
            self.jobs[job.id] = job
            self.query_one(JobsPanel).add_job(job)
            self._run_job(job)
        count = sum(s.count for s in selections)
        self.notify(
            f"retrieving {count} {level_noun(place.level, count)} into "
            f"{self.qr_app.backend.store_root} (F3: jobs)",
            title="Retrieve",
        )

    def _run_job(self, job: Job) -> None:
        job.state = JobState.QUEUED  # until the backend starts it and reports progress
        job.error = ""
        job.worker = self.run_worker(
            self._retrieve(job), group=f"job-{job.id}", exit_on_error=False
        )

    async def _retrieve(self, job: Job) -> None:
        def progressed(snapshot: object) -> None:
            self.post_message(JobProgressed(job.id, snapshot))  # type: ignore[arg-type]

        try:
            outcome = await self.qr_app.backend.retrieve(job.node, job.request, progressed)
        except asyncio.CancelledError:
            self.post_message(JobEnded(job.id, None))
            raise
        except Exception as exc:
            self.post_message(JobEnded(job.id, None, *describe(exc)))
        else:
            self.post_message(JobEnded(job.id, outcome))

    def on_job_progressed(self, event: JobProgressed) -> None:
        job = self.jobs.get(event.job_id)
        if job is not None and not job.state.ended:
            job.state = JobState.RUNNING
            job.snapshot = event.snapshot
            self.query_one(JobsPanel).refresh_job(job)

    def on_job_ended(self, event: JobEnded) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        job.finish(event.outcome, event.error)
        self.query_one(JobsPanel).refresh_job(job)
        outcome = event.outcome
        summary = f"job #{job.id} {job.label}: {job.state.value}"
        if outcome is not None:
            summary += f", {outcome.received} received, {outcome.skipped} already here"
            summary += f", {outcome.failed} failed"
            if outcome.refused_instances or outcome.refused_connections:
                summary += (
                    f", refused {outcome.refused_instances} instances and "
                    f"{outcome.refused_connections} connections"
                )
            for refusal in outcome.refusals[:10]:
                self.log_pane.note(f"job #{job.id}: {refusal}")
            for note in outcome.notes:
                self.log_pane.note(f"job #{job.id}: {note}")
            for error in outcome.errors[:10]:
                self.log_pane.note(f"job #{job.id} error: {error}")
        self.log_pane.note(summary)
        if job.state is JobState.COMPLETE:
            self.notify(summary, title="Retrieve")
        elif job.state is JobState.CANCELLED:
            self.notify(summary, title="Retrieve", severity="warning")
        else:
            self.report(job.error or summary, event.hint, title=f"Retrieve #{job.id}")
        self._refresh_here()
        if self.query_one(TabbedContent).active == "store":
            self.action_store_update()

    def _refresh_here(self) -> None:
        rows = self.table.all_rows()
        if rows and len(rows) <= 20_000:
            self._fill_local_counts(rows)
            self.table.update_rows(rows, HERE)

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
        self._run_job(job)
        self.query_one(JobsPanel).refresh_job(job)

    # -- tabs and the store ------------------------------------------------------------

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        if name == "results":
            self.table.focus()
        elif name == "jobs":
            views = self.query(JobView)
            if views:
                views.first().focus()
        elif name == "store":
            self.query_one("#store-table").focus()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "store":
            self.action_store_update()

    def action_store_update(self) -> None:
        self.run_worker(
            self._read_store, thread=True, group="store", exclusive=True, exit_on_error=False
        )

    def _read_store(self) -> None:
        """In a thread: a big index takes a while to sum up, keys must not wait."""
        backend = self.qr_app.backend
        held: list[StudyHolding] = []
        try:
            held = backend.holdings()
        except (StoreError, sqlite3.Error, OSError) as exc:
            error = f"cannot read the store {backend.store_root}: {exc}"
            self.post_message(StoreRead(held, error))
        else:
            self.post_message(StoreRead(held))

    def on_store_read(self, event: StoreRead) -> None:
        if event.error:
            self.report(event.error, title="Store")
            return
        self.query_one(StorePanel).show(str(self.qr_app.backend.store_root), event.holdings)
        if self._totals_wanted:
            self._totals_wanted = False
            self.action_store_totals()

    def action_store_totals(self) -> None:
        if self.query_one(TabbedContent).active != "store":
            return
        if any(w.group == "store" and w.is_running for w in self.workers):
            self._totals_wanted = True  # once the list is read
            return
        node = self._node()
        uids = self.query_one(StorePanel).study_uids
        if node is None or not uids:
            return
        self.notify(f"counting instances on {node}…", title="Store")
        self.run_worker(
            self._totals(node, uids), group="totals", exclusive=True, exit_on_error=False
        )

    async def _totals(self, node: Node, uids: list[str]) -> None:
        try:
            totals = await self.qr_app.backend.remote_totals(node, uids)
        except Exception as exc:
            self.app.call_later(self.report, *describe(exc))
            return
        self.post_message(TotalsArrived(totals))

    def on_totals_arrived(self, event: TotalsArrived) -> None:
        self.query_one(StorePanel).add_totals(event.totals)

    # -- misc --------------------------------------------------------------------------

    def action_form(self) -> None:
        self.query_one(QueryForm).focus_first()

    def action_help(self) -> None:
        from qrclient.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys that mean something in the table are text in the inputs.
        if action in ("retrieve", "up", "store_update", "store_totals", "filter"):
            return not isinstance(self.focused, Input)
        return True

"""The main screen: the node bar and query form above tabs of browse, jobs, store and log.

The panels do their own work through the backend they are handed; the screen wires
them: which node the node bar names, errors to notify and log, a retrieve asked for in
the results started in the jobs panel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, TabbedContent, TabPane

from qrclient.net.peer import NodeError
from qrclient.ops.query import QueryError
from qrclient.present.browse import form_keys, level_noun, retrieve_selections
from qrclient.present.failures import describe
from qrclient.tui.backend import Backend, Node
from qrclient.tui.history import Entry, QueryHistory
from qrclient.tui.messages import EchoEnded, Note, Report
from qrclient.tui.nodes import NodeBook
from qrclient.tui.screens.history import Choice, HistoryScreen
from qrclient.tui.widgets.browse import BrowsePanel
from qrclient.tui.widgets.jobs_panel import JobsPanel
from qrclient.tui.widgets.log_pane import LogPane
from qrclient.tui.widgets.node_bar import NodeBar
from qrclient.tui.widgets.query_form import QueryForm
from qrclient.tui.widgets.results import ResultsTable
from qrclient.tui.widgets.store_panel import StorePanel
from qrclient.vocabulary import Model


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("escape", "cancel_query", "Cancel"),
        Binding("f6", "echo", "Echo", show=False),
        Binding("f7", "doctor", "Doctor", show=False),
        Binding("ctrl+f", "form", "Query form", show=False),
        Binding("ctrl+r", "history", "History", show=False),
        Binding("f2", "tab('results')", "Results", show=False),
        Binding("f3", "tab('jobs')", "Jobs"),
        Binding("f4", "tab('store')", "Store"),
        Binding("f5", "tab('log')", "Log"),
    ]

    def __init__(
        self,
        backend: Backend,
        nodes: NodeBook,
        *,
        node_text: str = "",
        clock: Callable[[], float],
        history: QueryHistory | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.history = history  # past queries, kept in the store; None: not kept
        self.nodes = nodes
        self.clock = clock
        self._node_text = node_text

    def compose(self) -> ComposeResult:
        yield NodeBar(self._node_text, self.nodes.names)
        yield QueryForm(id="query-form")
        with TabbedContent(initial="results", id="tabs"):
            with TabPane("Results", id="results"):
                yield BrowsePanel(self.backend, clock=self.clock, id="browse")
            with TabPane("Jobs", id="jobs"):
                yield JobsPanel(self.backend, id="jobs-panel")
            with TabPane("Store", id="store"):
                yield StorePanel(self.backend, id="store-panel")
            with TabPane("Log", id="log"):
                yield LogPane(id="log-pane")
        yield Footer(compact=True)  # at 80 columns it still ends with ^q Quit

    def on_mount(self) -> None:
        self.query_one(QueryForm).focus_first()

    # -- panels ------------------------------------------------------------------------

    @property
    def browse(self) -> BrowsePanel:
        return self.query_one(BrowsePanel)

    @property
    def table(self) -> ResultsTable:
        return self.browse.table

    @property
    def jobs_panel(self) -> JobsPanel:
        return self.query_one(JobsPanel)

    @property
    def store_panel(self) -> StorePanel:
        return self.query_one(StorePanel)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    # -- what the panels tell ----------------------------------------------------------

    def report(self, message: str, hint: str = "", *, title: str = "Error") -> None:
        """An error for people: a notification, and the log pane for the record."""
        self.log_pane.note(f"error: {message}" + (f" (hint: {hint})" if hint else ""))
        self.notify(f"{message}\n{hint}" if hint else message, title=title, severity="error")

    def on_report(self, event: Report) -> None:
        event.stop()
        self.report(event.message, event.hint, title=event.title)

    def on_note(self, event: Note) -> None:
        event.stop()
        self.log_pane.note(event.text)

    def _node(self) -> Node | None:
        try:
            return self.nodes.resolve(self.query_one(NodeBar).node_text)
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
            result = await self.backend.echo(node)
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

    def action_doctor(self) -> None:
        from qrclient.tui.screens.doctor import DoctorScreen

        node = self._node()
        if node is not None:
            self.app.push_screen(DoctorScreen(self.backend, node))

    # -- querying and retrieving -------------------------------------------------------

    def on_query_form_submitted(self, event: QueryForm.Submitted) -> None:
        node = self._node()
        if node is None:
            return
        try:
            keys = form_keys(event.level, event.values)
        except QueryError as exc:
            self.report(str(exc), title="Query")
            return
        self.query_one(TabbedContent).active = "results"
        self.browse.run_query(node, event.level, event.model, keys)
        if self.history is None:
            return
        entry = Entry(self.query_one(NodeBar).node_text, event.level, event.model, event.values)
        try:
            self.history.add(entry)
        except OSError as exc:  # the query runs all the same
            self.log_pane.note(f"warning: the query history was not kept: {exc}")

    def action_history(self) -> None:
        if self.history is None:
            self.notify("no query history in this session", title="History")
            return
        entries = self.history.load()
        self.app.push_screen(HistoryScreen(entries), self._history_chosen)

    def _history_chosen(self, choice: Choice | None) -> None:
        if choice is None:
            return
        what, entry = choice
        if entry.node:
            self.query_one("#node", Input).value = entry.node
        form = self.query_one(QueryForm)
        form.fill(entry.level, entry.model, entry.values)
        if what == "run":
            self.call_after_refresh(form.submit)  # once the selects show the new values
        else:
            form.focus_first()

    def action_cancel_query(self) -> None:
        self.browse.cancel_query()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_query":  # in the footer only while there is something to cancel
            return self.browse.finding or self.focused is self.browse.filter_input
        return True

    def on_browse_panel_retrieve_wanted(self, event: BrowsePanel.RetrieveWanted) -> None:
        for selection in event.selections:
            self.jobs_panel.start(selection.label(event.parent), event.node, selection.request)
        count = sum(s.count for s in event.selections)
        self.notify(
            f"retrieving {count} {level_noun(event.level, count)} into "
            f"{self.backend.store_root} (F3: jobs)",
            title="Retrieve",
        )

    def on_jobs_panel_job_ended(self, event: JobsPanel.JobEnded) -> None:
        self.browse.refresh_here()
        if self.query_one(TabbedContent).active == "store":
            self.store_panel.action_update()

    # -- tabs and the store ------------------------------------------------------------

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        if name == "results":
            self.table.focus()
        elif name == "jobs":
            self.jobs_panel.focus_first()
        elif name == "store":
            self.store_panel.focus_table()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "store":
            self.store_panel.action_update()
        elif event.pane.id == "jobs":
            self.jobs_panel.load_durable()
            self.app.clear_notifications()  # they are in the log; the jobs come first here

    def on_store_panel_fetch_wanted(self, event: StorePanel.FetchWanted) -> None:
        """r in the store: retrieve the study (or series) again; what is here is skipped."""
        node = self._node()
        if node is None:
            return
        try:
            selections = retrieve_selections(event.level, Model.STUDY, [event.row])
        except QueryError as exc:
            self.report(str(exc), title="Fetch")
            return
        for selection in selections:
            self.jobs_panel.start(f"missing of {event.label}", node, selection.request)
        self.notify(f"fetching what is missing of {event.label} from {node}", title="Fetch")

    def on_store_panel_totals_wanted(self, event: StorePanel.TotalsWanted) -> None:
        node = self._node()
        if node is not None:
            self.store_panel.count_totals(node)

    # -- misc --------------------------------------------------------------------------

    def action_form(self) -> None:
        self.query_one(QueryForm).focus_first()

    def action_help(self) -> None:
        from qrclient.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())

"""The store panel: per study and series, how many instances are here of how many."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from qrclient.present.failures import describe
from qrclient.present.printable import printable
from qrclient.store import StoreError
from qrclient.store.overview import StudyHolding
from qrclient.tui.backend import Backend, Node
from qrclient.tui.messages import Report, StoreRead, TotalsArrived
from qrclient.vocabulary import Level


def _of(here: int, total: int | None) -> Text:
    if total is None:
        return Text(f"{here} of ?", style="dim")
    style = "green" if here >= total else "yellow"
    return Text(f"{here} of {total}", style=style)


def _text(value: str, style: str = "") -> Text:
    """A value the peer sent (kept in the store's index): a Text, which a DataTable shows
    as is, where a str would be parsed as markup; printable."""
    return Text(printable(value), style=style)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class StorePanel(Vertical):
    """What the store holds; reads it through the backend, off the UI thread."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "fetch", "Fetch missing"),
        Binding("t", "totals", "Count on node"),
        Binding("u", "update", "Update"),
    ]

    class TotalsWanted(Message):
        """t: count what the node holds; the screen knows which node."""

    class FetchWanted(Message):
        """r: fetch what is missing of a study (or series) from the node bar's node."""

        def __init__(self, row: dict[str, str], level: Level, label: str) -> None:
            super().__init__()
            self.row = row  # its unique keys, as a results row has them
            self.level = level
            self.label = label

    def __init__(self, backend: Backend, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.backend = backend
        self._holdings: list[StudyHolding] = []
        self._totals: dict[str, int] = {}
        self._totals_wanted = False  # t pressed before the store list was read
        self._rows: dict[str, tuple[dict[str, str], Level, str]] = {}  # by table row key
        self.root = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="store-summary", markup=False)
        table: DataTable[str | Text] = DataTable(
            id="store-table", cursor_type="row", zebra_stripes=True
        )
        table.add_columns(
            "Patient / series", "Date", "Description", "Here", "Size", "Folder (in store)"
        )
        yield table

    def focus_table(self) -> None:
        self.query_one("#store-table").focus()

    # -- reading the store -------------------------------------------------------------

    def action_update(self) -> None:
        self.run_worker(
            self._read_store, thread=True, group="store", exclusive=True, exit_on_error=False
        )

    def _read_store(self) -> None:
        """In a thread: a big index takes a while to sum up, keys must not wait."""
        held: list[StudyHolding] = []
        try:
            held = self.backend.holdings()
        except StoreError as exc:
            error = f"cannot read the store {self.backend.store_root}: {exc}"
            self.post_message(StoreRead(held, error))
        else:
            self.post_message(StoreRead(held))

    def on_store_read(self, event: StoreRead) -> None:
        if event.error:
            self.post_message(Report(event.error, title="Store"))
            return
        self.show(str(self.backend.store_root), event.holdings)
        if self._totals_wanted:
            self._totals_wanted = False
            self.action_totals()

    # -- what the node holds -----------------------------------------------------------

    def action_fetch(self) -> None:
        table: DataTable[str | Text] = self.query_one("#store-table", DataTable)
        if not table.row_count:
            self.notify("nothing in the store yet: retrieve from the results", title="Fetch")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key in self._rows:
            self.post_message(self.FetchWanted(*self._rows[key]))

    def action_totals(self) -> None:
        if any(w.group == "store" and w.is_running for w in self.workers):
            self._totals_wanted = True  # once the list is read
            return
        if self.study_uids:
            self.post_message(self.TotalsWanted())

    def count_totals(self, node: Node) -> None:
        """Count what ``node`` holds of each study and series shown."""
        uids = self.study_uids
        if not uids:
            return
        self.notify(f"counting instances on {node}…", title="Store")
        self.run_worker(
            self._count(node, uids), group="totals", exclusive=True, exit_on_error=False
        )

    async def _count(self, node: Node, uids: list[str]) -> None:
        try:
            totals = await self.backend.remote_totals(node, uids)
        except Exception as exc:
            self.post_message(Report(*describe(exc)))
            return
        self.post_message(TotalsArrived(totals))

    def on_totals_arrived(self, event: TotalsArrived) -> None:
        self.add_totals(event.totals)

    # -- drawing -----------------------------------------------------------------------

    def show(self, root: str, holdings: Sequence[StudyHolding]) -> None:
        self.root = root
        self._holdings = list(holdings)
        self._redraw()

    def add_totals(self, totals: Mapping[str, int]) -> None:
        self._totals.update(totals)
        self._redraw()

    def _redraw(self) -> None:
        table: DataTable[str | Text] = self.query_one("#store-table", DataTable)
        table.clear()
        instances = sum(h.instances for h in self._holdings)
        size = sum(h.bytes for h in self._holdings)
        partial = sum(
            1
            for h in self._holdings
            if h.study_uid in self._totals and h.instances < self._totals[h.study_uid]
        )
        summary = (
            f"{self.root}: {len(self._holdings)} studies, {instances} instances, {_megabytes(size)}"
        )
        if partial:
            summary += f", {partial} partial"
        self.query_one("#store-summary", Static).update(printable(summary))
        self._rows = {}
        for study in self._holdings:
            patient = study.patient_name or study.patient_id or "?"
            study_label = " ".join(filter(None, (patient, study.study_date, study.description)))
            study_keys = {"StudyInstanceUID": study.study_uid, "PatientID": study.patient_id}
            self._rows[study.study_uid] = (study_keys, Level.STUDY, study_label)
            table.add_row(
                _text(patient, style="bold"),
                _text(study.study_date),
                _text(study.description),
                _of(study.instances, self._totals.get(study.study_uid)),
                _megabytes(study.bytes),
                _text(self._relative(study.folder)),
                key=study.study_uid,
            )
            for series in study.series:
                number = "" if series.series_number is None else f"#{series.series_number} "
                series_keys = {**study_keys, "SeriesInstanceUID": series.series_uid}
                label = f"series {number}{series.modality} of {study_label}"
                self._rows[series.series_uid] = (series_keys, Level.SERIES, label)
                table.add_row(
                    _text(f"  └ {number}{series.modality}"),
                    "",
                    _text(series.description),
                    _of(series.instances, self._totals.get(series.series_uid)),
                    _megabytes(series.bytes),
                    _text(self._relative(series.folder)),
                    key=series.series_uid,
                )

    def _relative(self, folder: str) -> str:
        """Folders under the store's root (shown in the summary line) relative to it."""
        if self.root and folder.startswith(self.root.rstrip("/") + "/"):
            return folder[len(self.root.rstrip("/")) + 1 :] + "/"
        return folder

    @property
    def study_uids(self) -> list[str]:
        return [h.study_uid for h in self._holdings if h.study_uid]

"""The store panel: per study and series, how many instances are here of how many."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from qrclient.present.printable import printable
from qrclient.store.overview import StudyHolding


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


class StoreTable(DataTable[str | Text]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "screen.store_totals", "Count on node"),
        Binding("u", "screen.store_update", "Update"),
    ]


class StorePanel(Vertical):
    DEFAULT_CSS = """
    StorePanel > #store-summary {
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    StorePanel > DataTable {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._holdings: list[StudyHolding] = []
        self._totals: dict[str, int] = {}
        self.root = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="store-summary", markup=False)
        table = StoreTable(id="store-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(
            "Patient / series", "Date", "Description", "Here", "Size", "Folder (in store)"
        )
        yield table

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
        for study in self._holdings:
            patient = study.patient_name or study.patient_id or "?"
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

"""The results table: a virtual list that renders only the rows on screen.

Textual's DataTable slows down past ~10k rows; this one keeps rows as plain dicts and
draws each visible line on demand (Line API), so appending, filtering and sorting 50,000
matches costs list operations, not widgets. Cells are drawn as segments of text (no
markup), made printable: a value from the peer never reaches the terminal raw.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from qrclient.present.browse import Row
from qrclient.present.printable import printable

MAX_WIDTH = 30
UID_WIDTH = 64  # a UID is read (and copied) whole: 64 characters at most (PS3.5 9.1)
_MARK = 2  # the selection mark before each row

# Short headers for the keys a query returns by default.
LABELS = {
    "PatientName": "Patient",
    "PatientID": "ID",
    "PatientBirthDate": "Born",
    "PatientSex": "Sex",
    "NumberOfPatientRelatedStudies": "Studies",
    "StudyDate": "Date",
    "StudyTime": "Time",
    "AccessionNumber": "Accession",
    "ModalitiesInStudy": "Mod",
    "StudyDescription": "Description",
    "NumberOfStudyRelatedSeries": "Ser",
    "NumberOfStudyRelatedInstances": "Inst",
    "StudyInstanceUID": "Study UID",
    "SeriesNumber": "#",
    "SeriesDescription": "Description",
    "NumberOfSeriesRelatedInstances": "Inst",
    "SeriesInstanceUID": "Series UID",
    "InstanceNumber": "#",
    "SOPClassUID": "SOP class",
    "SOPInstanceUID": "SOP Instance UID",
}


# Moved to the right of the others, in this order, when the terminal is too narrow for
# the columns people read first (Here and the counts): still there, a scroll away.
SECONDARY = (
    "StudyTime",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "NumberOfStudyRelatedSeries",
    "SOPClassUID",
    "SeriesDate",
    "SeriesTime",
)


@dataclass(slots=True)
class Column:
    key: str
    label: str
    width: int

    @property
    def cap(self) -> int:
        return UID_WIDTH if self.key.endswith("UID") else MAX_WIDTH


def fold(text: str) -> str:
    """Text as the filter compares it: case and accents folded (jörg, Jörg -> jorg)."""
    text = text.casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def arranged(columns: Sequence[Column], width: int) -> list[Column]:
    """``columns`` in their order, except that secondary ones move to just before the
    UIDs while the columns before the UIDs do not fit in ``width`` cells."""
    uids = [c for c in columns if c.key.endswith("UID") and c.key != "SOPClassUID"]
    rest = [c for c in columns if c not in uids]
    moved: list[Column] = []
    for key in SECONDARY:
        if _MARK + sum(c.width + 1 for c in rest) <= width:
            break
        moved += [c for c in rest if c.key == key]
        rest = [c for c in rest if c.key != key]
    return rest + [c for c in columns if c in moved] + uids


def _sort_key(value: str) -> tuple[int, float, str]:
    """Numbers by value, before text; text case-insensitively."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value.casefold())


class ResultsTable(ScrollView, can_focus=True):
    """Rows of matches with a cursor, selection, filter and sort."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("left", "column(-1)", "Column left", show=False),
        Binding("right", "column(1)", "Column right", show=False),
        Binding("space", "toggle_select", "Select"),
        Binding("a", "select_all", "Select all", show=False),
        Binding("s", "sort", "Sort", show=False),
        Binding("enter", "activate", "Open"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "results--header",
        "results--header-current",
        "results--cursor",
        "results--selected",
    }

    class Activated(Message):
        """Enter on a row."""

        def __init__(self, row: Row) -> None:
            super().__init__()
            self.row = row

    class SelectionChanged(Message):
        def __init__(self, count: int) -> None:
            super().__init__()
            self.count = count

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[Column] = []  # as shown: arranged for the width
        self._natural: list[Column] = []  # as the query asked
        self._rows: list[Row] = []
        self._texts: list[str] = []  # casefolded row text, for the filter
        self._view: list[int] = []  # indices of the rows shown, in display order
        self._selected: set[int] = set()
        self.cursor = 0
        self.current_column = 0
        self.filter_text = ""
        self._sort: tuple[str, bool] | None = None  # column key, descending
        self._line_styles: dict[str, Style] = {}
        self._base_style = Style()

    # -- data ------------------------------------------------------------------------

    def set_columns(self, keys: Sequence[str]) -> None:
        self._natural = [Column(k, LABELS.get(k, k), cell_len(LABELS.get(k, k))) for k in keys]
        self.columns = list(self._natural)
        self.current_column = 0
        self.clear()

    def clear(self) -> None:
        self._rows, self._texts, self._view = [], [], []
        self._selected.clear()
        self.cursor = 0
        self._sort = None
        self.scroll_to(0, 0, animate=False)
        self._resize()

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def shown_count(self) -> int:
        return len(self._view)

    def add_rows(self, rows: Iterable[Row]) -> None:
        """Append matches; cheap enough to call for every batch of a streaming query."""
        first = len(self._rows)
        for row in rows:
            self._rows.append(row)
            self._texts.append(fold(" ".join(row.values())))
        added = range(first, len(self._rows))
        self._widen(added)
        needle = fold(self.filter_text)
        self._view.extend(i for i in added if needle in self._texts[i])
        if self._sort is not None:
            self._apply_sort()
        self._resize()

    def update_rows(self, rows: Iterable[Row], key: str) -> None:
        """Rows whose ``key`` changed in place (e.g. a local count filled in): redraw,
        widening that column only if needed."""
        for column in self.columns:
            if column.key == key:
                for row in rows:
                    width = min(column.cap, cell_len(printable(row.get(key, ""))))
                    column.width = max(column.width, width)
        self._resize()

    def _widen(self, indices: range) -> None:
        for column in self.columns:
            key, width, cap = column.key, column.width, column.cap
            for i in indices:
                value = self._rows[i].get(key)
                if value:
                    width = max(width, min(cap, cell_len(printable(value))))
            column.width = width

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        needle = fold(text)
        self._view = [i for i in range(len(self._rows)) if needle in self._texts[i]]
        if self._sort is not None:
            self._apply_sort()
        self.cursor = min(self.cursor, max(0, len(self._view) - 1))
        self._resize()

    def sort_by(self, key: str, descending: bool = False) -> None:
        self._sort = (key, descending)
        self._apply_sort()
        self._resize()

    def _apply_sort(self) -> None:
        assert self._sort is not None
        key, descending = self._sort
        rows = self._rows
        self._view.sort(key=lambda i: _sort_key(rows[i].get(key, "")), reverse=descending)

    @property
    def current_row(self) -> Row | None:
        return self._rows[self._view[self.cursor]] if self._view else None

    def selected_rows(self) -> list[Row]:
        """Selected rows in arrival order; the row under the cursor if none is."""
        if self._selected:
            return [self._rows[i] for i in sorted(self._selected)]
        row = self.current_row
        return [row] if row is not None else []

    @property
    def selected_count(self) -> int:
        return len(self._selected)

    def shown_rows(self) -> list[Row]:
        return [self._rows[i] for i in self._view]

    def all_rows(self) -> list[Row]:
        return list(self._rows)

    # -- actions ---------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_cursor(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        self._move_cursor(len(self._view) - 1 if where < 0 else where)

    def action_column(self, delta: int) -> None:
        if self.columns:
            self.current_column = max(0, min(len(self.columns) - 1, self.current_column + delta))
            self._scroll_column_into_view()
            self.refresh()

    def action_sort(self) -> None:
        if not self.columns:
            return
        key = self.columns[self.current_column].key
        descending = self._sort is not None and self._sort == (key, False)
        self.sort_by(key, descending)

    def action_toggle_select(self) -> None:
        if not self._view:
            return
        index = self._view[self.cursor]
        self._selected.symmetric_difference_update({index})
        self._move_cursor(self.cursor + 1)
        self.post_message(self.SelectionChanged(len(self._selected)))

    def action_select_all(self) -> None:
        shown = set(self._view)
        if shown <= self._selected:
            self._selected -= shown  # all shown were selected: unselect them
        else:
            self._selected |= shown
        self.refresh()
        self.post_message(self.SelectionChanged(len(self._selected)))

    def action_activate(self) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.Activated(row))

    def _move_cursor(self, index: int) -> None:
        self.cursor = max(0, min(index, len(self._view) - 1))
        body = max(1, self.size.height - 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False)
        self.refresh()

    def _scroll_column_into_view(self) -> None:
        start = _MARK + sum(c.width + 1 for c in self.columns[: self.current_column])
        end = start + self.columns[self.current_column].width
        left = round(self.scroll_x)
        if start < left:
            self.scroll_to(x=start, animate=False)
        elif end > left + self.size.width:
            self.scroll_to(x=end - self.size.width, animate=False)

    # -- mouse -----------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        x = event.x + round(self.scroll_x) - _MARK
        if event.y == 0:
            for number, column in enumerate(self.columns):
                if x < column.width + 1:
                    self.current_column = number
                    self.action_sort()
                    return
                x -= column.width + 1
            return
        self._move_cursor(round(self.scroll_y) + event.y - 1)
        if event.chain == 2:
            self.action_activate()

    # -- rendering -------------------------------------------------------------------

    def _arrange(self) -> None:
        """Columns for the width: the ones people read first on screen."""
        width = self.scrollable_content_region.width or self.size.width
        columns = arranged(self._natural, width) if width else list(self._natural)
        if columns != self.columns:
            current = self.columns[self.current_column] if self.columns else None
            self.columns = columns
            self.current_column = columns.index(current) if current in columns else 0

    def on_resize(self) -> None:
        self._resize()

    def _resize(self) -> None:
        self._arrange()
        size = Size(_MARK + sum(c.width + 1 for c in self.columns), len(self._view) + 1)
        old = self.virtual_size
        height = self.size.height
        if size.width == old.width and (size.height > height) == (old.height > height):
            # Only the row count changed and no scrollbar appears or goes: skip the
            # whole-screen layout that assigning virtual_size costs (tens of ms per batch).
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        # Styles are looked up once per frame, not once per line: that lookup is costly.
        self._line_styles = {
            name: self.get_component_rich_style(name) for name in self.COMPONENT_CLASSES
        }
        self._base_style = self.rich_style
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self._base_style
        if y == 0:
            strip = self._header(base)
        else:
            position = scroll_y + y - 1
            if position >= len(self._view):
                return Strip.blank(width, base)
            strip = self._row_line(position, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _header(self, base: Style) -> Strip:
        header = base + self._line_styles["results--header"]
        current = base + self._line_styles["results--header-current"]
        segments = [Segment(" " * _MARK, header)]
        for number, column in enumerate(self.columns):
            label = column.label
            if self._sort is not None and self._sort[0] == column.key:
                label += " ▼" if self._sort[1] else " ▲"
            style = current if number == self.current_column and self.has_focus else header
            segments.append(Segment(set_cell_size(label, column.width), style))
            segments.append(Segment(" ", header))
        return Strip(segments)

    def _row_line(self, position: int, base: Style) -> Strip:
        index = self._view[position]
        row = self._rows[index]
        style = base
        selected = index in self._selected
        if selected:
            style += self._line_styles["results--selected"]
        if position == self.cursor:
            style += self._line_styles["results--cursor"]
        segments = [Segment("● " if selected else "  ", style)]
        for column in self.columns:
            value = printable(row.get(column.key, ""))  # the peer's text, drawn as is
            if cell_len(value) > column.width:
                value = set_cell_size(value, column.width - 1) + "…"
            segments.append(Segment(set_cell_size(value, column.width) + " ", style))
        return Strip(segments)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

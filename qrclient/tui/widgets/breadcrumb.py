"""Where the results table is in the hierarchy: node › query › patient › study › series."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from qrclient.present.printable import printable

SEPARATOR = " › "


class Breadcrumb(Static):
    """The path, cut from the left when the terminal is narrow: the nearest levels and
    the patient's name matter more than the node's address."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.parts: list[str] = []

    def show(self, parts: Sequence[str]) -> None:
        self.parts = [printable(part) for part in parts]  # values from the peer
        self.update(self._text())

    def on_resize(self) -> None:
        self.update(self._text())

    def _text(self) -> Text:
        parts = list(self.parts)
        width = self.content_region.width
        cut = False
        while width and len(parts) > 1 and cell_len(SEPARATOR.join(parts)) + 2 > width:
            parts.pop(0)
            cut = True
        text = Text("… › " if cut else "", style="dim")
        for number, part in enumerate(parts):
            if number:
                text.append(SEPARATOR, style="dim")
            text.append(part, style="bold" if number == len(parts) - 1 else "")
        return text

"""Where the results table is in the hierarchy: node › query › patient › study › series."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from qrclient.present.printable import printable


class Breadcrumb(Static):
    DEFAULT_CSS = """
    Breadcrumb {
        height: 1;
        padding: 0 1;
        background: $boost;
        color: $text-muted;
    }
    """

    def show(self, parts: Sequence[str]) -> None:
        text = Text()
        for number, part in enumerate(parts):
            if number:
                text.append(" › ", style="dim")
            last = number == len(parts) - 1
            text.append(printable(part), style="bold" if last else "")  # values from the peer
        self.update(text)

"""Where the results table is in the hierarchy: node › query › patient › study › series."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from qrclient.ops.printable import printable


class Breadcrumb(Static):
    def show(self, parts: Sequence[str]) -> None:
        text = Text()
        for number, part in enumerate(parts):
            if number:
                text.append(" › ", style="dim")
            last = number == len(parts) - 1
            text.append(printable(part), style="bold" if last else "")  # values from the peer
        self.update(text)

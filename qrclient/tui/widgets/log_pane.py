"""The log pane: association negotiation, every DIMSE message, errors with their fix.

Events can come thousands a second during a big C-FIND; they are buffered and written
a few times a second, and only the latest lines are kept. Lines are plain text (a Log
parses no markup) made printable: what the peer wrote never reaches the terminal raw.
"""

from __future__ import annotations

import time

from textual.widgets import Log

from qrclient.net.events import Event
from qrclient.present.events import describe_event
from qrclient.present.printable import printable

MAX_LINES = 5000


class LogPane(Log):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=True, id=id)
        self._pending: list[str] = []

    def on_mount(self) -> None:
        self.set_interval(0.2, self.flush)

    def record(self, event: Event) -> None:
        """Settings.observer: called by the core on the event loop, so keep it cheap."""
        if len(self._pending) > MAX_LINES:
            del self._pending[: MAX_LINES // 2]
        stamp = self._stamp()
        for line in describe_event(event):
            self._pending.append(f"{stamp} {line}")

    def note(self, text: str) -> None:
        """A line of ours, often quoting the peer (errors): shown printable."""
        self._pending.append(f"{self._stamp()} {printable(text)}")

    def _stamp(self) -> str:
        stamp = getattr(self.app, "stamp", None)
        return str(stamp()) if callable(stamp) else time.strftime("%H:%M:%S")

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self.write_lines(lines)

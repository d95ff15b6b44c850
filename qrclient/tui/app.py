"""QrclientApp: the Textual application; the main screen and its panels do the work."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from qrclient.net.events import Event, Observer
from qrclient.present.printable import printable
from qrclient.tui.backend import Backend
from qrclient.tui.history import QueryHistory
from qrclient.tui.nodes import NodeBook
from qrclient.tui.screens.main import MainScreen
from qrclient.tui.widgets.log_pane import LogPane

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

# Builds the backend once the app exists: the real one needs the log pane as observer.
BackendFactory = Callable[[Observer], Backend]


class QrclientApp(App[int]):
    TITLE = "qrclient"
    CSS_PATH: ClassVar[list[str | PurePath]] = ["styles.tcss", "widgets.tcss"]
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Focus moves as the key is read, not after the keys typed before it were handled:
        # typed (or pasted) fast, "20200101<tab>20201231" fills two fields, not one.
        Binding("tab", "focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(
        self,
        backend: BackendFactory,
        *,
        node: str = "",
        nodes: NodeBook | None = None,
        clock: Callable[[], float] = time.perf_counter,
        stamp: Callable[[], str] = lambda: time.strftime("%H:%M:%S"),
        history: QueryHistory | None = None,
        preview_renderer: str = "auto",
    ) -> None:
        super().__init__()
        self.nodes = nodes or NodeBook()
        self.clock = clock  # durations shown; fixed in snapshot tests
        self.stamp = stamp  # log pane time stamps
        self._node = node
        self._history = history
        self.preview_renderer = preview_renderer  # auto: what the terminal can draw
        self._log_pane: LogPane | None = None  # found on the first event, then kept
        self.backend = backend(self._observe)

    def _observe(self, event: Event) -> None:
        """Settings.observer: every association and DIMSE event goes to the log pane."""
        if self._log_pane is None:
            panes = [pane for screen in self.screen_stack for pane in screen.query(LogPane)]
            if not panes:
                return  # before the main screen exists, or after it is gone
            self._log_pane = panes[0]
        self._log_pane.record(event)

    def on_mount(self) -> None:
        # What start-up built lives as long as the app: keep it out of the collector's
        # full passes, which otherwise stall key presses while big results stream in.
        gc.freeze()
        self.push_screen(
            MainScreen(
                self.backend,
                self.nodes,
                node_text=self._node,
                clock=self.clock,
                history=self._history,
            )
        )

    async def action_quit(self) -> None:
        """Quit; with retrieves or resumes running, ask first (they would stop)."""
        from qrclient.tui.screens.confirm import ConfirmQuit

        busy = sum(s.jobs_panel.busy for s in self.screen_stack if isinstance(s, MainScreen))
        if not busy or isinstance(self.screen, ConfirmQuit):
            self.exit()
            return

        def answered(quit_now: bool | None) -> None:
            if quit_now:
                self.exit()

        self.push_screen(ConfirmQuit(busy), answered)

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

    async def on_unmount(self) -> None:
        await self.backend.aclose()

"""The node bar: which PACS to talk to, and an echo to check it."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Static

from qrclient.present.printable import printable


class NodeBar(Horizontal):
    """An input for ``AET@host:port`` or a configured name, an Echo button, the result."""

    class EchoRequested(Message):
        def __init__(self, node_text: str) -> None:
            super().__init__()
            self.node_text = node_text

    def __init__(self, node: str = "", names: Sequence[str] = ()) -> None:
        super().__init__(id="node-bar")
        self._node = node
        self._names = list(names)

    def compose(self) -> ComposeResult:
        yield Label("Node")
        placeholder = "AET@host:port" + (" or a name" if self._names else "")
        yield Input(
            self._node,
            placeholder=placeholder,
            id="node",
            compact=True,
            suggester=SuggestFromList(self._names, case_sensitive=False) if self._names else None,
            tooltip="the PACS: AET@host:port"
            + (", or " + ", ".join(self._names) if self._names else ""),
        )
        yield Button("Echo", id="echo", compact=True)
        yield Static("", id="echo-status", markup=False)  # quotes the peer

    @property
    def node_text(self) -> str:
        return self.query_one("#node", Input).value.strip()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.EchoRequested(self.node_text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.EchoRequested(self.node_text))

    def show_status(self, text: str, *, ok: bool | None = None) -> None:
        status = self.query_one("#echo-status", Static)
        status.update(printable(text))
        status.set_class(ok is True, "-ok")
        status.set_class(ok is False, "-error")

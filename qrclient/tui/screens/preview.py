"""The image preview (v): a stored instance or series in the terminal, page by page.

textual-image draws it with the terminal's graphics (Kitty's protocol, Sixel) or, on
any terminal, with coloured half blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from qrclient.present.printable import printable
from qrclient.tui.preview import PreviewError, picture


def image_widget(renderer: str) -> Widget:
    """An empty image widget drawing the way ``renderer`` says (auto: what the terminal
    answered when textual-image asked it, before the app started)."""
    from textual_image import widget

    kinds: dict[str, type[Widget]] = {
        "auto": widget.Image,
        "tgp": widget.TGPImage,
        "sixel": widget.SixelImage,
        "halfcell": widget.HalfcellImage,
    }
    return kinds.get(renderer, widget.Image)(id="picture")


class PreviewScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Close"),
        Binding("right,n,pagedown", "page(1)", "Next"),
        Binding("left,p,pageup", "page(-1)", "Previous"),
        Binding("home", "first", "First", show=False),
    ]

    def __init__(
        self, paths: list[Path], start: int = 0, title: str = "", renderer: str = "auto"
    ) -> None:
        super().__init__()
        self.paths = paths
        self.index = max(0, min(start, len(paths) - 1))
        self.title_text = title
        self.renderer = renderer

    def compose(self) -> ComposeResult:
        with Vertical(id="preview"):
            yield Static("", id="preview-caption", markup=False)
            yield image_widget(self.renderer)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        caption = self.query_one("#preview-caption", Static)
        place = f"{self.index + 1}/{len(self.paths)}"
        widget = self.query_one("#picture")
        try:
            image, about = picture(self.paths[self.index])
        except PreviewError as exc:
            widget.image = None  # type: ignore[attr-defined]
            caption.update(printable(f"{self.title_text}  {place}  {exc}"))
            return
        widget.image = image  # type: ignore[attr-defined]
        caption.update(printable(f"{self.title_text}  {place}  {about}"))

    def action_page(self, step: int) -> None:
        self.index = (self.index + step) % len(self.paths)
        self.show()

    def action_first(self) -> None:
        self.index = 0
        self.show()

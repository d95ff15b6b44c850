"""The header view (i): a data set as a tree of tags, VRs and values, searchable.

Of a stored instance (its file, without the pixels) or of a result row (what the PACS
answered for it). Sequences open and close; typing in the search line keeps the
elements whose tag, keyword or value contain the text (and the sequences around them).
"""

from __future__ import annotations

from typing import ClassVar

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, Tree
from textual.widgets.tree import TreeNode

from qrclient.present.browse import text_of
from qrclient.present.printable import printable
from qrclient.tui.widgets.results import fold

MAX_VALUE = 120  # characters of a value shown on its line


def element_line(element: DataElement) -> str:
    """``(0010,0010) PN PatientName  DOE^JOHN``: one line per element."""
    tag = f"({element.tag.group:04X},{element.tag.element:04X})"
    name = element.keyword or element.name
    if element.VR == "SQ":
        value = f"{len(element.value)} item{'s' if len(element.value) != 1 else ''}"
    elif element.tag == 0x7FE00010:
        value = f"<pixel data, {len(element.value or b'')} bytes>"
    else:
        value = text_of(element)
    if len(value) > MAX_VALUE:
        value = value[: MAX_VALUE - 1] + "…"
    return printable(f"{tag} {element.VR} {name}  {value}")  # values from the peer


class HeaderScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("slash", "search", "Search"),
        Binding("plus", "expand_all", "Open all", show=False),
        Binding("minus", "collapse_all", "Close all", show=False),
    ]

    def __init__(self, dataset: Dataset, title: str) -> None:
        super().__init__()
        self.dataset = dataset
        self.title_text = title

    def compose(self) -> ComposeResult:
        yield Static(printable(self.title_text), id="header-caption", markup=False)
        yield Input(placeholder="/ search tags, keywords and values", id="header-search")
        yield Tree("data set", id="header-tree")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.fill("")
        self.query_one(Tree).focus()

    def fill(self, text: str) -> int:
        """The tree of the elements matching ``text`` (all for ""); how many match."""
        tree: Tree[None] = self.query_one(Tree)
        tree.clear()
        tree.root.expand()
        needle = fold(text.strip())
        matched = self._add(tree.root, self.dataset, needle)
        if needle:
            tree.root.expand_all()
        return matched

    def _add(self, parent: TreeNode[None], dataset: Dataset, needle: str) -> int:
        matched = 0
        for element in dataset:
            line = element_line(element)
            hit = not needle or needle in fold(line)
            if element.VR == "SQ":
                node = parent.add(Text(line, style="bold"), expand=False)
                inside = 0
                for number, item in enumerate(element.value, 1):
                    child = node.add(Text(f"item {number}", style="dim"))
                    found = self._add(child, item, "" if hit else needle)
                    if not found and needle and not hit:
                        child.remove()
                    inside += found
                if needle and not hit and not inside:
                    node.remove()
                matched += inside + hit
            elif hit:
                parent.add_leaf(Text(line))
                matched += 1
        return matched

    def on_input_changed(self, event: Input.Changed) -> None:
        count = self.fill(event.value)
        if event.value.strip():
            self.query_one("#header-caption", Static).update(
                printable(f"{self.title_text}  ·  {count} matching")
            )
        else:
            self.query_one("#header-caption", Static).update(printable(self.title_text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(Tree).focus()

    def action_search(self) -> None:
        self.query_one(Input).focus()

    def action_close(self) -> None:
        search = self.query_one(Input)
        if self.focused is search and search.value:
            search.value = ""
            return
        self.app.pop_screen()

    def action_expand_all(self) -> None:
        self.query_one(Tree).root.expand_all()

    def action_collapse_all(self) -> None:
        self.query_one(Tree).root.collapse_all()
        self.query_one(Tree).root.expand()

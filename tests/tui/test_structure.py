"""The UI's shape (issue 14.5): panels get the backend handed in, styles live in .tcss."""

from __future__ import annotations

import ast
from pathlib import Path

import qrclient.tui

TUI = Path(qrclient.tui.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_screens_and_widgets_never_reach_back_to_the_app() -> None:
    modules = [*TUI.glob("screens/*.py"), *TUI.glob("widgets/*.py")]
    assert len(modules) > 8
    for path in modules:
        assert "qrclient.tui.app" not in _imports(path), path


def test_styles_live_in_tcss_files() -> None:
    for path in TUI.rglob("*.py"):
        assert "DEFAULT_CSS" not in path.read_text(), path
    for name in ("styles.tcss", "widgets.tcss"):
        assert (TUI / name).stat().st_size > 100


def test_no_panel_catches_sqlite_errors() -> None:
    """The store says what failed with its own StoreError; the UI catches that."""
    for path in TUI.rglob("*.py"):
        assert "sqlite3" not in _imports(path), path

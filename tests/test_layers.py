"""The import graph of qrclient runs one way, from the faces down to the vocabulary.

Every ``import`` in every module counts (at the top, inside functions, under
``TYPE_CHECKING``): a lazy import is still a dependency. A package may import its own
layer's other packages, but never one above it, and packages never import each other
in a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import qrclient

ROOT = Path(qrclient.__file__).parent

# Top to bottom; a package may import from its own layer and the layers below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"cli", "tui", "demo", "__main__"}),  # faces
    frozenset({"client", "api", "qrclient"}),  # the client; `qrclient` is the package root
    frozenset({"present"}),  # presentation of what the jobs and services do
    frozenset({"jobs"}),
    frozenset({"ops", "store", "deid"}),  # services
    frozenset({"config"}),
    frozenset({"net"}),
    frozenset({"vocabulary"}),
)
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def module_name(path: Path) -> str:
    parts = ["qrclient", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The top-level package (or module) under qrclient a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "qrclient"


def imported(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every qrclient import in the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - (not is_package)]
                base = base[: len(base) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base), node.lineno
            elif node.module:
                yield node.module, node.lineno


def edges() -> list[tuple[str, str, str, int]]:
    """(package, imported package, module, line) for imports across packages."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        for target, line in imported(path, module):
            if target == "qrclient" or target.startswith("qrclient."):
                source, imported_package = package_of(module), package_of(target)
                if source != imported_package:
                    found.append((source, imported_package, module, line))
    return found


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module_name(path)) for path in ROOT.rglob("*.py")}
    assert packages - RANK.keys() == set(), "give the new package a layer in LAYERS"
    assert {"vocabulary", "client"} <= packages


def test_imports_run_one_way() -> None:
    upward = [
        f"{module}:{line} imports qrclient.{target} ({source} may not import upward)"
        for source, target, module, line in edges()
        if RANK[target] < RANK[source]
    ]
    assert not upward, "\n".join(upward)


def test_no_circles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _, _ in edges():
        graph.setdefault(source, set()).add(target)
    circles = []
    for start in graph:
        # Depth-first from each package: reaching it again is a circle.
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        seen: set[str] = set()
        while stack:
            package, path = stack.pop()
            for following in sorted(graph.get(package, ())):
                if following == start:
                    circles.append(" -> ".join((*path, start)))
                elif following not in seen:
                    seen.add(following)
                    stack.append((following, (*path, following)))
    assert not circles, "\n".join(circles)


def test_vocabulary_depends_on_nothing() -> None:
    path = ROOT / "vocabulary.py"
    assert [t for t, _ in imported(path, "qrclient.vocabulary") if t.startswith("qrclient")] == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The parser finds imports at every depth, so an upward one cannot hide."""
    source = tmp_path / "x.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from qrclient.cli import main\n"
        "def f() -> None:\n    import qrclient.tui.app\n"
    )
    assert [t for t, _ in imported(source, "qrclient.net.x")] == [
        "typing",
        "qrclient.cli",
        "qrclient.tui.app",
    ]

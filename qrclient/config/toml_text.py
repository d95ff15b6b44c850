"""A TOML document as statements (tables, key/values, comments), with their lines.

tomllib gives values but no positions. Cutting the text into statements, each checked
by parsing it alone, tells which line defines which key: the line named in an error,
and the lines to take out when a node is removed, leaving every other byte as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

KeyPath = tuple[str, ...]


class Kind(Enum):
    TRIVIA = "trivia"  # blank lines and comments
    TABLE = "table"  # [a.b] or [[a.b]]
    VALUE = "value"  # key = value, possibly over several lines


@dataclass(frozen=True, slots=True)
class Statement:
    kind: Kind
    first: int  # index of its first line
    end: int  # index after its last line
    table: KeyPath  # TABLE: the table it opens; VALUE: the table it is in
    content: dict[str, Any]  # VALUE: what it sets, relative to ``table``


class UnsplittableError(ValueError):
    """The text is not a sequence of statements (it is not valid TOML)."""


def lines_of(text: str) -> list[str]:
    """Lines as TOML counts them: only LF (or CRLF) ends one, unlike str.splitlines,
    which also splits on U+2028, U+0085 and others that TOML allows in comments."""
    return _LINE.findall(text)


_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def split_statements(text: str) -> list[Statement]:
    """Every statement of a valid TOML document, in order, covering all its lines."""
    lines = lines_of(text)
    statements: list[Statement] = []
    table: KeyPath = ()
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            statements.append(Statement(Kind.TRIVIA, index, index + 1, table, {}))
            index += 1
            continue
        end, parsed = _shortest_document(lines, index)
        if stripped.startswith("["):
            table = _header_path(parsed)
            statements.append(Statement(Kind.TABLE, index, end, table, {}))
        else:
            statements.append(Statement(Kind.VALUE, index, end, table, parsed))
        index = end
    return statements


def _shortest_document(lines: list[str], first: int) -> tuple[int, dict[str, Any]]:
    """The fewest lines from ``first`` on that parse alone (a multi-line value's lines)."""
    import tomllib  # here, as in parse_config: only a configuration file needs it

    for end in range(first + 1, len(lines) + 1):
        try:
            return end, tomllib.loads("".join(lines[first:end]))
        except tomllib.TOMLDecodeError:
            continue
    raise UnsplittableError(f"line {first + 1} starts no complete TOML statement")


def _header_path(parsed: dict[str, Any]) -> KeyPath:
    """``[a."b c"]`` parses to {"a": {"b c": {}}}: the chain of keys down to the table."""
    path: list[str] = []
    node: Any = parsed
    while True:
        if isinstance(node, list) and node:
            node = node[-1]
        if not isinstance(node, dict) or len(node) != 1:
            return tuple(path)
        key, node = next(iter(node.items()))
        path.append(key)


def nested(path: KeyPath, content: dict[str, Any]) -> dict[str, Any]:
    for key in reversed(path):
        content = {key: content}
    return content


def key_lines(statements: list[Statement]) -> dict[KeyPath, int]:
    """Each key path (tables and values, with their prefixes) -> the 1-based line
    where it is first defined."""
    lines: dict[KeyPath, int] = {}
    for statement in statements:
        line = statement.first + 1
        if statement.kind is Kind.TABLE:
            for length in range(1, len(statement.table) + 1):
                lines.setdefault(statement.table[:length], line)
        elif statement.kind is Kind.VALUE:
            _add_paths(statement.table, statement.content, line, lines)
    return lines


def _add_paths(prefix: KeyPath, value: Any, line: int, lines: dict[KeyPath, int]) -> None:
    for length in range(1, len(prefix) + 1):
        lines.setdefault(prefix[:length], line)
    if isinstance(value, dict):
        for key, inner in value.items():
            _add_paths((*prefix, key), inner, line, lines)


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line defining ``path``, or its nearest enclosing table's."""
    for length in range(len(path), 0, -1):
        if path[:length] in lines:
            return lines[path[:length]]
    return None


def without_table(text: str, path: KeyPath, replacement: str = "") -> str:
    """The text without the statements that define ``path`` (a table) and what is in it,
    or with ``replacement`` in their place.

    Comments inside that table go with it, and so do the comment lines directly above
    its header (unless it is replaced in place); other comments and blank lines stay.
    Statements that define ``path`` together with something else
    (``nodes = {a = {...}, b = {...}}``) stay: the caller checks the result by parsing it.
    """
    statements = split_statements(text)
    lines = lines_of(text)
    removed = [_only_under(s, path) for s in statements]
    for index, statement in enumerate(statements):
        if statement.kind is Kind.TRIVIA:
            before = _nearest(statements, removed, index, -1)
            after = _nearest(statements, removed, index, +1)
            removed[index] = before and after
    if not replacement:
        for index, statement in enumerate(statements):
            if statement.kind is Kind.TABLE and removed[index]:
                above = index - 1
                while above >= 0 and lines[statements[above].first].lstrip().startswith("#"):
                    removed[above] = True
                    above -= 1
    kept: list[str] = []
    for index, statement in enumerate(statements):
        if removed[index]:
            if replacement and statement.kind is not Kind.TRIVIA:
                kept.append(replacement)
                replacement = ""
            continue
        follows_removed = index > 0 and removed[index - 1]
        blank = not lines[statement.first].strip()
        if follows_removed and blank and _ends_blank(kept):
            continue  # one blank line between what was before and after, not two
        kept.extend(lines[statement.first : statement.end])
    last = max((i for i, s in enumerate(statements) if s.kind is not Kind.TRIVIA), default=-1)
    if last >= 0 and removed[last]:
        while kept and not kept[-1].strip():
            kept.pop()  # the removed table ended the file: no blank lines left after it
    return "".join(kept)


def _ends_blank(kept: list[str]) -> bool:
    return not kept or not kept[-1].strip()


def _nearest(statements: list[Statement], removed: list[bool], index: int, step: int) -> bool:
    """Whether the nearest non-trivia statement in direction ``step`` is removed."""
    index += step
    while 0 <= index < len(statements):
        if statements[index].kind is not Kind.TRIVIA:
            return removed[index]
        index += step
    return False


def _only_under(statement: Statement, path: KeyPath) -> bool:
    if statement.kind is Kind.TABLE:
        return statement.table[: len(path)] == path
    if statement.kind is Kind.TRIVIA:
        return False
    if statement.table[: len(path)] == path:
        return True
    node: Any = nested(statement.table, statement.content)
    for key in path:
        if not isinstance(node, dict) or list(node) != [key]:
            return False
        node = node[key]
    return True

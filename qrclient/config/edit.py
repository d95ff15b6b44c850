"""Adding and removing named nodes by editing the file's text.

The rest of the file (comments, order, layout) stays byte for byte: a new node is
appended as its own table, a removed one has its statements taken out. Each edit is
checked before anything is written: the new text must parse to exactly the old document
with that one node added or removed, and must load as a valid configuration. The file is
then replaced atomically (a temporary file in the same folder, renamed over it).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from qrclient.config import read_bounded
from qrclient.config.errors import ConfigError
from qrclient.config.model import Config
from qrclient.config.parse import NODE_NAME, NODE_NAME_RULE
from qrclient.config.toml_text import UnsplittableError, without_table
from qrclient.net.peer import NodeError

NEW_FILE_HEADER = (
    "# qrclient configuration (see docs/configuration.md in qrclient's sources).\n"
    "# Edited by 'qrclient nodes add/remove': comments and other settings are kept.\n"
)


def check_node_name(name: str) -> str:
    if not NODE_NAME.fullmatch(name):
        raise NodeError(f"node name {name!r}: expected {NODE_NAME_RULE} characters")
    return name


def add_node(file: Path, name: str, table: dict[str, Any], *, replace: bool = False) -> Config:
    """Add ``[nodes.NAME]`` with ``table``'s settings (or replace it, with ``replace``)."""
    from qrclient.config import parse_config

    check_node_name(name)
    text = _read(file, missing_ok=True)
    document = _parse(file, text)  # a broken file is reported, not edited
    nodes = document.get("nodes", {})
    if name in nodes and not replace:
        raise NodeError(f"node {name!r} already exists in {file}: use --replace to overwrite it")
    newline = "\r\n" if "\r\n" in text else "\n"
    block = tomli_w.dumps({"nodes": {name: table}}).replace("\n", newline)
    expected = copy.deepcopy(document)
    expected.setdefault("nodes", {})[name] = table
    if name in nodes:  # in place, where the old one was; else at the end
        candidates = [_edited(text, name, block), _appended(_edited(text, name), block, newline)]
    else:
        candidates = [_appended(text, block, newline)]
    what = f"{'replace' if name in nodes else 'add'} node {name!r}"
    new_text = _first_good(file, candidates, expected, what)
    config = parse_config(new_text, file)
    write_atomically(file, new_text)
    return config


def remove_node(file: Path, name: str) -> Config:
    from qrclient.config import parse_config

    text = _read(file, missing_ok=False)
    document = _parse(file, text)
    if name not in document.get("nodes", {}):
        known = ", ".join(sorted(document.get("nodes", {}))) or "none"
        raise NodeError(f"no node named {name!r} in {file} (configured: {known})")
    expected = copy.deepcopy(document)
    del expected["nodes"][name]
    new_text = _first_good(file, [_edited(text, name)], expected, f"remove node {name!r}")
    config = parse_config(new_text, file)
    write_atomically(file, new_text)
    return config


def _appended(text: str, block: str, newline: str) -> str:
    if not text.strip():
        return (text or NEW_FILE_HEADER.replace("\n", newline)) + newline + block
    if not text.endswith(("\n", "\r")):
        text += newline
    return text + ("" if text.endswith(newline * 2) else newline) + block


def _edited(text: str, name: str, replacement: str = "") -> str:
    try:
        return without_table(text, ("nodes", name), replacement)
    except UnsplittableError:
        return text  # refused by _first_good, as any edit that does not check out


def _first_good(file: Path, candidates: list[str], expected: dict[str, Any], what: str) -> str:
    """The first edited text that parses to ``expected``: nothing else may change."""
    for candidate in candidates:
        try:
            result = tomllib.loads(candidate)
        except tomllib.TOMLDecodeError:
            continue
        if _without_empty_nodes(result) == _without_empty_nodes(expected):
            return candidate
    raise ConfigError(
        f"{file}: cannot {what} by editing only its own lines (are the nodes written "
        "as one inline table?): edit the file by hand"
    )


def _without_empty_nodes(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not (k == "nodes" and v == {})}


def _read(file: Path, *, missing_ok: bool) -> str:
    try:
        with file.open(encoding="utf-8", newline="") as stream:  # keep \r\n as it is
            return read_bounded(stream, file)
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise ConfigError(f"{file}: no such configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it: {exc.strerror or exc}") from None


def _parse(file: Path, text: str) -> dict[str, Any]:
    from qrclient.config import parse_config

    config = parse_config(text, file)  # the whole file must be valid before an edit
    del config
    return tomllib.loads(text)


def write_atomically(file: Path, text: str) -> None:
    """Readers see the old file or the new one, never a mix, even if we are killed."""
    target = Path(os.path.realpath(file))  # a symlinked config stays a symlink
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = target.stat().st_mode & 0o7777 if target.exists() else None
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise ConfigError(f"{file}: cannot write it: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ConfigError(f"{file}: cannot write it: {exc.strerror or exc}") from None
        raise

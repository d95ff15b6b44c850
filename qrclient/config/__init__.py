"""The configuration file: our AE title, the local store and named nodes.

``load_config()`` reads ``--config FILE``, else ``$QRCLIENT_CONFIG``, else
``config.toml`` in the user configuration directory (platformdirs); a missing default
file means the built-in defaults, a missing file named explicitly is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from qrclient.config.errors import ConfigError
from qrclient.config.model import Config, NodeConfig, NodeDefaults
from qrclient.config.parse import ConfigParser
from qrclient.config.toml_text import UnsplittableError, key_lines, lines_of, split_statements

if TYPE_CHECKING:
    import tomllib

ENVIRONMENT_VARIABLE = "QRCLIENT_CONFIG"

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "Config",
    "ConfigError",
    "NodeConfig",
    "NodeDefaults",
    "config_path",
    "default_config_path",
    "load_config",
    "parse_config",
]


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("qrclient")) / "config.toml"


def config_path(path: str | Path | None = None) -> tuple[Path, str | None]:
    """The file to use and what named it: "argument", "environment" or None (default)."""
    if path is not None and str(path):
        return Path(path).expanduser(), "argument"
    from_environment = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if from_environment:
        return Path(from_environment).expanduser(), "environment"
    return default_config_path(), None


def load_config(path: str | Path | None = None, *, missing_ok: bool = False) -> Config:
    """The configuration in effect; ConfigError (one line) when it cannot be used.

    ``missing_ok``: a file named by ``path`` or $QRCLIENT_CONFIG that does not exist yet
    means the built-in defaults (as the default file does), e.g. for the demo, whose
    user may not have run 'qrclient nodes add' (which creates it) yet.
    """
    file, named_by = config_path(path)
    text = read_text(file, None if missing_ok else named_by)
    if text is None:
        return Config(file)
    return parse_config(text, file)


MAX_CHARACTERS = 1 << 20  # a configuration file is a few hundred bytes: 1 MiB is not one


def read_text(file: Path, named_by: str | None) -> str | None:
    """The file's text; None for a missing default file (the built-in defaults apply)."""
    try:
        with file.open(encoding="utf-8") as stream:
            return read_bounded(stream, file)
    except FileNotFoundError:
        if named_by is None:
            return None
        source = f" (named by ${ENVIRONMENT_VARIABLE})" if named_by == "environment" else ""
        raise ConfigError(f"{file}: no such configuration file{source}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it: {exc.strerror or exc}") from None


def read_bounded(stream: TextIO, file: Path) -> str:
    """All of ``stream`` (never more than MAX_CHARACTERS: it may be a device or a pipe)."""
    text = stream.read(MAX_CHARACTERS + 1)
    if len(text) > MAX_CHARACTERS:
        raise ConfigError(f"{file}: larger than 1 MiB: expected a qrclient configuration file")
    return text


def parse_config(text: str, file: Path) -> Config:
    import tomllib  # here: without a configuration file, commands start without it

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(syntax_error(file, text, exc)) from None
    except RecursionError:  # tomllib recurses into each nested array or inline table
        raise ConfigError(
            f"{file}: arrays or tables nested too deeply: expected a qrclient configuration file"
        ) from None
    try:
        lines = key_lines(split_statements(text))
    except UnsplittableError:  # valid TOML our splitter does not follow: no line numbers
        lines = {}
    return ConfigParser(file, lines).config(document)


_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")
_HEADER = re.compile(r"^\s*\[+\s*([^\]#]+?)\s*(?:\]|$)")
_KEY = re.compile(r"^\s*([^=#\[]+?)\s*=")


def syntax_error(file: Path, text: str, error: tomllib.TOMLDecodeError) -> str:
    """tomllib's message with its line and, where the line has one, the field."""
    message = str(error)
    match = _POSITION.search(message)
    reason = message[: match.start()] if match else message
    lines = [line.rstrip("\r\n") for line in lines_of(text)]
    if match and match.group(1):
        line, column = int(match.group(1)), int(match.group(2))
    else:
        line, column = len(lines) or 1, 0
        while line > 1 and not lines[line - 1].strip():
            line -= 1  # "end of document": the last line with something on it
    field = _field_at(lines, line)
    where = f"{file} line {line}" + (f", column {column}" if column else "")
    reason = reason[:1].lower() + reason[1:]
    return f"{where}: {field + ': ' if field else ''}{reason} (not valid TOML)"


def _field_at(lines: list[str], line: int) -> str:
    """``table.key`` for a ``key = ...`` line, found by looking at the text around it."""
    if not 1 <= line <= len(lines):
        return ""
    key = _KEY.match(lines[line - 1])
    header = _HEADER.match(lines[line - 1])
    if header:
        return header.group(1)
    if not key:
        return ""
    for previous in reversed(lines[: line - 1]):
        table = _HEADER.match(previous)
        if table:
            return f"{table.group(1)}.{key.group(1)}"
    return key.group(1)

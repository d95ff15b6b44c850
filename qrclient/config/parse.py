"""From a TOML document to a checked Config; errors name the file, line and field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from qrclient.config.errors import ConfigError
from qrclient.config.model import (
    DEFAULT_AE_TITLE,
    MAX_PARALLEL,
    Config,
    NodeConfig,
    NodeDefaults,
)
from qrclient.config.toml_text import KeyPath, line_of
from qrclient.net.peer import (
    DEFAULT_LISTEN_HOST,
    NodeError,
    Peer,
    check_ae_title,
    check_host,
    check_sender,
    parse_listen,
)
from qrclient.net.settings import DEFAULT_MAX_INSTANCE, DEFAULT_MAX_PDU
from qrclient.net.tls import TlsSettings
from qrclient.vocabulary import Method, Model

T = TypeVar("T")

GLOBAL_KEYS = (
    *("ae_title", "store", "max_pdu", "max_instance", "model", "method", "listen", "parallel"),
)
GLOBAL_TABLES = ("timeouts", "nodes")
NODE_KEYS = (
    *("ae_title", "host", "port", "model", "method", "destination", "listen", "parallel"),
    *("calling_ae", "timeouts", "tls", "move_from", "find_cap"),
)
TIMEOUT_KEYS = ("connect", "association", "dimse", "network")
TLS_KEYS = ("ca", "cert", "key", "verify", "server_name")
NODE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
NODE_NAME_RULE = "letters, digits, '-' and '_', at most 64"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: Iterable[str]) -> str:
    return ".".join(k if _BARE_KEY.fullmatch(k) else json.dumps(k) for k in path)


def show(value: object) -> str:
    """A value as it would be written in TOML (shortened: this goes on one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


class Reader:
    """Checks values at key paths, raising ConfigError naming where they are."""

    def __init__(self, path: Path, lines: Mapping[KeyPath, int]) -> None:
        self.path = path
        self.lines = dict(lines)

    def error(self, path: KeyPath, value: object, expected: str) -> ConfigError:
        line = line_of(self.lines, path)
        where = f"{self.path} line {line}" if line else str(self.path)
        field = dotted(path) if value is None else f"{dotted(path)} = {show(value)}"
        return ConfigError(f"{where}: {field}: {expected}")

    def table(self, path: KeyPath, value: object, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, value, "expected a table")
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                raise self.error(
                    (*path, key), None, f"unknown setting: expected one of {', '.join(allowed)}"
                )
        return value

    def checked(self, path: KeyPath, value: object, check: Callable[[Any], T], what: str) -> T:
        try:
            return check(value)
        except (NodeError, ValueError, TypeError):
            raise self.error(path, value, f"expected {what}") from None


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _integer(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(value)
        return value

    return check


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ValueError(value)
    return float(value)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def ae_title(value: object) -> str:
    return check_ae_title(_string(value))


def host(value: object) -> str:
    text = _string(value)
    return check_host(f"[{text}]" if ":" in text and not text.startswith("[") else text)


port = _integer(1, 65535)
parallel = _integer(1, MAX_PARALLEL)
find_cap = _integer(1, 10_000_000)
max_pdu = _integer(4096, 0x7FFFFFFF)
MAX_INSTANCE_RANGE = "1K to 1T bytes, as a number or with K, M, G or T (powers of 1024)"
_SIZE = re.compile(r"(\d+)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def size_in_bytes(text: str) -> int:
    """``4294967296``, ``4G``, ``500MiB``... as bytes, for max_instance and --max-instance;
    ValueError unless it is within MAX_INSTANCE_RANGE."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    number, unit = match.groups()
    size = int(number) << 10 * " KMGT".index(unit.upper() or " ")
    if not 1 << 10 <= size <= 1 << 40:
        raise ValueError(text)
    return size


def max_instance(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return size_in_bytes(_string(value))


def model(value: object) -> Model:
    return Model(_string(value).lower())


def method(value: object) -> Method:
    return Method(_string(value).lower())


def listen(value: object) -> tuple[str, int]:
    """``PORT``, ``"PORT"``, ``"HOST:PORT"`` or ``"[IPv6]:PORT"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return DEFAULT_LISTEN_HOST, port(value)
    return parse_listen(_string(value))


def move_from(value: object) -> tuple[str, ...]:
    """Addresses, networks (``10.1.2.0/24``) or host names: one, or an array."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(value)
    return tuple(check_sender(_string(item)) for item in items)


def _file(base: Path) -> Callable[[object], str]:
    def check(value: object) -> str:
        text = _string(value)
        if not text or "\0" in text:  # no file system takes a NUL
            raise ValueError(value)
        return str(base / Path(text).expanduser())  # relative: to the config's folder

    return check


class ConfigParser:
    def __init__(self, path: Path, lines: Mapping[KeyPath, int]) -> None:
        self.read = Reader(path, lines)
        self.base = path.parent

    def config(self, document: dict[str, Any]) -> Config:
        r = self.read
        doc = r.table((), document, (*GLOBAL_KEYS, *GLOBAL_TABLES))
        store = None
        if "store" in doc:
            store = Path(r.checked(("store",), doc["store"], _file(self.base), "a folder path"))
        defaults = self.defaults((), doc, NodeDefaults())
        nodes_table = doc.get("nodes", {})
        if not isinstance(nodes_table, dict):
            raise r.error(("nodes",), nodes_table, "expected a table of named nodes")
        nodes = {}
        for name, table in nodes_table.items():
            if not NODE_NAME.fullmatch(name):
                raise r.error(("nodes", name), None, f"node names are {NODE_NAME_RULE}")
            nodes[name] = self.node(name, table, defaults)
        return Config(
            r.path,
            self.value(doc, ("ae_title",), ae_title, "our AE title: 1 to 16 characters")
            or DEFAULT_AE_TITLE,
            store,
            self.value(doc, ("max_pdu",), max_pdu, "4096 to 2147483647 bytes") or DEFAULT_MAX_PDU,
            self.value(doc, ("max_instance",), max_instance, MAX_INSTANCE_RANGE)
            or DEFAULT_MAX_INSTANCE,
            defaults,
            nodes,
        )

    def value(
        self, table: Mapping[str, Any], path: KeyPath, check: Callable[[Any], T], what: str
    ) -> T | None:
        key = path[-1]
        if key not in table:
            return None
        return self.read.checked(path, table[key], check, what)

    def defaults(self, at: KeyPath, table: Mapping[str, Any], base: NodeDefaults) -> NodeDefaults:
        """Model, method, listen, parallel and timeouts set in ``table``, else ``base``'s."""
        listen_at = self.value(table, (*at, "listen"), listen, "[HOST:]PORT, e.g. 11113")
        timeouts = base.timeouts
        if "timeouts" in table:
            values = self.read.table((*at, "timeouts"), table["timeouts"], TIMEOUT_KEYS)
            timeouts = replace(
                timeouts,
                **{
                    key: self.read.checked(
                        (*at, "timeouts", key), v, _seconds, "0 < seconds <= 86400"
                    )
                    for key, v in values.items()
                },
            )
        return NodeDefaults(
            self.value(table, (*at, "model"), model, "patient or study") or base.model,
            self.value(table, (*at, "method"), method, "get, move or auto") or base.method,
            listen_at[0] if listen_at else base.listen_host,
            listen_at[1] if listen_at else base.listen_port,
            self.value(table, (*at, "parallel"), parallel, f"1 to {MAX_PARALLEL} associations")
            or base.parallel,
            timeouts,
        )

    def node(self, name: str, value: object, defaults: NodeDefaults) -> NodeConfig:
        at = ("nodes", name)
        table = self.read.table(at, value, NODE_KEYS)
        for required in ("ae_title", "host", "port"):
            if required not in table:
                raise self.read.error(
                    at, None, f"missing {required} (the node needs ae_title, host and port)"
                )
        peer = Peer(
            self.read.checked(
                (*at, "ae_title"),
                table["ae_title"],
                ae_title,
                "the node's AE title: 1 to 16 characters",
            ),
            self.read.checked((*at, "host"), table["host"], host, "a host name or IP address"),
            self.read.checked((*at, "port"), table["port"], port, "a TCP port 1-65535"),
        )
        own = self.defaults(at, table, defaults)
        return NodeConfig(
            name,
            peer,
            own.model,
            own.method,
            self.value(table, (*at, "destination"), ae_title, "an AE title: 1 to 16 characters"),
            own.listen_host,
            own.listen_port,
            own.parallel,
            own.timeouts,
            self.tls(at, table.get("tls")),
            calling_ae=self.value(
                table,
                (*at, "calling_ae"),
                ae_title,
                "our AE title for this node: 1 to 16 characters",
            ),
            move_from=self.value(
                table,
                (*at, "move_from"),
                move_from,
                'addresses, networks or host names the PACS sends from, e.g. "10.1.2.3"',
            )
            or (),
            find_cap=self.value(
                table, (*at, "find_cap"), find_cap, "matches a C-FIND stops at: 1 to 10000000"
            ),
        )

    def tls(self, at: KeyPath, value: object) -> TlsSettings | None:
        if value is None or value is False:
            return None
        if value is True:
            return TlsSettings()
        path = (*at, "tls")
        if not isinstance(value, dict):
            raise self.read.error(path, value, "expected true, false or a table")
        table = self.read.table(path, value, TLS_KEYS)
        files = {
            key: self.value(table, (*path, key), _file(self.base), "a file path")
            for key in ("ca", "cert", "key")
        }
        if (files["cert"] is None) != (files["key"] is None):
            raise self.read.error(path, None, "cert and key go together: give both or neither")
        verify = self.value(table, (*path, "verify"), _boolean, "true or false")
        return TlsSettings(
            files["ca"],
            files["cert"],
            files["key"],
            True if verify is None else verify,
            self.value(table, (*path, "server_name"), host, "a host name or IP address"),
        )

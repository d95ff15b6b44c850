"""``qrclient nodes list | show | add | remove``: the named nodes of the configuration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, fail
from qrclient.cli.tls_options import TlsOptionError, tls_from_options
from qrclient.config import Config, ConfigError, NodeConfig, config_path, load_config
from qrclient.config.edit import add_node, check_node_name, remove_node
from qrclient.config.model import MAX_PARALLEL, address
from qrclient.net.peer import NodeError, check_ae_title, parse_listen, parse_node
from qrclient.ops.query import QueryError, parse_model
from qrclient.present.printable import printable

TIMEOUTS = ("connect", "association", "dimse", "network")


def run(args: argparse.Namespace) -> int:
    try:
        if args.nodes_command == "add":
            return _add(args)
        if args.nodes_command == "remove":
            return _remove(args)
        config = load_config(args.config)
        if args.nodes_command == "list":
            return _list(config, args.format, quiet=args.quiet)
        return _show(config, config.resolve(args.name), args.format)
    except (ConfigError, NodeError, QueryError, UsageError) as exc:
        fail(str(exc))
        return exit_codes.USAGE


def _list(config: Config, kind: str, *, quiet: bool = False) -> int:
    nodes = [config.nodes[name] for name in sorted(config.nodes)]
    if kind == "json":
        print(json.dumps([_as_json(config, node) for node in nodes], indent=2))
        return exit_codes.OK
    if not nodes:
        if quiet:
            return exit_codes.OK
        sys.stderr.write(
            f"qrclient: no named nodes in {config.path}; add one with: "
            "qrclient nodes add NAME AET@host:port\n"
        )
        return exit_codes.OK
    rows = [
        (
            "NAME",
            "NODE",
            "CALLING-AE",
            "MODEL",
            "METHOD",
            "DESTINATION",
            "LISTEN",
            "PARALLEL",
            "TLS",
        )
    ]
    for node in nodes:
        rows.append(
            (
                node.name,
                address(node.peer),
                config.calling_ae(node),
                node.model.value,
                node.method.value,
                node.destination or "-",
                node.listen,
                str(node.parallel),
                "on" if node.tls else "off",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return exit_codes.OK


def _show(config: Config, node: NodeConfig, kind: str) -> int:
    if kind == "json":
        print(json.dumps(_as_json(config, node), indent=2))
        return exit_codes.OK
    timeouts = ", ".join(f"{name} {getattr(node.timeouts, name):g} s" for name in TIMEOUTS)
    lines = [
        ("name", node.name if node.configured else "(not configured: AET@host:port)"),
        ("node", address(node.peer)),
        ("model", node.model.value),
        ("method", node.method.value),
        (
            "destination",
            node.destination or f"{config.calling_ae(node)} (ours: our storage listener)",
        ),
        ("listen", node.listen),
        ("parallel", str(node.parallel)),
        ("timeouts", timeouts),
        ("tls", _describe_tls(_tls(node))),
        ("calling AE", config.calling_ae(node)),
        ("file", str(config.path)),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label.ljust(width)}  {printable(value)}")  # paths from the file
    return exit_codes.OK


def _tls(node: NodeConfig) -> dict[str, Any] | None:
    if node.tls is None:
        return None
    return {
        "ca": node.tls.ca_file,
        "cert": node.tls.cert_file,
        "key": node.tls.key_file,
        "verify": node.tls.verify,
        "server_name": node.tls.server_name,
    }


def _describe_tls(tls: dict[str, Any] | None) -> str:
    if tls is None:
        return "off"
    parts = [f"{key} {value}" for key, value in tls.items() if value not in (None, True)]
    return "on" + (f" ({', '.join(parts)})" if parts else "")


def _as_json(config: Config, node: NodeConfig) -> dict[str, Any]:
    return {
        "name": node.name,
        "configured": node.configured,
        "node": address(node.peer),
        "ae_title": node.peer.ae_title,
        "host": node.peer.host,
        "port": node.peer.port,
        "model": node.model.value,
        "method": node.method.value,
        "destination": node.destination or config.calling_ae(node),
        "calling_ae": config.calling_ae(node),
        "listen": node.listen,
        "parallel": node.parallel,
        "timeouts": {name: getattr(node.timeouts, name) for name in TIMEOUTS},
        "tls": _tls(node),
    }


def _add(args: argparse.Namespace) -> int:
    """Checks every value first (one line, exit 2, nothing written), then edits the file."""
    name = check_node_name(args.name)
    peer = parse_node(args.address)
    table: dict[str, Any] = {"ae_title": peer.ae_title, "host": peer.host, "port": peer.port}
    if args.model is not None:
        table["model"] = parse_model(args.model).value
    if args.method is not None:
        table["method"] = args.method
    if args.dest is not None:
        table["destination"] = check_ae_title(args.dest, "--dest")
    if args.calling_aet is not None:
        table["calling_ae"] = check_ae_title(args.calling_aet, "--calling-aet")
    if args.listen is not None:
        parse_listen(args.listen)
        table["listen"] = args.listen
    if args.parallel is not None:
        if not 1 <= args.parallel <= MAX_PARALLEL:
            raise UsageError(f"--parallel {args.parallel}: expected 1 to {MAX_PARALLEL}")
        table["parallel"] = args.parallel
    timeouts = {}
    for what in TIMEOUTS:
        value = getattr(args, f"{what}_timeout")
        if value is not None:
            if not 0 < value <= 86400:
                raise UsageError(f"--{what}-timeout {value:g}: expected 0 < seconds <= 86400")
            timeouts[what] = value
    if timeouts:
        table["timeouts"] = timeouts
    tls = _tls_table(args)
    if tls is not None:
        table["tls"] = tls
    file = _file(args)
    existed = file.exists() and name in load_config(file).nodes
    add_node(file, name, table, replace=args.replace)
    if not args.quiet:
        print(f"{'replaced' if existed else 'added'} node {name} ({address(peer)}) in {file}")
    return exit_codes.OK


def _tls_table(args: argparse.Namespace) -> dict[str, Any] | bool | None:
    """The --tls* options as the node's ``tls`` setting; files are checked (PEM) first."""
    try:
        tls = tls_from_options(args, None)
    except TlsOptionError as exc:
        raise UsageError(str(exc)) from None
    if tls is None:
        return None
    table: dict[str, Any] = {
        # Absolute: in the file, relative paths are relative to the file's folder.
        key: str(Path(path).resolve())
        for key, path in (("ca", tls.ca_file), ("cert", tls.cert_file), ("key", tls.key_file))
        if path is not None
    }
    if not tls.verify:
        table["verify"] = False
    if tls.server_name:
        table["server_name"] = tls.server_name
    return table or True


def _remove(args: argparse.Namespace) -> int:
    file = _file(args)
    remove_node(file, args.name)
    if not args.quiet:
        print(f"removed node {args.name} from {file}")
    return exit_codes.OK


def _file(args: argparse.Namespace) -> Path:
    return config_path(args.config)[0]

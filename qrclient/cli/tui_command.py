"""``qrclient tui [NODE]``: check the options, then hand over to the terminal UI."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "node", metavar="NODE", nargs="?", help="the peer: AET@host:port or a configured name"
    )
    parser.add_argument("--aet", help="our calling AE title (default: configured, else QRCLIENT)")
    parser.add_argument("-o", "--out", metavar="DIR", help="the local store (default: configured)")
    parser.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="where our storage listener accepts C-MOVE instances (default: configured, 11113)",
    )
    parser.add_argument("--config", metavar="FILE", help="the configuration file with named nodes")


@dataclass(frozen=True, slots=True)
class Options:
    node: str | None = None
    aet: str | None = None
    out: str | None = None
    listen: str | None = None
    config: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        config = args.config if args.config is not None else args.global_config
        return cls(args.node, args.aet, args.out, args.listen, config)


def run(options: Options, trace: object = None) -> int:
    from qrclient.cli import exit_codes
    from qrclient.cli.common import fail
    from qrclient.net.peer import NodeError, check_ae_title, parse_listen
    from qrclient.ops.query import QueryError
    from qrclient.tui.nodes import NodeBook

    try:
        calling = (
            check_ae_title(options.aet, "calling AE title (--aet)")
            if options.aet is not None
            else None
        )
        listen = parse_listen(options.listen) if options.listen is not None else None
        nodes = NodeBook.load(options.config, calling_ae=calling, listen=listen)
        if options.node:
            nodes.resolve(options.node)
    except (NodeError, QueryError, ValueError) as exc:  # ConfigError is a ValueError
        fail(str(exc))
        return exit_codes.USAGE
    from qrclient import tui

    return tui.run(options.node, store=options.out, nodes=nodes)

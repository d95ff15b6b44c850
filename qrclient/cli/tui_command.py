"""``qrclient tui [NODE]``: check the options, then hand over to the terminal UI."""

from __future__ import annotations

import argparse

from qrclient.cli import exit_codes
from qrclient.cli.common import fail
from qrclient.net.peer import NodeError, check_ae_title, parse_listen
from qrclient.ops.query import QueryError


def run(args: argparse.Namespace) -> int:
    from qrclient.tui.nodes import NodeBook

    try:
        calling = (
            check_ae_title(args.aet, "calling AE title (--aet)") if args.aet is not None else None
        )
        listen = parse_listen(args.listen) if args.listen is not None else None
        nodes = NodeBook.load(args.config, calling_ae=calling, listen=listen)
        if args.node:
            nodes.resolve(args.node)
    except (NodeError, QueryError, ValueError) as exc:  # ConfigError is a ValueError
        fail(str(exc))
        return exit_codes.USAGE
    from qrclient import tui

    return tui.run(args.node, store=args.out, nodes=nodes)

"""``qrclient find``: one C-FIND, matches written as they arrive, a summary on stderr."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qrclient.cli.arguments import add_connection_arguments
from qrclient.cli.options import ConnectionOptions

if TYPE_CHECKING:
    from qrclient.present.trace import Trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument(
        "-l",
        "--level",
        required=True,
        metavar="LEVEL",
        help="patient, study, series or image",
    )
    parser.add_argument("-m", "--model", metavar="MODEL", help="patient or study root (default)")
    add_key_arguments(parser)
    parser.add_argument(
        "--relational", action="store_true", help="propose relational queries (extended neg.)"
    )
    parser.add_argument(
        "--fuzzy", action="store_true", help="propose fuzzy semantic matching of person names"
    )
    parser.add_argument(
        "--datetime-matching", action="store_true", help="propose combined date-time matching"
    )


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """-k, --no-default-keys and -f (find and worklist)."""
    parser.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        dest="keys",
        metavar="KEY[=VALUE]",
        help="a matching or return key; repeat for more",
    )
    parser.add_argument(
        "--no-default-keys",
        action="store_true",
        help="return only the keys given with -k, not the defaults",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=("table", "json", "ndjson", "csv"),
        default=None,
        help="output format (default: table on a terminal, ndjson otherwise)",
    )


@dataclass(frozen=True, slots=True)
class Options:
    connection: ConnectionOptions
    level: str
    model: str | None = None  # None: the node's
    keys: tuple[str, ...] = ()
    no_default_keys: bool = False
    format: str | None = None  # None: table on a terminal, else ndjson
    relational: bool = False
    fuzzy: bool = False
    datetime_matching: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        return cls(
            ConnectionOptions.from_namespace(args),
            args.level,
            args.model,
            tuple(args.keys),
            args.no_default_keys,
            args.format,
            args.relational,
            args.fuzzy,
            args.datetime_matching,
        )


def run(options: Options, trace: Trace | None = None) -> int:
    from qrclient.cli.common import run_command

    return run_command(lambda: _prepare(options, trace))


def _prepare(options: Options, trace: Trace | None) -> Callable[[], Awaitable[int]]:
    import time

    from qrclient.cli import exit_codes
    from qrclient.cli.common import connection, stderr_lines
    from qrclient.client import Client
    from qrclient.net import QueryOptions
    from qrclient.ops.find import FindState
    from qrclient.ops.query import parse_model
    from qrclient.present.output import make_writer

    model = parse_model(options.model) if options.model is not None else None
    client = Client(connection(options.connection, trace, model=model))
    query = client.query(
        options.level, options.keys, default_keys=not options.no_default_keys, lenient=True
    )
    asked = QueryOptions(options.relational, options.datetime_matching, options.fuzzy)
    writer = make_writer(options.format, query.return_keywords)

    say = stderr_lines(quiet=options.connection.quiet)

    async def job() -> int:
        started = time.perf_counter()
        for note in query.notes:
            say(f"note: {note}")
        for warning in query.warnings:
            say(f"warning: {warning}")
        matches = None
        try:
            async with client, client.find(query, query_options=asked) as matches:
                if asked.wanted:
                    say(f"extended negotiation: asked {asked}, peer granted {matches.granted}")
                async for dataset in matches:
                    writer.add(dataset)
        finally:
            writer.close()
        outcome = matches.outcome
        for warning in outcome.warnings[len(query.warnings) :]:
            say(f"warning: {warning}")
        elapsed = time.perf_counter() - started
        status = f", status {outcome.status}" if outcome.status else ""
        dropped = [
            f"{outcome.duplicates} duplicates merged" if outcome.duplicates else "",
            f"{outcome.unmatched} not matching the query left out" if outcome.unmatched else "",
        ]
        told = "; ".join(d for d in dropped if d)
        told = f" ({outcome.count} responses: {told})" if told else ""
        say(f"{outcome.distinct} matches, {outcome.state.value}{status}, {elapsed:.2f} s{told}")
        if outcome.state is FindState.TRUNCATED:
            return exit_codes.PARTIAL
        return exit_codes.OK

    return job

"""``qrclient worklist``: a Modality Worklist C-FIND, written as ``find`` writes matches."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qrclient.cli.arguments import add_connection_arguments
from qrclient.cli.find_command import add_key_arguments
from qrclient.cli.options import ConnectionOptions

if TYPE_CHECKING:
    from qrclient.present.trace import Trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument(
        "--date",
        metavar="DATE",
        help="scheduled start date or range: today, 2024-03-14, 20240314, 2024-03, "
        "2024-03-01-2024-03-31",
    )
    parser.add_argument("--modality", metavar="MODALITY", help="e.g. CT, MR, US")
    parser.add_argument(
        "--station", metavar="AET", help="the scheduled station's AE title (a modality's own)"
    )
    add_key_arguments(parser)


@dataclass(frozen=True, slots=True)
class Options:
    connection: ConnectionOptions
    date: str | None = None
    modality: str | None = None
    station: str | None = None
    keys: tuple[str, ...] = ()
    no_default_keys: bool = False
    format: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        return cls(
            ConnectionOptions.from_namespace(args),
            args.date,
            args.modality,
            args.station,
            tuple(args.keys),
            args.no_default_keys,
            args.format,
        )


def run(options: Options, trace: Trace | None = None) -> int:
    from qrclient.cli.common import run_command

    return run_command(lambda: _prepare(options, trace))


def _prepare(options: Options, trace: Trace | None) -> Callable[[], Awaitable[int]]:
    import time

    from qrclient.cli import exit_codes
    from qrclient.cli.common import connection, stderr_lines
    from qrclient.client import Client
    from qrclient.ops.find import FindState
    from qrclient.ops.worklist import build_worklist_query
    from qrclient.present.output import make_writer

    client = Client(connection(options.connection, trace))
    query = build_worklist_query(
        options.keys,
        date=options.date,
        modality=options.modality,
        station=options.station,
        default_keys=not options.no_default_keys,
    )
    writer = make_writer(options.format, query.return_keywords)
    say = stderr_lines(quiet=options.connection.quiet)

    async def job() -> int:
        started = time.perf_counter()
        for note in query.notes:
            say(f"note: {note}")
        matches = None
        try:
            async with client, client.find(query, distinct=False) as matches:
                async for dataset in matches:
                    writer.add(dataset)
        finally:
            writer.close()
        outcome = matches.outcome
        for warning in outcome.warnings:
            say(f"warning: {warning}")
        status = f", status {outcome.status}" if outcome.status else ""
        elapsed = time.perf_counter() - started
        steps = "scheduled procedure step" + ("" if outcome.count == 1 else "s")
        say(f"{outcome.count} {steps}, {outcome.state.value}{status}, {elapsed:.2f} s")
        return exit_codes.PARTIAL if outcome.state is FindState.TRUNCATED else exit_codes.OK

    return job

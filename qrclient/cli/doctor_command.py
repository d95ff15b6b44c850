"""``qrclient doctor``: the report of qrclient.jobs.doctor as text or JSON, and its exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qrclient.cli.arguments import add_connection_arguments
from qrclient.cli.options import ConnectionOptions

if TYPE_CHECKING:
    from qrclient.jobs.doctor.report import Report
    from qrclient.present.trace import Trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="where our storage listener accepts the moved instance (default 11113)",
    )
    parser.add_argument(
        "--move-wait",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long to wait for the instance got or moved (default 20)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output")


@dataclass(frozen=True, slots=True)
class Options:
    connection: ConnectionOptions
    listen: str | None = None  # None: the node's
    move_wait: float = 20.0
    format: str = "text"

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        return cls(ConnectionOptions.from_namespace(args), args.listen, args.move_wait, args.format)


def run(options: Options, trace: Trace | None = None) -> int:
    from qrclient.cli.common import run_command

    return run_command(lambda: _prepare(options, trace))


def _prepare(options: Options, trace: Trace | None) -> Callable[[], Awaitable[int]]:
    from qrclient.cli.common import UsageError, connection
    from qrclient.client import Client
    from qrclient.net.peer import parse_listen

    listen = parse_listen(options.listen) if options.listen else None
    client = Client(connection(options.connection, trace, listen=listen))
    if not 0 < options.move_wait <= 3600:
        raise UsageError(f"--move-wait {options.move_wait:g}: expected 0 < seconds <= 3600")

    from qrclient.cli import exit_codes
    from qrclient.jobs.doctor.report import Verdict

    codes = {
        Verdict.HEALTHY: exit_codes.OK,
        Verdict.UNREACHABLE: exit_codes.NETWORK,
        Verdict.PROBLEMS: exit_codes.FAILURE_STATUS,
    }

    async def job() -> int:
        async with client:
            report = await client.doctor(move_wait=options.move_wait)
        if options.format == "json":
            json.dump(report.as_dict(), sys.stdout, indent=2)
            print()
        else:
            _print_text(report, quiet=options.connection.quiet)
        return codes[report.verdict]

    return job


def _print_text(report: Report, *, quiet: bool = False) -> None:
    """The report; ``quiet``: only what failed or warned and its fixes (nothing if healthy)."""
    from qrclient.present.doctor import report_lines

    for line in report_lines(report, quiet=quiet):
        print(line)

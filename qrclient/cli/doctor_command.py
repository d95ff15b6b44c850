"""``qrclient doctor``: the report of qrclient.jobs.doctor as text or JSON, and its exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, node_and_settings, run_command
from qrclient.jobs.doctor import DoctorOptions, Report, Verdict, diagnose_peer
from qrclient.net.peer import parse_listen
from qrclient.present.doctor import report_lines

_EXIT_CODES = {
    Verdict.HEALTHY: exit_codes.OK,
    Verdict.UNREACHABLE: exit_codes.NETWORK,
    Verdict.PROBLEMS: exit_codes.FAILURE_STATUS,
}


def run(args: argparse.Namespace) -> int:
    return run_command(lambda: _prepare(args))


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    _, node, settings = node_and_settings(args)
    host, port = parse_listen(args.listen) if args.listen else (node.listen_host, node.listen_port)
    if not 0 < args.move_wait <= 3600:
        raise UsageError(f"--move-wait {args.move_wait:g}: expected 0 < seconds <= 3600")
    options = DoctorOptions(host, port, args.move_wait)

    async def job() -> int:
        report = await diagnose_peer(node.peer, settings, options)
        if args.format == "json":
            json.dump(report.as_dict(), sys.stdout, indent=2)
            print()
        else:
            _print_text(report, quiet=args.quiet)
        return _EXIT_CODES[report.verdict]

    return job


def _print_text(report: Report, *, quiet: bool = False) -> None:
    """The report; ``quiet``: only what failed or warned and its fixes (nothing if healthy)."""
    for line in report_lines(report, quiet=quiet):
        print(line)

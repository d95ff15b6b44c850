"""``qrclient doctor``: the report of qrclient.jobs.doctor as text or JSON, and its exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, node_and_settings, run_command
from qrclient.jobs.doctor import Check, DoctorOptions, Report, State, Verdict, diagnose_peer
from qrclient.net.peer import parse_listen
from qrclient.present.printable import printable

_MARKS = {State.OK: "ok  ", State.WARNING: "WARN", State.FAILED: "FAIL", State.SKIPPED: "skip"}
_EXIT_CODES = {
    Verdict.HEALTHY: exit_codes.OK,
    Verdict.UNREACHABLE: exit_codes.NETWORK,
    Verdict.PROBLEMS: exit_codes.FAILURE_STATUS,
}
_VERDICTS = {
    Verdict.HEALTHY: "all is well",
    Verdict.UNREACHABLE: "the PACS cannot be reached or refuses the association",
    Verdict.PROBLEMS: "the PACS answers, but some checks failed",
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

    def say(line: str) -> None:
        print(printable(line))  # details quote the peer (its version name, comments)

    if quiet and report.verdict is Verdict.HEALTHY:
        return
    if not quiet:
        say(f"qrclient doctor: {report.peer}, our AE title {report.calling_ae}")
    width = max(len(check.name) for check in report.checks)
    checks = report.checks
    for index, check in enumerate(checks):
        if quiet and check.state not in (State.FAILED, State.WARNING):
            continue
        rest = checks[index:]
        if check.state is State.SKIPPED and all(c.state is State.SKIPPED for c in rest):
            # One line for the tail an early failure made pointless.
            reasons = sorted({c.detail for c in rest})
            say(f"  {_MARKS[check.state]}  {len(rest)} further checks: {'; '.join(reasons)}")
            break
        say(f"  {_MARKS[check.state]}  {check.name:<{width}}  {check.detail}{_time(check)}")
    fixes = [c for c in report.checks if c.fix and c.state in (State.FAILED, State.WARNING)]
    say(f"verdict: {_VERDICTS[report.verdict]}")
    if fixes:
        say("to fix:")
        for check in fixes:
            say(f"  - {check.name}: {check.fix}")


def _time(check: Check) -> str:
    if check.seconds is None or check.state is State.SKIPPED:
        return ""
    if check.seconds < 1:
        return f" ({check.seconds * 1000:.1f} ms)"
    return f" ({check.seconds:.2f} s)"

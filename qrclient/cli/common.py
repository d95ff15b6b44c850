"""What every network command shares: settings from options, error reporting, logging."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Mapping

import anyio

from qrclient.cli import exit_codes
from qrclient.net import DicomNetworkError, FailureStatus, Peer, Settings, Timeouts
from qrclient.ops.node import NodeError, check_ae_title, parse_node
from qrclient.ops.query import QueryError


class UsageError(ValueError):
    """Bad option value found after argparse (one line, exit code 2)."""


def peer_and_settings(args: argparse.Namespace) -> tuple[Peer, Settings]:
    """Validate the connection options; raises NodeError / UsageError on bad input."""
    peer = parse_node(args.node)
    calling = check_ae_title(args.aet, "calling AE title (--aet)")
    if not 4096 <= args.max_pdu <= 0x7FFFFFFF:
        raise UsageError(f"--max-pdu {args.max_pdu}: expected 4096 to 2147483647 bytes")
    timeouts = {}
    for name in ("connect", "association", "dimse", "network"):
        value = getattr(args, f"{name}_timeout")
        if not 0 < value <= 86400:
            raise UsageError(f"--{name}-timeout {value:g}: expected 0 < seconds <= 86400")
        timeouts[name] = value
    observer = log_event if args.verbose else None
    return peer, Settings(calling, args.max_pdu, Timeouts(**timeouts), observer)


def log_event(event: str, details: Mapping[str, object]) -> None:
    """--verbose: one line per association or DIMSE event on stderr."""
    if event in ("associate-rq", "associate-ac"):
        contexts = details.get("contexts", [])
        rest = {k: v for k, v in details.items() if k != "contexts"}
        sys.stderr.write(f"[{event}] {rest}\n")
        for context in contexts if isinstance(contexts, list) else []:
            sys.stderr.write(f"    {context}\n")
    else:
        sys.stderr.write(f"[{event}] {dict(details)}\n")


def fail(message: str) -> None:
    sys.stderr.write(f"qrclient: error: {message}\n")


def report(error: DicomNetworkError) -> int:
    """Print a network failure as what happened plus what to fix; return its exit code."""
    fail(error.message)
    if error.hint:
        sys.stderr.write(f"qrclient: hint: {error.hint}\n")
    if isinstance(error, FailureStatus):
        return exit_codes.FAILURE_STATUS
    return exit_codes.NETWORK


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-member groups, else the group itself."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return inner


def run_command(prepare: Callable[[], Callable[[], Awaitable[int]]]) -> int:
    """Validate input (``prepare``), then run the async part, mapping failures to codes."""
    try:
        job = prepare()
    except (NodeError, QueryError, UsageError) as exc:
        fail(str(exc))
        return exit_codes.USAGE
    try:
        try:
            return anyio.run(job)
        except BaseExceptionGroup as group:
            # Task groups wrap what their tasks raise; one error is reported as itself.
            raise _sole(group) from None
    except (NodeError, QueryError, UsageError) as exc:  # found once running (e.g. --out)
        fail(str(exc))
        return exit_codes.USAGE
    except DicomNetworkError as exc:
        return report(exc)

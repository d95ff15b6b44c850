"""What every network command shares: settings from options, error reporting, logging."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from qrclient.cli import exit_codes
from qrclient.cli.tls_options import TlsOptionError, tls_from_options, warn_if_unverified
from qrclient.client import OptionError
from qrclient.config.errors import ConfigError
from qrclient.net import DicomNetworkError, FailureStatus, TlsSettings
from qrclient.net.events import Event, Observer
from qrclient.net.peer import NodeError, check_ae_title
from qrclient.ops.query import QueryError
from qrclient.present.events import describe_event
from qrclient.present.failures import main_error
from qrclient.present.printable import printable

if TYPE_CHECKING:
    from qrclient.cli.options import ConnectionOptions
    from qrclient.client import Connection
    from qrclient.present.trace import Trace


class UsageError(ValueError):
    """Bad option value found after argparse (one line, exit code 2)."""


def connection(
    options: ConnectionOptions, trace: Trace | None = None, **overrides: Any
) -> Connection:
    """NODE (a configured name or AET@host:port) resolved by the client with the options.

    Each value comes from its command-line option if given, else the node's setting,
    else the configuration's, else the built-in default; ``overrides`` are the
    command's own (method, destination, listen, store...). ``trace``: --trace's writer.
    Raises ConfigError / NodeError / UsageError on bad input.
    """
    from qrclient.client import resolve
    from qrclient.config import load_config

    config = load_config(options.config)
    calling = (
        None if options.aet is None else check_ae_title(options.aet, "calling AE title (--aet)")
    )
    if options.max_pdu is not None and not 4096 <= options.max_pdu <= 0x7FFFFFFF:
        raise UsageError(f"--max-pdu {options.max_pdu}: expected 4096 to 2147483647 bytes")
    for name, value in options.timeouts().items():
        if value is not None and not 0 < value <= 86400:
            raise UsageError(f"--{name}-timeout {value:g}: expected 0 < seconds <= 86400")
    observer: Observer | None = log_event if options.verbose else None
    if trace is not None:
        trace.also = observer
        observer = trace

    def tls(configured: TlsSettings | None) -> TlsSettings | None:
        try:
            return tls_from_options(options.tls, configured)
        except TlsOptionError as exc:
            raise UsageError(str(exc)) from None

    resolved = resolve(
        options.node,
        config,
        calling_ae=calling,
        max_pdu=options.max_pdu,
        timeouts=options.timeouts(),
        tls=tls,
        observer=observer,
        **overrides,
    )
    warn_if_unverified(resolved.settings.tls)
    return resolved


def max_instance(given: str | None) -> int | None:
    """--max-instance (get, move, retrieve) in bytes; None: not given."""
    from qrclient.config.parse import MAX_INSTANCE_RANGE, size_in_bytes

    if given is None:
        return None
    try:
        return size_in_bytes(given)
    except ValueError:
        raise UsageError(f"--max-instance {given}: expected {MAX_INSTANCE_RANGE}") from None


def log_event(event: Event) -> None:
    """--verbose: each association or DIMSE event on stderr, as the UI's log pane says it
    (a headline, then indented details such as the proposed and accepted contexts)."""
    sys.stderr.writelines(f"{line}\n" for line in describe_event(event))


def stderr_lines(*, quiet: bool) -> Callable[[str], None]:
    """Writes ``qrclient: TEXT`` lines (summaries, notes, warnings) unless ``quiet``; what
    they quote from the peer is shown inert."""

    def say(text: str) -> None:
        if not quiet:
            sys.stderr.write(f"qrclient: {printable(text)}\n")

    return say


def fail(message: str, hint: str = "") -> None:
    """One error line (and its hint): what the peer wrote in them is shown inert."""
    sys.stderr.write(f"qrclient: error: {printable(message)}\n")
    if hint:
        sys.stderr.write(f"qrclient: hint: {printable(hint)}\n")


def report(error: DicomNetworkError) -> int:
    """Print a network failure as what happened plus what to fix; return its exit code."""
    fail(error.message, error.hint)
    if isinstance(error, FailureStatus):
        return exit_codes.FAILURE_STATUS
    return exit_codes.NETWORK


def run_command(prepare: Callable[[], Callable[[], Awaitable[int]]]) -> int:
    """Validate input (``prepare``), then run the async part, mapping failures to codes."""
    try:
        job = prepare()
    except (ConfigError, NodeError, QueryError, UsageError, OptionError) as exc:
        fail(str(exc))
        return exit_codes.USAGE
    try:
        try:
            return anyio.run(job)
        except BaseExceptionGroup as group:
            # Task groups wrap what their tasks raise: report the one that matters.
            raise main_error(group) from None
    # Found once running (e.g. --out).
    except (ConfigError, NodeError, QueryError, UsageError, OptionError) as exc:
        fail(str(exc))
        return exit_codes.USAGE
    except DicomNetworkError as exc:
        return report(exc)

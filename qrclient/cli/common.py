"""What every network command shares: settings from options, error reporting, logging."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from qrclient.cli import exit_codes
from qrclient.cli.tls_options import TlsOptionError, tls_from_options, warn_if_unverified
from qrclient.config.errors import ConfigError
from qrclient.net import DicomNetworkError, FailureStatus, Peer, Settings, Timeouts, TlsSettings
from qrclient.net.events import Event, Observer
from qrclient.net.peer import NodeError, check_ae_title
from qrclient.ops.query import QueryError
from qrclient.present.events import describe_event
from qrclient.present.failures import main_error
from qrclient.present.printable import printable
from qrclient.vocabulary import Method

if TYPE_CHECKING:
    from qrclient.config import Config, NodeConfig


class UsageError(ValueError):
    """Bad option value found after argparse (one line, exit code 2)."""


def peer_and_settings(args: argparse.Namespace) -> tuple[Peer, Settings]:
    """Validate the connection options; raises NodeError / UsageError on bad input."""
    _, node, settings = node_and_settings(args)
    return node.peer, settings


def node_and_settings(args: argparse.Namespace) -> tuple[Config, NodeConfig, Settings]:
    """NODE (a configured name or AET@host:port) and the association settings.

    Each value comes from its command-line option if given, else the node's setting,
    else the configuration's, else the built-in default (options default to None).
    Raises ConfigError / NodeError / UsageError on bad input.
    """
    from qrclient.config import load_config

    config = load_config(getattr(args, "config", None))
    node = config.resolve(args.node)
    given = None if args.aet is None else check_ae_title(args.aet, "calling AE title (--aet)")
    calling = config.calling_ae(node, given)
    max_pdu = config.max_pdu if args.max_pdu is None else args.max_pdu
    if not 4096 <= max_pdu <= 0x7FFFFFFF:
        raise UsageError(f"--max-pdu {max_pdu}: expected 4096 to 2147483647 bytes")
    max_instance = _max_instance(getattr(args, "max_instance", None), config.max_instance)
    timeouts = {}
    for name in ("connect", "association", "dimse", "network"):
        value = getattr(args, f"{name}_timeout")
        if value is not None and not 0 < value <= 86400:
            raise UsageError(f"--{name}-timeout {value:g}: expected 0 < seconds <= 86400")
        timeouts[name] = getattr(node.timeouts, name) if value is None else value
    node = replace(node, timeouts=Timeouts(**timeouts))
    if getattr(args, "model", "") is None:  # find, get, move, retrieve without -m
        args.model = node.model.value
    observer: Observer | None = log_event if args.verbose else None
    trace = getattr(args, "trace_writer", None)  # --trace (see main._open_trace)
    if trace is not None:
        trace.also = observer
        observer = trace
    try:
        node = replace(node, tls=tls_from_options(args, node.tls))
    except TlsOptionError as exc:
        raise UsageError(str(exc)) from None
    if node.tls is not None and _listens(args, node):
        _check_listener_tls(node.tls)
    warn_if_unverified(node.tls)
    return config, node, node.settings(calling, max_pdu, observer, max_instance)


def _max_instance(given: str | None, configured: int) -> int:
    """--max-instance (get, move, retrieve), else the configuration's."""
    from qrclient.config.parse import MAX_INSTANCE_RANGE, size_in_bytes

    if given is None:
        return configured
    try:
        return size_in_bytes(given)
    except ValueError:
        raise UsageError(f"--max-instance {given}: expected {MAX_INSTANCE_RANGE}") from None


def _listens(args: argparse.Namespace, node: NodeConfig) -> bool:
    """Whether the command surely runs our storage listener: C-MOVE to our own AE title
    by ``move``, or by ``retrieve`` on a node set to move. (``retrieve`` on auto uses
    C-GET where it can; a fallback to C-MOVE then reports the listener's refusals, and
    ``doctor`` reports its move check as failed.)"""
    command = getattr(args, "command", None)
    moves = command == "move" or (command == "retrieve" and node.method is Method.MOVE)
    return moves and not (getattr(args, "dest", None) or node.destination)


def _check_listener_tls(tls: TlsSettings) -> None:
    """Our storage listener over TLS presents our certificate and trusts only the CA
    given for the PACS's certificate (a system CA would let anyone in)."""
    if tls.cert_file is None:
        raise UsageError(
            "C-MOVE to us over TLS: our storage listener needs a certificate: give "
            "--tls-cert FILE (and --tls-key FILE), or --dest another AE"
        )
    if tls.verify and tls.ca_file is None:
        raise UsageError(
            "C-MOVE to us over TLS: our storage listener trusts only the CA that signed the "
            "PACS's certificate, never the system's: give --tls-ca FILE (or the node's "
            "tls.ca), or --dest another AE"
        )


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
    except (ConfigError, NodeError, QueryError, UsageError) as exc:
        fail(str(exc))
        return exit_codes.USAGE
    try:
        try:
            return anyio.run(job)
        except BaseExceptionGroup as group:
            # Task groups wrap what their tasks raise: report the one that matters.
            raise main_error(group) from None
    # Found once running (e.g. --out).
    except (ConfigError, NodeError, QueryError, UsageError) as exc:
        fail(str(exc))
        return exit_codes.USAGE
    except DicomNetworkError as exc:
        return report(exc)

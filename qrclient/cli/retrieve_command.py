"""``qrclient get | move | retrieve``: fetch studies, series or instances into the store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, node_and_settings, run_command
from qrclient.cli.progress_bar import ProgressBar
from qrclient.cli.store_command import report_store_error
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    RetrieveStore,
    run_with_listener,
)
from qrclient.net.peer import check_ae_title, check_sender, parse_listen
from qrclient.ops.query import LEVEL_ORDER, UNIQUE_KEY, QueryError, parse_level, parse_model
from qrclient.present.failures import main_error
from qrclient.present.printable import printable
from qrclient.store import Store, StoreError
from qrclient.store.location import default_store
from qrclient.vocabulary import Level, Method

if TYPE_CHECKING:
    from qrclient.deid.session import PseudonymizeOptions
    from qrclient.deid.sink import PseudonymizingStore

_UNIQUE_KEYS = {
    Level.PATIENT: {"PatientID"},
    Level.STUDY: {"PatientID", "StudyInstanceUID", "AccessionNumber"},
    Level.SERIES: {"PatientID", "StudyInstanceUID", "SeriesInstanceUID"},
    Level.IMAGE: {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"},
}


def run(args: argparse.Namespace) -> int:
    if getattr(args, "from_file", None):  # a list of studies: a durable job
        from qrclient.cli import cohort_command

        return cohort_command.run(args)
    for option in ("report", "no_split", "no_verify", "max_associations", "rate", "window"):
        if getattr(args, option, None):
            name = "--" + option.replace("_", "-")
            sys.stderr.write(f"qrclient: error: {name} goes with --from, which was not given\n")
            return exit_codes.USAGE
    started: list[tuple[RetrieveJob, Path]] = []
    try:
        return run_command(lambda: _prepare(args, started))
    except KeyboardInterrupt:
        # Interrupted after files arrived: say what is here, then exit 130 as shells
        # expect of Ctrl-C (5 stays for what the PACS left partial).
        if not started or not started[0][0].outcome.received:
            raise
        retrieve, out = started[0]
        sys.stderr.write("qrclient: interrupted\n")
        _report(retrieve.outcome, out, args.format, quiet=args.quiet)
        return exit_codes.INTERRUPTED


def _request(args: argparse.Namespace) -> RetrieveRequest:
    level = parse_level(args.level)
    request = RetrieveRequest.parse(level, parse_model(args.model), args.keys)
    allowed = _UNIQUE_KEYS[level]
    for key in request.keys:
        if key.keyword not in allowed:
            below = next((lv for lv in LEVEL_ORDER if key.keyword == UNIQUE_KEY[lv]), None)
            suggestion = f"; did you mean -l {below.value.lower()}?" if below else ""
            raise QueryError(
                f"{key.name} cannot select a {level.value}-level retrieve: "
                f"expected {', '.join(sorted(allowed))}{suggestion}"
            )
        if not key.value or any(c in key.value for c in "*?"):
            raise QueryError(
                f"{key.name}={key.value or ''!r}: retrieve keys must be exact values "
                "(\\-separated lists allowed); use 'qrclient find' to look them up"
            )
    if not request.keys:
        raise QueryError(
            f"nothing to retrieve: give -k with one of {', '.join(sorted(allowed))} "
            "(find them with 'qrclient find')"
        )
    return request


def _prepare(
    args: argparse.Namespace, started: list[tuple[RetrieveJob, Path]]
) -> Callable[[], Awaitable[int]]:
    # Each setting: the option if given, else the node's, else the file's, else built in.
    config, node, settings = node_and_settings(args)
    peer = node.peer
    request = _request(args)
    method = node.method if args.command == "retrieve" else Method(args.command)
    parallel = node.parallel if args.parallel is None else args.parallel
    if not 1 <= parallel <= 16:
        raise UsageError(f"--parallel {parallel}: expected 1 to 16 associations")
    given_destination = getattr(args, "dest", None)
    destination = (
        check_ae_title(given_destination, "--dest")
        if given_destination
        else node.destination or settings.calling_ae
    )
    move_from = node.move_from
    if getattr(args, "move_from", None):
        move_from = tuple(check_sender(a, "--move-from") for a in args.move_from)
    listen = getattr(args, "listen", None)
    listen_host, listen_port = (
        parse_listen(listen) if listen else (node.listen_host, node.listen_port)
    )
    out = Path(args.out) if args.out else config.store or default_store()
    to_us = destination == settings.calling_ae
    pseudonymize = _pseudonymize_options(args, out, to_us=to_us)

    wait = 0.0 if args.wait is None else args.wait
    if not 0 <= wait <= 86400:
        raise UsageError(f"--wait {wait:g}: expected 0 to 86400 seconds")

    async def job() -> int:
        try:
            store = Store.open(out, overwrite=args.overwrite, wait=wait)
        except StoreError as exc:
            return report_store_error(exc)
        try:
            return await _into(store)
        except (StoreError, BaseExceptionGroup) as exc:
            # The index failed (damaged, disk full), or could not commit its last rows
            # on closing: say what arrived, then what failed.
            error = main_error(exc)
            if not isinstance(error, StoreError):
                raise
            if started:
                _report(started[0][0].outcome, out, args.format, quiet=args.quiet)
            return report_store_error(error)

    async def _into(store: Store) -> int:
        with store:
            pseudonymizing = _pseudonymizing(store, pseudonymize, to_us=to_us)
            try:
                outcome = await _retrieve(pseudonymizing or store)
            finally:
                if pseudonymizing is not None:
                    pseudonymizing.close()
        if pseudonymizing is not None:
            outcome.notes.append(_pseudonymized_note(pseudonymizing))
        _report(outcome, out, args.format, quiet=args.quiet)
        return _exit_code(outcome)

    async def _retrieve(sink: RetrieveStore) -> RetrieveOutcome:
        retrieve = RetrieveJob.into_store(
            peer,
            request,
            sink,
            settings,
            parallel=parallel,
            method=method,
            destination=destination,
            move_from=move_from,
            node=node.name,
        )
        started.append((retrieve, out))
        shown = sys.stderr.isatty() and args.format == "text" and not args.quiet
        bar = ProgressBar(enabled=shown)
        async with anyio.create_task_group() as group:
            group.start_soon(bar.follow, retrieve.progress)
            try:
                outcome = await run_with_listener(retrieve, listen_host, listen_port)
            finally:
                group.cancel_scope.cancel()
        return outcome

    return job


def _pseudonymize_options(
    args: argparse.Namespace, out: Path, *, to_us: bool
) -> PseudonymizeOptions | None:
    """--pseudonymize and its options, checked before anything is opened."""
    given = {
        "--linkage": args.linkage,
        "--date-shift": args.date_shift,
        "--keep-dates": args.keep_dates,
        "--pseudonym-key": args.pseudonym_key,
    }
    if not args.pseudonymize:
        for option, value in given.items():
            if value:
                raise UsageError(f"{option} goes with --pseudonymize, which was not given")
        return None
    from qrclient.deid.errors import DeidError
    from qrclient.deid.linkage import check_linkage_path
    from qrclient.deid.marker import MAX_DATE_SHIFT, Dates
    from qrclient.deid.session import PseudonymizeOptions

    if not to_us:
        raise UsageError(
            "--pseudonymize works on what comes to our store, not on a C-MOVE to another AE "
            "(--dest)"
        )
    dates = None
    if args.keep_dates:
        if args.date_shift is not None:
            raise UsageError("--keep-dates and --date-shift: give one of them")
        dates = Dates(0)
    elif args.date_shift is not None:
        days = args.date_shift.strip()
        if not days.isdigit() or not 1 <= int(days) <= MAX_DATE_SHIFT:
            raise UsageError(
                f"--date-shift {args.date_shift!r}: expected a number of days from 1 to "
                f"{MAX_DATE_SHIFT} (or --keep-dates)"
            )
        dates = Dates(int(days))
    try:
        linkage = check_linkage_path(Path(args.linkage), out) if args.linkage else None
    except DeidError as exc:
        raise UsageError(str(exc)) from None
    key = Path(args.pseudonym_key).expanduser() if args.pseudonym_key else None
    return PseudonymizeOptions(dates, key, linkage)


def _pseudonymizing(
    store: Store, options: PseudonymizeOptions | None, *, to_us: bool
) -> PseudonymizingStore | None:
    """With --pseudonymize, the store wrapped to pseudonymise what it receives; else
    None. A pseudonymised store takes no plain instances, nor a plain one pseudonymised
    instances (qrclient.deid.marker)."""
    from qrclient.deid.errors import DeidError

    try:
        if options is not None:
            from qrclient.deid.session import open_pseudonymizing

            return open_pseudonymizing(store, options)
        if to_us:
            from qrclient.deid.marker import refuse_plain

            refuse_plain(store.root)
    except DeidError as exc:
        raise UsageError(str(exc)) from None
    return None


def _pseudonymized_note(sink: PseudonymizingStore) -> str:
    what = f"pseudonymised on receive ({sink.pseudonymizer.dates.describe()})"
    if sink.linkage is None:
        return f"{what}; no linkage file kept (--linkage FILE keeps one)"
    return f"{what}; {sink.linkage.rows} rows added to the linkage file {sink.linkage.path}"


def _report(outcome: RetrieveOutcome, out: Path, kind: str, *, quiet: bool = False) -> None:
    """The summary (JSON, or a line), notes and errors; ``quiet``: JSON and errors only."""
    if kind == "json":
        json.dump(
            {
                "state": outcome.state.value,
                "planned": outcome.planned,
                "received": outcome.received,
                "already_here": outcome.skipped,
                "bytes": outcome.received_bytes,
                "seconds": round(outcome.seconds, 3),
                "destination": outcome.destination or None,
                "completed": outcome.completed,
                "failed": outcome.failed,
                "warning": outcome.warning,
                "refused_instances": outcome.refused_instances,
                "refused_connections": outcome.refused_connections,
                "refusals": outcome.refusals,
                "errors": outcome.errors,
                "notes": outcome.notes,
                "store": str(out),
            },
            sys.stdout,
        )
        print()
        return
    if not quiet:
        print(_summary(outcome, out))
        for note in outcome.notes:
            sys.stderr.write(f"qrclient: note: {printable(note)}\n")
        for refusal in outcome.refusals[:10]:
            sys.stderr.write(f"qrclient: warning: {printable(refusal)}\n")
    if outcome.state is RetrieveState.NOT_FOUND:
        sys.stderr.write(
            "qrclient: error: the peer has no instances matching these keys: check the "
            "UIDs (and --level / --model) with 'qrclient find'\n"
        )
    for error in outcome.errors[:10]:
        sys.stderr.write(f"qrclient: error: {printable(error)}\n")  # UIDs from the peer
    if len(outcome.errors) > 10:
        sys.stderr.write(f"qrclient: ... and {len(outcome.errors) - 10} more errors\n")


def _summary(outcome: RetrieveOutcome, out: Path) -> str:
    """One line: what arrived (or, moved elsewhere, the peer's counts), and the state."""
    refused = ""
    if outcome.refused_instances or outcome.refused_connections:
        refused = (
            f", refused {outcome.refused_instances} instances outside the request and "
            f"{outcome.refused_connections} connections"
        )
    if outcome.destination:
        return (
            f"moved to {outcome.destination}: {outcome.completed} completed, "
            f"{outcome.failed} failed, {outcome.warning} warnings in {outcome.seconds:.1f} s "
            f"(as the peer reports them): {outcome.state.value}"
        )
    megabytes = outcome.received_bytes / 1e6
    rate = megabytes / outcome.seconds if outcome.seconds else 0.0
    return (
        f"{outcome.received} instances received ({outcome.skipped} already here), "
        f"{megabytes:.1f} MB in {outcome.seconds:.1f} s ({rate:.1f} MB/s), "
        f"{outcome.failed} failed, {outcome.warning} warnings{refused}: "
        f"{outcome.state.value}; store {out}"
    )


def _exit_code(outcome: RetrieveOutcome) -> int:
    state = outcome.state
    if state is RetrieveState.COMPLETE:
        return exit_codes.OK
    if state is RetrieveState.PARTIAL:
        return exit_codes.PARTIAL
    if state is RetrieveState.NOT_FOUND:
        return exit_codes.FAILURE_STATUS
    if outcome.cancelled:
        return exit_codes.INTERRUPTED
    if outcome.status_failures or outcome.failed:
        return exit_codes.FAILURE_STATUS
    return exit_codes.NETWORK

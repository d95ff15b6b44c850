"""``qrclient get | move | retrieve``: fetch studies, series or instances into the store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, connection, max_instance, run_command
from qrclient.cli.options import ConnectionOptions
from qrclient.cli.progress_bar import ProgressBar
from qrclient.cli.store_command import report_store_error
from qrclient.client import Client, Local
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
)
from qrclient.net.peer import check_ae_title, check_sender, parse_listen
from qrclient.ops.query import LEVEL_ORDER, UNIQUE_KEY, QueryError, parse_level, parse_model
from qrclient.present.printable import printable
from qrclient.store import StoreError
from qrclient.vocabulary import Level, Method, Model

if TYPE_CHECKING:
    from qrclient.deid.session import PseudonymizeOptions
    from qrclient.present.trace import Trace

_UNIQUE_KEYS = {
    Level.PATIENT: {"PatientID"},
    Level.STUDY: {"PatientID", "StudyInstanceUID", "AccessionNumber"},
    Level.SERIES: {"PatientID", "StudyInstanceUID", "SeriesInstanceUID"},
    Level.IMAGE: {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"},
}


@dataclass(frozen=True, slots=True)
class Options:
    """``get``, ``move`` and ``retrieve`` as given (None: from the node or the file)."""

    command: str  # get, move or retrieve
    connection: ConnectionOptions
    level: str = "study"
    model: str | None = None
    keys: tuple[str, ...] = ()
    out: str | None = None
    parallel: int | None = None
    max_instance: str | None = None
    format: str = "text"
    wait: float | None = None
    overwrite: bool = False
    pseudonymize: bool = False
    linkage: str | None = None
    date_shift: str | None = None
    keep_dates: bool = False
    pseudonym_key: str | None = None
    dest: str | None = None  # move and retrieve only
    listen: str | None = None
    move_from: tuple[str, ...] = ()
    # --from FILE: a cohort, run as a durable job (qrclient.cli.cohort_command)
    from_file: str | None = None
    report: str | None = None
    no_split: bool = False
    no_verify: bool = False
    max_associations: int | None = None
    rate: str | None = None
    window: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        return cls(
            args.command,
            ConnectionOptions.from_namespace(args),
            args.level,
            args.model,
            tuple(args.keys),
            args.out,
            args.parallel,
            args.max_instance,
            args.format,
            args.wait,
            args.overwrite,
            args.pseudonymize,
            args.linkage,
            args.date_shift,
            args.keep_dates,
            args.pseudonym_key,
            args.dest,
            args.listen,
            tuple(args.move_from or ()),
            args.from_file,
            args.report,
            args.no_split,
            args.no_verify,
            args.max_associations,
            args.rate,
            args.window,
        )


def run(options: Options, trace: Trace | None = None) -> int:
    if options.from_file:  # a list of studies: a durable job
        from qrclient.cli import cohort_command

        return cohort_command.run(options, trace)
    for name, value in (
        ("--report", options.report),
        ("--no-split", options.no_split),
        ("--no-verify", options.no_verify),
        ("--max-associations", options.max_associations),
        ("--rate", options.rate),
        ("--window", options.window),
    ):
        if value:
            sys.stderr.write(f"qrclient: error: {name} goes with --from, which was not given\n")
            return exit_codes.USAGE
    started: list[tuple[RetrieveJob, Path]] = []
    try:
        return run_command(lambda: _prepare(options, trace, started))
    except KeyboardInterrupt:
        # Interrupted after files arrived: say what is here, then exit 130 as shells
        # expect of Ctrl-C (5 stays for what the PACS left partial).
        if not started or not started[0][0].outcome.received:
            raise
        retrieve, out = started[0]
        sys.stderr.write("qrclient: interrupted\n")
        _report(retrieve.outcome, out, options.format, quiet=options.connection.quiet)
        return exit_codes.INTERRUPTED


def _request(options: Options, model: Model) -> RetrieveRequest:
    level = parse_level(options.level)
    request = RetrieveRequest.parse(level, model, options.keys)
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
    options: Options, trace: Trace | None, started: list[tuple[RetrieveJob, Path]]
) -> Callable[[], Awaitable[int]]:
    # Each setting: the option if given, else the node's, else the file's, else built in.
    overrides = {
        "model": parse_model(options.model) if options.model is not None else None,
        "max_instance": max_instance(options.max_instance),
        "method": None if options.command == "retrieve" else Method(options.command),
        "destination": check_ae_title(options.dest, "--dest") if options.dest else None,
        "listen": parse_listen(options.listen) if options.listen else None,
        "move_from": tuple(check_sender(a, "--move-from") for a in options.move_from) or None,
        "store": options.out,
        "parallel": options.parallel,
    }
    resolved = connection(options.connection, trace, **overrides)
    if not 1 <= resolved.parallel <= 16:
        raise UsageError(f"--parallel {resolved.parallel}: expected 1 to 16 associations")
    request = _request(options, resolved.model)
    out = resolved.store_root
    pseudonymize = _pseudonymize_options(options, out, to_us=resolved.to_us)

    wait = 0.0 if options.wait is None else options.wait
    if not 0 <= wait <= 86400:
        raise UsageError(f"--wait {wait:g}: expected 0 to 86400 seconds")
    local = Local(out, overwrite=options.overwrite, wait=wait, pseudonymize=pseudonymize)
    client = Client(resolved, local=local)
    quiet = options.connection.quiet

    async def job() -> int:
        try:
            outcome = await _retrieve()
        except StoreError as exc:
            # The store cannot be opened, its index failed (damaged, disk full), or could
            # not commit its last rows on closing: say what arrived, then what failed.
            if started:
                _report(started[0][0].outcome, out, options.format, quiet=quiet)
            return report_store_error(exc)
        _report(outcome, out, options.format, quiet=quiet)
        return _exit_code(outcome)

    async def _retrieve() -> RetrieveOutcome:
        shown = sys.stderr.isatty() and options.format == "text" and not quiet
        bar = ProgressBar(enabled=shown)
        try:
            return await client.retrieve(
                request, watch=bar.follow, on_start=lambda job: started.append((job, out))
            )
        finally:
            await local.aclose()

    return job


def _pseudonymize_options(
    options: Options, out: Path, *, to_us: bool
) -> PseudonymizeOptions | None:
    """--pseudonymize and its options, checked before anything is opened."""
    given = {
        "--linkage": options.linkage,
        "--date-shift": options.date_shift,
        "--keep-dates": options.keep_dates,
        "--pseudonym-key": options.pseudonym_key,
    }
    if not options.pseudonymize:
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
    if options.keep_dates:
        if options.date_shift is not None:
            raise UsageError("--keep-dates and --date-shift: give one of them")
        dates = Dates(0)
    elif options.date_shift is not None:
        days = options.date_shift.strip()
        if not days.isdigit() or not 1 <= int(days) <= MAX_DATE_SHIFT:
            raise UsageError(
                f"--date-shift {options.date_shift!r}: expected a number of days from 1 to "
                f"{MAX_DATE_SHIFT} (or --keep-dates)"
            )
        dates = Dates(int(days))
    try:
        linkage = check_linkage_path(Path(options.linkage), out) if options.linkage else None
    except DeidError as exc:
        raise UsageError(str(exc)) from None
    key = Path(options.pseudonym_key).expanduser() if options.pseudonym_key else None
    return PseudonymizeOptions(dates, key, linkage)


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

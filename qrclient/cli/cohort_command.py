"""``qrclient retrieve | get | move NODE --from FILE``: a cohort, as a durable job.

Also what ``qrclient jobs resume`` runs: the job's options were kept in the store
(``spec``), so a job resumes without its command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, node_and_settings, run_command, stderr_lines
from qrclient.cli.retrieve_command import (
    _pseudonymize_options,
    _pseudonymized_note,
    _pseudonymizing,
)
from qrclient.cli.store_command import report_store_error
from qrclient.jobs.cohort.items import InputError, read_items
from qrclient.jobs.cohort.pacing import Pacer, PacingError, Rate, Window
from qrclient.jobs.cohort.report import check_report_path, write_report
from qrclient.jobs.cohort.run import CAPPED, CohortOptions, CohortRun, CohortSummary, rows
from qrclient.net.errors import DicomNetworkError
from qrclient.net.peer import check_ae_title, check_sender, parse_listen
from qrclient.ops.query import parse_model
from qrclient.present.failures import main_error
from qrclient.present.printable import printable
from qrclient.store import ItemStatus, Job, Store, StoreError
from qrclient.store.location import default_store
from qrclient.vocabulary import Method

# The options a job keeps (``spec``) and a resume runs with again; the rest (the list,
# the store, output) belong to one run.
KEPT_OPTIONS = (
    "config",
    "aet",
    "max_pdu",
    "connect_timeout",
    "association_timeout",
    "dimse_timeout",
    "network_timeout",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_server_name",
    "tls_no_verify",
    "model",
    "parallel",
    "max_instance",
    "overwrite",
    "pseudonymize",
    "linkage",
    "date_shift",
    "keep_dates",
    "pseudonym_key",
    "no_split",
    "no_verify",
    "max_associations",
    "rate",
    "window",
    "dest",
    "listen",
    "move_from",
    "report",
)


def run(args: argparse.Namespace, job_id: int | None = None) -> int:
    """Start a job from ``--from``, or (``job_id``) resume one of the store's."""
    interrupted: list[tuple[Path, int]] = []
    try:
        return run_command(lambda: _prepare(args, job_id, interrupted))
    except KeyboardInterrupt:
        sys.stderr.write("qrclient: interrupted\n")
        if interrupted:
            out, number = interrupted[0]
            sys.stderr.write(
                f"qrclient: resume the job with: qrclient jobs resume {number} --out {out}\n"
            )
        return exit_codes.INTERRUPTED


def _prepare(
    args: argparse.Namespace, job_id: int | None, started: list[tuple[Path, int]]
) -> Callable[[], Awaitable[int]]:
    if job_id is None and args.keys:
        raise UsageError("--from and -k: give the studies one way (the file's rows, or keys)")
    if args.level.lower() != "study":
        raise UsageError(f"--from retrieves whole studies: -l {args.level} goes with -k keys")
    config, node, settings = node_and_settings(args)
    items = None
    if job_id is None:
        try:
            items = read_items(args.from_file)
        except InputError as exc:
            raise UsageError(str(exc)) from None
    try:
        window = Window.parse(args.window) if args.window else None
        rate = Rate.parse(args.rate) if args.rate else None
    except PacingError as exc:
        raise UsageError(str(exc)) from None
    report = None
    if args.report:
        try:
            report = check_report_path(Path(args.report))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    parallel = next(
        n for n in (args.max_associations, args.parallel, node.parallel) if n is not None
    )
    if not 1 <= parallel <= 16:
        raise UsageError(f"--max-associations {parallel}: expected 1 to 16 associations")
    method = node.method if args.command == "retrieve" else Method(args.command)
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
    options = CohortOptions(
        method=method,
        destination="" if to_us else destination,
        parallel=parallel,
        model=parse_model(args.model),
        split=not args.no_split,
        cap=node.find_cap,
        verify=not args.no_verify,
        move_from=move_from,
        listen_host=listen_host,
        listen_port=listen_port,
    )
    say = stderr_lines(quiet=args.quiet)

    async def job() -> int:
        try:
            store = Store.open(out, overwrite=args.overwrite, wait=wait)
        except StoreError as exc:
            return report_store_error(exc)
        try:
            with store:
                return await _in(store)
        except (StoreError, BaseExceptionGroup) as exc:
            error = main_error(exc)
            if not isinstance(error, StoreError):
                raise
            return report_store_error(error)

    async def _in(store: Store) -> int:
        if job_id is None:
            assert items is not None
            job = store.jobs.create(args.command, args.node, _spec(args), args.from_file, items)
            say(
                f"job {job.id}: {rows(job.total)} from "
                f"{'standard input' if args.from_file == '-' else args.from_file}"
            )
        else:
            found = store.jobs.get(job_id)
            if found is None:
                raise UsageError(f"no job {job_id} in the store {out}: see 'qrclient jobs list'")
            job = found
            say(f"job {job.id}: resuming, {job.done} of {job.total} rows done")
        started.append((out, job.id))
        pseudonymizing = _pseudonymizing(store, pseudonymize, to_us=to_us)
        cohort = CohortRun(
            node.peer,
            settings,
            store,
            pseudonymizing or store,
            job,
            options,
            node=node.name,
            pacer=Pacer(window, rate, say=say),
            say=say,
        )
        try:
            summary = await cohort.run()
        except DicomNetworkError:
            sys.stderr.write(
                f"qrclient: the job stopped: once the PACS answers, "
                f"qrclient jobs resume {job.id} --out {out}\n"
            )
            raise
        finally:
            if pseudonymizing is not None:
                pseudonymizing.close()
            if report is not None:
                _write_report(report, store, job)
        if pseudonymizing is not None:
            summary.notes.append(_pseudonymized_note(pseudonymizing))
        _summarise(summary, job, out, args.format, quiet=args.quiet)
        return _exit_code(summary)

    return job


_FILES = {"config", "tls_ca", "tls_cert", "tls_key", "linkage", "pseudonym_key", "report"}


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    """The options a resume runs with again (see KEPT_OPTIONS)."""
    spec: dict[str, Any] = {}
    for name in KEPT_OPTIONS:
        value = getattr(args, name, None)
        if value not in (None, False, []):
            # Files as absolute paths: a resume may run from another folder.
            spec[name] = str(Path(value).expanduser().resolve()) if name in _FILES else value
    return spec


def _write_report(path: Path, store: Store, job: Job) -> None:
    try:
        write_report(path, store.jobs.items(job.id))
    except OSError as exc:
        sys.stderr.write(f"qrclient: error: cannot write the report {path}: {exc.strerror}\n")


def _summarise(summary: CohortSummary, job: Job, out: Path, kind: str, *, quiet: bool) -> None:
    counts = summary.counts()
    if kind == "json":
        json.dump(
            {
                "job": job.id,
                "rows": len(summary.items),
                "statuses": {status.value: n for status, n in counts.items()},
                "received": summary.received,
                "already_here": summary.skipped,
                "bytes": summary.received_bytes,
                "notes": summary.notes,
                "errors": summary.errors,
                "store": str(out),
            },
            sys.stdout,
        )
        print()
    elif not quiet:
        told = ", ".join(f"{n} {status.value}" for status, n in sorted(counts.items()))
        print(
            f"job {job.id}: {rows(len(summary.items))}: {told}; {summary.received} instances "
            f"received ({summary.skipped} already here), "
            f"{summary.received_bytes / 1e6:.1f} MB; store {out}"
        )
        for note in (n for n in summary.notes if n not in summary.told):
            sys.stderr.write(f"qrclient: note: {printable(note)}\n")
    for error in summary.errors[:10]:
        sys.stderr.write(f"qrclient: error: {printable(error)}\n")
    unfinished = not all(item.status.final for item in summary.items)
    if unfinished and not quiet:
        sys.stderr.write(
            f"qrclient: the job is not finished: qrclient jobs resume {job.id} --out {out}\n"
        )


def _exit_code(summary: CohortSummary) -> int:
    if summary.stopped is not None:
        return exit_codes.FAILURE_STATUS if summary.stopped_by_status else exit_codes.NETWORK
    counts = summary.counts()
    retrieved = counts.get(ItemStatus.RETRIEVED, 0)
    capped = any(item.detail == CAPPED for item in summary.items)  # studies may be missing
    if retrieved == len(summary.items) and not capped:
        return exit_codes.OK
    if retrieved or counts.get(ItemStatus.PARTIAL, 0):
        return exit_codes.PARTIAL
    return exit_codes.FAILURE_STATUS

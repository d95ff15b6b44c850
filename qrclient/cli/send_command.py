"""``qrclient send``: files, folders or studies of the local store to a peer by C-STORE."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

import anyio

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, node_and_settings, run_command
from qrclient.cli.progress_bar import ProgressBar
from qrclient.cli.store_command import report_store_error
from qrclient.config.model import MAX_PARALLEL
from qrclient.jobs.send import Failure, FileState, SendJob, SendOutcome, scan
from qrclient.net.peer import Peer
from qrclient.ops.query import QueryError
from qrclient.present.printable import printable
from qrclient.store import StoreError
from qrclient.store.location import default_store
from qrclient.store.overview import StoreView
from qrclient.store.part10 import clean_uid

SHOWN = 10  # failed and warned files named on stderr; --report has them all
REPORT_COLUMNS = (
    *("path", "state", "detail", "sop_instance_uid", "sop_class_uid"),
    *("transfer_syntax", "sent_as", "status"),
)


def run(args: argparse.Namespace) -> int:
    started: list[SendJob] = []
    try:
        return run_command(lambda: _prepare(args, started))
    except StoreError as exc:  # the index of --study/--series cannot be read
        return report_store_error(exc)
    except KeyboardInterrupt:
        if not started:
            raise
        sys.stderr.write("qrclient: interrupted\n")
        _finish(args, started[0].peer, started[0].outcome)
        return exit_codes.INTERRUPTED


def _prepare(args: argparse.Namespace, started: list[SendJob]) -> Callable[[], Awaitable[int]]:
    config, node, settings = node_and_settings(args)
    parallel = node.parallel if args.parallel is None else args.parallel
    if not 1 <= parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel {parallel}: expected 1 to {MAX_PARALLEL} associations")
    if args.report and args.report != "-" and not Path(args.report).parent.is_dir():
        raise UsageError(f"--report {args.report}: no such folder for it")
    paths = list(args.paths)
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file or folder")
    if args.study or args.series:
        out = Path(args.out) if args.out else config.store or default_store()
        paths += _from_store(out, args.study, args.series)
    if not paths:
        raise UsageError(
            "nothing to send: give files or folders, or --study UID / --series UID of the "
            "local store (--out DIR)"
        )
    found = scan(paths)
    if not found.instances:
        if args.report:
            _write_report(args.report, SendOutcome(found.outcomes))
        first = found.outcomes[0] if found.outcomes else None
        why = f": {first.path}: {first.detail}" if first else ""
        more = len(found.outcomes) - 1
        rest = f" (and {more} more files; --report FILE lists them)" if more > 0 else ""
        raise UsageError(f"no DICOM instance to send{why}{rest}")
    job = SendJob(node.peer, found, settings, parallel)

    async def send() -> int:
        started.append(job)
        shown = sys.stderr.isatty() and args.format == "text" and not args.quiet
        bar = ProgressBar(enabled=shown)
        async with anyio.create_task_group() as group:
            group.start_soon(bar.follow, job.progress)
            try:
                outcome = await job.run()
            finally:
                group.cancel_scope.cancel()
        _finish(args, node.peer, outcome)
        return exit_code(outcome)

    return send


def _from_store(out: Path, studies: list[str], series: list[str]) -> list[str]:
    """The files of the store's studies and series; UsageError for one it does not hold,
    StoreError if its index cannot be read."""
    with StoreView(out) as view:
        chosen = []
        for what, uids, files_of in (
            ("study", studies, view.study_files),
            ("series", series, view.series_files),
        ):
            for uid in uids:
                try:
                    files = files_of(clean_uid(uid, f"--{what}"))
                except ValueError as exc:
                    raise QueryError(str(exc)) from None
                if not files:
                    raise UsageError(f"the store {out} holds no {what} {uid}")
                chosen += [str(out / path) for path in files]
        return chosen


def exit_code(outcome: SendOutcome) -> int:
    """0 all sent; 5 some failed; 3 or 4 none sent, by the network or the peer's refusal;
    2 none sent and only the input to blame; 130 interrupted."""
    if outcome.cancelled:
        return exit_codes.INTERRUPTED
    if not outcome.count(FileState.FAILED):
        return exit_codes.OK
    if outcome.count(FileState.SENT) or outcome.count(FileState.WARNING):
        return exit_codes.PARTIAL
    if outcome.failures(Failure.NETWORK):
        return exit_codes.NETWORK
    if outcome.failures(Failure.REFUSED):
        return exit_codes.FAILURE_STATUS
    return exit_codes.USAGE


def _finish(args: argparse.Namespace, peer: Peer, outcome: SendOutcome) -> None:
    """The summary, the files that failed or warned, and the report."""
    if args.report:
        try:
            _write_report(args.report, outcome)
        except OSError as exc:
            sys.stderr.write(f"qrclient: error: --report {args.report}: {exc.strerror or exc}\n")
    if args.format == "json":
        json.dump(_as_json(peer, outcome, args.report), sys.stdout)
        print()
    elif not args.quiet:
        megabytes = outcome.sent_bytes / 1e6
        rate = megabytes / outcome.seconds if outcome.seconds else 0.0
        print(
            f"{outcome.count(FileState.SENT) + outcome.count(FileState.WARNING)} sent "
            f"({outcome.count(FileState.WARNING)} with warnings), "
            f"{outcome.count(FileState.FAILED)} failed, {outcome.count(FileState.SKIPPED)} "
            f"skipped, {megabytes:.1f} MB in {outcome.seconds:.1f} s ({rate:.1f} MB/s) to {peer}"
        )
    for state, label in ((FileState.FAILED, "error"), (FileState.WARNING, "warning")):
        if label == "warning" and args.quiet:
            continue
        by_detail: dict[str, list[str]] = {}
        for file in outcome.files:
            if file.state is state:
                by_detail.setdefault(file.detail, []).append(file.path)
        for detail, paths in list(by_detail.items())[:SHOWN]:
            which = paths[0] if len(paths) == 1 else f"{len(paths)} files (e.g. {paths[0]})"
            sys.stderr.write(f"qrclient: {label}: {printable(f'{which}: {detail}')}\n")
        if len(by_detail) > SHOWN:
            where = f"all in --report {args.report}" if args.report else "--report FILE lists all"
            more = sum(len(p) for p in list(by_detail.values())[SHOWN:])
            sys.stderr.write(f"qrclient: ... and {more} more files ({where})\n")


def _as_json(peer: Peer, outcome: SendOutcome, report: str | None) -> dict[str, object]:
    return {
        "peer": str(peer),
        "sent": outcome.count(FileState.SENT) + outcome.count(FileState.WARNING),
        "warning": outcome.count(FileState.WARNING),
        "failed": outcome.count(FileState.FAILED),
        "skipped": outcome.count(FileState.SKIPPED),
        "bytes": outcome.sent_bytes,
        "seconds": round(outcome.seconds, 3),
        "interrupted": outcome.cancelled,
        "failures": [
            {"path": f.path, "detail": f.detail}
            for f in outcome.files
            if f.state is FileState.FAILED
        ],
        "report": report,
    }


def _write_report(path: str, outcome: SendOutcome) -> None:
    """One CSV row per file, written whole: a temporary file renamed over ``path``."""
    if path == "-":
        _rows(sys.stdout, outcome)
        return
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            _rows(stream, outcome)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _rows(stream: TextIO, outcome: SendOutcome) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for f in sorted(outcome.files, key=lambda f: f.path):
        status = "" if f.status is None else f"0x{f.status:04X}"
        writer.writerow(
            (
                f.path,
                f.state.value,
                f.detail,
                f.sop_instance_uid,
                f.sop_class_uid,
                f.transfer_syntax,
                f.sent_as,
                status,
            )
        )

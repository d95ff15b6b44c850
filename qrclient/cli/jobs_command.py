"""``qrclient jobs list | resume [ID] | cancel ID``: the store's cohort jobs.

``list`` reads the index without the store's lock (a job may be running); ``resume``
runs a job again with the options it kept (``cohort_command.KEPT_OPTIONS``), so no
command line is needed; ``cancel`` forgets one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrclient.cli import exit_codes
from qrclient.cli.common import fail
from qrclient.cli.store_command import report_store_error, store_root
from qrclient.config import ConfigError
from qrclient.present.printable import printable
from qrclient.store import Job, JobState, Store, StoreError, read_jobs
from qrclient.store.lock import in_use


def run(args: argparse.Namespace) -> int:
    if getattr(args, "wait", None) is not None and not 0 <= args.wait <= 86400:
        fail(f"--wait {args.wait:g}: expected 0 to 86400 seconds")
        return exit_codes.USAGE
    try:
        root = store_root(args)
    except ConfigError as exc:
        fail(str(exc))
        return exit_codes.USAGE
    try:
        if args.jobs_command == "list":
            return _list(root, args.format)
        if args.jobs_command == "cancel":
            return _cancel(root, args.id, args.wait or 0.0, quiet=args.quiet)
        return _resume(root, args)
    except StoreError as exc:
        return report_store_error(exc)


def state_of(job: Job, running: bool) -> str:
    """The job's state as it is: one left running by a process that is gone was killed."""
    if job.state is JobState.RUNNING and not running:
        return "interrupted"
    return job.state.value


def _list(root: Path, kind: str) -> int:
    jobs = read_jobs(root)
    running = in_use(root)
    if kind == "json":
        listing = [
            {
                "id": job.id,
                "state": state_of(job, running),
                "command": job.command,
                "node": job.node,
                "source": job.source,
                "rows": job.total,
                "done": job.done,
                "statuses": {status.value: n for status, n in job.counts.items()},
                "created": job.created_at,
                "updated": job.updated_at,
            }
            for job in jobs
        ]
        json.dump({"store": str(root), "jobs": listing}, sys.stdout)
        print()
        return exit_codes.OK
    if not jobs:
        sys.stderr.write(f"qrclient: no jobs in the store {root}\n")
        return exit_codes.OK
    rows = [["ID", "STATE", "COMMAND", "NODE", "ROWS", "DONE", "STATUSES", "UPDATED", "FROM"]]
    for job in jobs:
        statuses = ", ".join(f"{n} {s.value}" for s, n in sorted(job.counts.items()))
        rows.append(
            [
                str(job.id),
                state_of(job, running),
                job.command,
                job.node,
                str(job.total),
                str(job.done),
                statuses,
                job.updated_at.replace("T", " ").removesuffix("+00:00") + " UTC",
                job.source,
            ]
        )
    widths = [max(len(printable(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(printable(v).ljust(w) for v, w in zip(row, widths, strict=True))
        print(line.rstrip())
    return exit_codes.OK


def _cancel(root: Path, job_id: int, wait: float, *, quiet: bool) -> int:
    if not read_jobs(root) and not root.exists():
        fail(f"no qrclient store at {root}: give it with --out DIR")
        return exit_codes.USAGE
    with Store.open(root, wait=wait) as store:
        if not store.jobs.delete(job_id):
            fail(f"no job {job_id} in the store {root}: see 'qrclient jobs list'")
            return exit_codes.USAGE
    if not quiet:
        sys.stderr.write(f"qrclient: job {job_id} forgotten (what it retrieved stays)\n")
    return exit_codes.OK


def _resume(root: Path, given: argparse.Namespace) -> int:
    jobs = read_jobs(root)
    if given.id is None:
        open_jobs = [job for job in jobs if job.resumable]
        if len(open_jobs) != 1:
            which = ", ".join(str(job.id) for job in open_jobs) or "none"
            fail(
                f"give the job to resume: {len(open_jobs)} jobs in {root} are not finished "
                f"({which}); see 'qrclient jobs list'"
            )
            return exit_codes.USAGE
        job = open_jobs[0]
    else:
        found = next((job for job in jobs if job.id == given.id), None)
        if found is None:
            fail(f"no job {given.id} in the store {root}: see 'qrclient jobs list'")
            return exit_codes.USAGE
        job = found
    if not job.resumable:
        if not given.quiet:
            sys.stderr.write(f"qrclient: job {job.id} is finished: nothing to resume\n")
        return exit_codes.OK
    from qrclient.cli import cohort_command

    return cohort_command.run(_arguments(job, root, given), job.id)


def _arguments(job: Job, root: Path, given: argparse.Namespace) -> argparse.Namespace:
    """The job's command line, rebuilt from what it kept, with this run's options."""
    from qrclient.cli.main import build_parser

    args = build_parser(job.command).parse_args([job.command, job.node])
    spec: dict[str, Any] = dict(job.spec)
    if given.config is not None:
        spec["config"] = given.config
    for name, value in spec.items():
        setattr(args, name, value)
    for name in ("max_associations", "rate", "window"):
        value = getattr(given, name)
        if value is not None:
            setattr(args, name, value)
    args.out = str(root)
    args.wait = given.wait
    args.quiet = given.quiet
    args.format = given.format
    args.verbose = given.verbose
    args.from_file = job.source
    return args

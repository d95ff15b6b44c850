"""``qrclient jobs list | resume [ID] | cancel ID``: the store's cohort jobs.

``list`` reads the index without the store's lock (a job may be running); ``resume``
runs a job again with the options it kept (``cohort_command.KEPT_OPTIONS``), so no
command line is needed; ``cancel`` forgets one.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrclient.cli import exit_codes
from qrclient.cli.arguments import add_config_argument, add_quiet_argument, add_wait_argument
from qrclient.cli.common import fail
from qrclient.cli.store_command import report_store_error, store_root
from qrclient.config import ConfigError
from qrclient.present.printable import printable
from qrclient.store import Job, JobState, Store, StoreError, read_jobs
from qrclient.store.lock import in_use


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="jobs_command", metavar="ACTION", required=True, parser_class=type(parser)
    )
    for action, summary in (
        ("list", "the jobs, their state and their rows' statuses"),
        ("resume", "take a job up where it stopped (default: the one not finished)"),
        ("cancel", "forget a job (the instances it retrieved stay in the store)"),
    ):
        sub = actions.add_parser(action, help=summary, description=f"{summary}.")
        if action != "list":
            sub.add_argument(
                "id", metavar="ID", type=int, nargs="?" if action == "resume" else None
            )
        sub.add_argument(
            "-o", "--out", metavar="DIR", help="the store (default: configured, else qrclient's)"
        )
        add_config_argument(sub)
        add_quiet_argument(sub)
        if action == "list":
            sub.add_argument("--format", choices=("text", "json"), default="text", help="output")
        else:
            add_wait_argument(sub)
        if action == "resume":
            sub.add_argument(
                "--format", choices=("text", "json"), default="text", help="summary format"
            )
            sub.add_argument(
                "-v", "--verbose", action="store_true", help="log DIMSE messages to stderr"
            )
            sub.add_argument(
                "--max-associations", type=int, metavar="N", help="instead of the job's own"
            )
            sub.add_argument("--rate", metavar="RATE", help="instead of the job's own")
            sub.add_argument("--window", metavar="HH:MM-HH:MM", help="instead of the job's own")
        # What an action does not take, so every run has every field of Options.
        missing = {"id": None, "wait": None, "format": "text", "verbose": False}
        missing.update(max_associations=None, rate=None, window=None)
        taken = {"list": {"format"}, "cancel": {"id", "wait"}, "resume": set(missing)}[action]
        sub.set_defaults(**{k: v for k, v in missing.items() if k not in taken})


@dataclass(frozen=True, slots=True)
class Options:
    action: str  # list, resume or cancel
    id: int | None = None
    out: str | None = None
    config: str | None = None
    quiet: bool = False
    format: str = "text"
    wait: float | None = None
    verbose: bool = False  # resume's
    max_associations: int | None = None
    rate: str | None = None
    window: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        return cls(
            args.jobs_command,
            args.id,
            args.out,
            args.config if args.config is not None else args.global_config,
            args.quiet,
            args.format,
            args.wait,
            args.verbose,
            args.max_associations,
            args.rate,
            args.window,
        )


def run(options: Options, trace: object = None) -> int:
    if options.wait is not None and not 0 <= options.wait <= 86400:
        fail(f"--wait {options.wait:g}: expected 0 to 86400 seconds")
        return exit_codes.USAGE
    try:
        root = store_root(options.out, options.config)
    except ConfigError as exc:
        fail(str(exc))
        return exit_codes.USAGE
    try:
        if options.action == "list":
            return _list(root, options.format)
        if options.action == "cancel":
            assert options.id is not None  # required by the parser
            return _cancel(root, options.id, options.wait or 0.0, quiet=options.quiet)
        return _resume(root, options)
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


def _resume(root: Path, given: Options) -> int:
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
    from qrclient.cli.retrieve_command import Options

    return cohort_command.run(Options.from_namespace(_arguments(job, root, given)), None, job.id)


def _arguments(job: Job, root: Path, given: Options) -> argparse.Namespace:
    """The job's command line, rebuilt from what it kept, with this run's options."""
    from qrclient.cli.main import build_parser

    args = build_parser(job.command).parse_args([job.command, job.node])
    spec: dict[str, Any] = dict(job.spec)
    if given.config is not None:
        spec["config"] = given.config
    for name, value in spec.items():
        setattr(args, name, value)
    for name, value in (
        ("max_associations", given.max_associations),
        ("rate", given.rate),
        ("window", given.window),
    ):
        if value is not None:
            setattr(args, name, value)
    args.out = str(root)
    args.wait = given.wait
    args.quiet = given.quiet
    args.format = given.format
    args.verbose = given.verbose
    args.from_file = job.source
    return args

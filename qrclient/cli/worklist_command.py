"""``qrclient worklist``: a Modality Worklist C-FIND, written as ``find`` writes matches."""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

from qrclient.cli import exit_codes
from qrclient.cli.common import peer_and_settings, run_command, stderr_lines
from qrclient.net import ContextRequest, open_association
from qrclient.ops.find import FindState, find
from qrclient.ops.worklist import build_worklist_query
from qrclient.present.output import make_writer


def run(args: argparse.Namespace) -> int:
    return run_command(lambda: _prepare(args))


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    peer, settings = peer_and_settings(args)
    query = build_worklist_query(
        args.keys,
        date=args.date,
        modality=args.modality,
        station=args.station,
        default_keys=not args.no_default_keys,
    )
    writer = make_writer(args.format, query.return_keywords)
    say = stderr_lines(quiet=args.quiet)

    async def job() -> int:
        started = time.perf_counter()
        for note in query.notes:
            say(f"note: {note}")
        matches = None
        try:
            async with (
                open_association(peer, [ContextRequest(query.sop_class)], settings) as assoc,
                find(assoc, query) as matches,
            ):
                async for dataset in matches:
                    writer.add(dataset)
        finally:
            writer.close()
        outcome = matches.outcome
        for warning in outcome.warnings:
            say(f"warning: {warning}")
        status = f", status {outcome.status}" if outcome.status else ""
        elapsed = time.perf_counter() - started
        steps = "scheduled procedure step" + ("" if outcome.count == 1 else "s")
        say(f"{outcome.count} {steps}, {outcome.state.value}{status}, {elapsed:.2f} s")
        return exit_codes.PARTIAL if outcome.state is FindState.TRUNCATED else exit_codes.OK

    return job

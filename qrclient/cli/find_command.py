"""``qrclient find``: one C-FIND, matches written as they arrive, a summary on stderr."""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

from qrclient.cli import exit_codes
from qrclient.cli.common import peer_and_settings, run_command, stderr_lines
from qrclient.net import ContextRequest, QueryOptions, open_association
from qrclient.ops.find import FindState, find_distinct
from qrclient.ops.query import build_query, parse_level, parse_model
from qrclient.present.output import make_writer


def run(args: argparse.Namespace) -> int:
    return run_command(lambda: _prepare(args))


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    peer, settings = peer_and_settings(args)
    query = build_query(
        parse_level(args.level),
        parse_model(args.model),
        args.keys,
        default_keys=not args.no_default_keys,
        lenient=True,
    )
    options = QueryOptions(args.relational, args.datetime_matching, args.fuzzy)
    context = ContextRequest(query.sop_class, query_options=options if options.wanted else None)
    writer = make_writer(args.format, query.return_keywords)

    say = stderr_lines(quiet=args.quiet)

    async def job() -> int:
        started = time.perf_counter()
        for note in query.notes:
            say(f"note: {note}")
        for warning in query.warnings:
            say(f"warning: {warning}")
        matches = None
        try:
            async with (
                open_association(peer, [context], settings) as assoc,
                find_distinct(assoc, query) as matches,
            ):
                if options.wanted:
                    granted = assoc.query_options.get(query.sop_class, QueryOptions())
                    say(f"extended negotiation: asked {options}, peer granted {granted}")
                async for dataset in matches:
                    writer.add(dataset)
        finally:
            writer.close()
        outcome = matches.outcome
        for warning in outcome.warnings[len(query.warnings) :]:
            say(f"warning: {warning}")
        elapsed = time.perf_counter() - started
        status = f", status {outcome.status}" if outcome.status else ""
        dropped = [
            f"{outcome.duplicates} duplicates merged" if outcome.duplicates else "",
            f"{outcome.unmatched} not matching the query left out" if outcome.unmatched else "",
        ]
        told = "; ".join(d for d in dropped if d)
        told = f" ({outcome.count} responses: {told})" if told else ""
        say(f"{outcome.distinct} matches, {outcome.state.value}{status}, {elapsed:.2f} s{told}")
        if outcome.state is FindState.TRUNCATED:
            return exit_codes.PARTIAL
        return exit_codes.OK

    return job

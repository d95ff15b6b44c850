"""``qrclient echo``: reachability, negotiation summary and round-trip times."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, peer_and_settings, run_command
from qrclient.net import ContextRequest, open_association
from qrclient.net.uids import VERIFICATION
from qrclient.ops.echo import echo
from qrclient.present.printable import printable


def run(args: argparse.Namespace) -> int:
    return run_command(lambda: _prepare(args))


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    peer, settings = peer_and_settings(args)
    if not 1 <= args.count <= 100_000:
        raise UsageError(f"--count {args.count}: expected 1 to 100000")

    text = args.format == "text" and not args.quiet  # -q: the exit code says it

    async def job() -> int:
        started = time.perf_counter()
        async with open_association(peer, [ContextRequest(VERIFICATION)], settings) as assoc:
            associated = time.perf_counter() - started
            if text:
                version = printable(assoc.peer_implementation_version_name or "?")
                print(
                    f"association with {peer} accepted in {associated * 1000:.1f} ms "
                    f"(peer {version}, {printable(assoc.peer_implementation_class_uid)}, "
                    f"max PDU {assoc.peer_max_pdu or 'unlimited'})",
                    flush=True,
                )
            times = []
            for number in range(1, args.count + 1):
                times.append(await echo(assoc))
                if text:
                    print(f"echo {number}: {times[-1] * 1000:.2f} ms", flush=True)
        if args.format == "json":
            json.dump(
                {
                    "peer": str(peer),
                    "association_ms": round(associated * 1000, 3),
                    "peer_implementation_class_uid": assoc.peer_implementation_class_uid,
                    "peer_implementation_version_name": assoc.peer_implementation_version_name,
                    "peer_max_pdu": assoc.peer_max_pdu,
                    "round_trip_ms": [round(t * 1000, 3) for t in times],
                },
                sys.stdout,
            )
            print()
        elif text and len(times) > 1:
            ms = [t * 1000 for t in times]
            print(
                f"{len(ms)} echoes: min {min(ms):.2f} / median {statistics.median(ms):.2f} "
                f"/ max {max(ms):.2f} ms"
            )
        return exit_codes.OK

    return job

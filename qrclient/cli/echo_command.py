"""``qrclient echo``: reachability, negotiation summary and round-trip times."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qrclient.cli.arguments import add_connection_arguments
from qrclient.cli.options import ConnectionOptions

if TYPE_CHECKING:
    from qrclient.present.trace import Trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("-c", "--count", type=int, default=1, help="how many echoes (default 1)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")


@dataclass(frozen=True, slots=True)
class Options:
    connection: ConnectionOptions
    count: int = 1
    format: str = "text"

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> Options:
        return cls(ConnectionOptions.from_namespace(args), args.count, args.format)


def run(options: Options, trace: Trace | None = None) -> int:
    import json
    import statistics
    import sys

    from qrclient.cli import exit_codes
    from qrclient.cli.common import UsageError, connection, run_command
    from qrclient.client import Client, EchoResult
    from qrclient.present.printable import printable

    text = options.format == "text" and not options.connection.quiet  # -q: the exit code says

    def prepare() -> Callable[[], Awaitable[int]]:
        client = Client(connection(options.connection, trace))
        if not 1 <= options.count <= 100_000:
            raise UsageError(f"--count {options.count}: expected 1 to 100000")

        def associated(result: EchoResult) -> None:
            if text:
                print(
                    f"association with {result.peer} accepted in "
                    f"{result.association_seconds * 1000:.1f} ms "
                    f"(peer {printable(result.peer_version or '?')}, "
                    f"{printable(result.peer_class_uid)}, "
                    f"max PDU {result.peer_max_pdu or 'unlimited'})",
                    flush=True,
                )

        def echoed(number: int, seconds: float) -> None:
            if text:
                print(f"echo {number}: {seconds * 1000:.2f} ms", flush=True)

        async def job() -> int:
            async with client:
                result = await client.echo(options.count, on_associated=associated, on_echo=echoed)
            times = result.round_trips
            if options.format == "json":
                json.dump(
                    {
                        "peer": str(result.peer),
                        "association_ms": round(result.association_seconds * 1000, 3),
                        "peer_implementation_class_uid": result.peer_class_uid,
                        "peer_implementation_version_name": result.peer_version or None,
                        "peer_max_pdu": result.peer_max_pdu,
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

    return run_command(prepare)

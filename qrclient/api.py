"""The small public API: one call per job, each opening and closing its own association.

    import anyio, qrclient

    async def main() -> None:
        print(await qrclient.echo("ORTHANC@127.0.0.1:4242"))
        async with qrclient.find("ORTHANC@127.0.0.1:4242", "study",
                                 ["PatientName=DOE*"]) as matches:
            async for dataset in matches:
                print(dataset.PatientName, dataset.StudyInstanceUID)
        print(matches.outcome)

    anyio.run(main)

For several operations on one association, use :func:`qrclient.open_association` with
the operations in :mod:`qrclient.ops`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from qrclient.net import ContextRequest, Peer, QueryOptions, Settings, open_association
from qrclient.net.peer import parse_node
from qrclient.net.uids import VERIFICATION
from qrclient.ops import echo as echo_operation
from qrclient.ops import find as find_operation
from qrclient.ops.find import FindResults
from qrclient.ops.query import Key, build_query, parse_level, parse_model
from qrclient.vocabulary import Level, Model


def _peer(node: str | Peer) -> Peer:
    return node if isinstance(node, Peer) else parse_node(node)


async def echo(
    node: str | Peer, *, count: int = 1, settings: Settings | None = None
) -> list[float]:
    """C-ECHO ``count`` times on one association; round-trip times in seconds."""
    async with open_association(_peer(node), [ContextRequest(VERIFICATION)], settings) as assoc:
        return [await echo_operation.echo(assoc) for _ in range(count)]


@asynccontextmanager
async def find(
    node: str | Peer,
    level: str | Level,
    keys: Iterable[str | Key] = (),
    *,
    model: str | Model = Model.STUDY,
    default_keys: bool = True,
    query_options: QueryOptions | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[FindResults]:
    """C-FIND: yields the stream of matches; ``.outcome`` holds the final status.

    ``keys`` are ``KEYWORD=VALUE`` (match) or ``KEYWORD`` (return) strings as on the
    command line. Bad input raises :class:`qrclient.ops.query.QueryError` before any
    connection is made.
    """
    query = build_query(
        level if isinstance(level, Level) else parse_level(level),
        model if isinstance(model, Model) else parse_model(model),
        keys,
        default_keys=default_keys,
    )
    context = ContextRequest(query.sop_class, query_options=query_options)
    async with (
        open_association(_peer(node), [context], settings) as assoc,
        find_operation.find(assoc, query) as matches,
    ):
        yield matches

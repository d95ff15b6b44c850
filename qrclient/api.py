"""The small public API: one call per job, each through a :class:`qrclient.client.Client`.

    import anyio
    import qrclient

    async def main() -> None:
        print(await qrclient.echo("pacs"))  # a configured node, or AET@host:port
        async with qrclient.find("pacs", "study", ["PatientName=DOE*"]) as matches:
            async for dataset in matches:
                print(dataset.PatientName, dataset.StudyInstanceUID)
        print(matches.outcome)
        outcome = await qrclient.retrieve("pacs", ["StudyInstanceUID=1.2.3"], out="./store")
        print(outcome.state, outcome.received)

    anyio.run(main)

``node`` is a configured node's name, ``AET@host:port`` or a :class:`Peer`; ``config``
the configuration file (default: $QRCLIENT_CONFIG, else qrclient's config.toml, else
the built-in defaults). Settings not given come from the node, then the file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from qrclient.client import Client
from qrclient.net import Peer, QueryOptions, Settings
from qrclient.vocabulary import Level, Method, Model

if TYPE_CHECKING:
    from qrclient.config import Config
    from qrclient.jobs.retrieve import RetrieveOutcome
    from qrclient.ops.find import FindResults
    from qrclient.ops.query import Key


async def echo(
    node: str | Peer,
    *,
    count: int = 1,
    settings: Settings | None = None,
    config: Config | str | Path | None = None,
) -> list[float]:
    """C-ECHO ``count`` times on one association; round-trip times in seconds."""
    async with Client(node, config=config, settings=settings) as client:
        return (await client.echo(count)).round_trips


@asynccontextmanager
async def find(
    node: str | Peer,
    level: str | Level,
    keys: Iterable[str | Key] = (),
    *,
    model: str | Model | None = None,
    default_keys: bool = True,
    query_options: QueryOptions | None = None,
    settings: Settings | None = None,
    config: Config | str | Path | None = None,
) -> AsyncIterator[FindResults]:
    """C-FIND: yields the stream of matches, as the peer sends them; ``.outcome`` holds
    the final status.

    ``keys`` are ``KEYWORD=VALUE`` (match) or ``KEYWORD`` (return) strings as on the
    command line; ``model``: the node's unless given (study root by default). Bad input
    raises :class:`qrclient.QueryError` before any connection is made.
    """
    async with Client(node, config=config, settings=settings) as client:
        query = client.query(level, keys, model=model, default_keys=default_keys)
        async with client.find(query, query_options=query_options, distinct=False) as matches:
            yield matches


async def retrieve(
    node: str | Peer,
    keys: Iterable[str | Key],
    *,
    level: str | Level = Level.STUDY,
    model: str | Model | None = None,
    out: str | Path | None = None,
    method: str | Method | None = None,
    destination: str | None = None,
    parallel: int | None = None,
    settings: Settings | None = None,
    config: Config | str | Path | None = None,
) -> RetrieveOutcome:
    """Retrieve what ``keys`` select (exact unique keys, e.g. ``StudyInstanceUID=1.2.3``,
    ``\\``-lists allowed) into the store ``out`` (default: the configured store, else
    qrclient's), skipping what it holds already.

    ``method``: ``get``, ``move`` (to our storage listener, or to ``destination``) or
    ``auto`` (C-GET where the peer accepts it); default: the node's. Returns the
    outcome (``.state``, ``.received``, ``.errors``...); bad input raises
    :class:`qrclient.QueryError` before any connection is made.
    """
    async with Client(
        node,
        config=config,
        settings=settings,
        store=out,
        method=method,
        destination=destination,
        parallel=parallel,
    ) as client:
        return await client.retrieve(client.request(keys, level=level, model=model))

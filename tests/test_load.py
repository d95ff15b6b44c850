"""One process, many associations: 20 concurrent C-FINDs and 4 concurrent retrieves.

Against the session Orthanc (its DicomThreadsCount is raised in conftest so the load
really runs concurrently on its side too). Every result set must equal the archive's
and a sequential run's; every file must be whole and in the right place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pydicom
import pytest

from fixtures.dataset import Archive
from fixtures.load import LoadQuery, LoadRetrieve, load_queries, load_retrieves, run_query
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    move_listener,
)
from qrclient.net import Peer, Settings
from qrclient.ops.move import MoveRouter
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model
from tests.conftest import OUR_AE

pytestmark = pytest.mark.anyio
FINDS = 20
RETRIEVES = 4  # two by C-GET, each into its own store; two by C-MOVE into one shared store


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[Store]]:
    with ExitStack() as stack:
        yield [stack.enter_context(Store.open(tmp_path / f"store{n}")) for n in range(3)]


def assert_store_holds(store: Store, expected: set[str]) -> None:
    stored = {i.sop_instance_uid: i for i in store.instances()}
    assert set(stored) == expected
    for uid, item in stored.items():
        dataset = pydicom.dcmread(store.root / item.path)
        assert dataset.SOPInstanceUID == uid
    assert store.verify() == []
    assert not any((store.root / ".qrclient" / "incoming").iterdir())


def job_for(
    peer: Peer, retrieve: LoadRetrieve, store: Store, router: MoveRouter | None
) -> RetrieveJob:
    request = RetrieveRequest.parse(
        Level.STUDY, Model.STUDY, [f"StudyInstanceUID={retrieve.study_uid}"]
    )
    settings = Settings(calling_ae=OUR_AE)
    method = Method.GET if router is None else Method.MOVE
    return RetrieveJob.into_store(peer, request, store, settings, method=method, router=router)


async def test_20_finds_and_4_retrieves_at_once(
    peer: Peer, archive: Archive, stores: list[Store], listen_ports: tuple[int, int]
) -> None:
    queries = load_queries(archive, FINDS)
    retrieves = load_retrieves(archive, RETRIEVES)
    assert len(queries) == FINDS
    assert len(retrieves) == RETRIEVES
    get_stores, move_store = stores[:2], stores[2]
    router = MoveRouter(OUR_AE, move_store)  # one listener port: the moves share it
    jobs = [job_for(peer, retrieves[n], get_stores[n], None) for n in range(2)]
    jobs += [job_for(peer, retrieves[n], move_store, router) for n in (2, 3)]
    results: dict[int, list[str]] = {}
    outcomes: dict[int, RetrieveOutcome] = {}

    async def find(index: int, query: LoadQuery) -> None:
        results[index] = await run_query(peer, query, Settings())

    async def retrieve(index: int, job: RetrieveJob) -> None:
        outcomes[index] = await job.run()

    listener_settings = Settings(calling_ae=OUR_AE)
    async with (
        move_listener(router, "127.0.0.1", listen_ports[0], listener_settings) as listener,
        anyio.create_task_group() as group,
    ):
        for index, job in enumerate(jobs):
            group.start_soon(retrieve, index, job)
        for index, query in enumerate(queries):
            group.start_soon(find, index, query)
    assert listener is not None
    assert listener.refusals == []

    sequential = [await run_query(peer, query, Settings()) for query in queries]
    for index, query in enumerate(queries):
        found = results[index]
        assert len(found) == len(set(found)), f"query {index}: duplicate matches"
        assert set(found) == query.expected, f"query {index} ({query.level}, {query.keys})"
        assert sorted(found) == sorted(sequential[index])

    for index in range(len(jobs)):
        outcome = outcomes[index]
        assert outcome.state is RetrieveState.COMPLETE, (index, outcome.errors)
        assert outcome.received == len(retrieves[index].expected)
        assert outcome.failed == 0
    for n in range(2):
        assert_store_holds(get_stores[n], set(retrieves[n].expected))
    assert_store_holds(move_store, set(retrieves[2].expected | retrieves[3].expected))

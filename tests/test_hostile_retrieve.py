"""Hostile peers around a retrieve: strangers writing into our store, peers sending more.

Issue 13: a connection from 127.0.0.2 calling itself ORTHANC pushed an instance into a
real move; a PACS answering a C-GET for one study sent another as well. Each case runs
bounded in time and checks what is on disk afterwards and the counts in the outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio
import pydicom
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from pynetdicom.dsutils import encode

from fixtures.dataset import Archive, find_patient
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    move_listener,
    note_refusals,
)
from qrclient.net import Settings
from qrclient.net.listener import StorageListener
from qrclient.ops.move import MoveRouter
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model
from tests.conftest import OUR_AE, RealPacs
from tests.fakepeer import PeerConnection, c_store_rq, encode_command_set, p_data
from tests.scripted_pacs import (
    Quirks,
    ScriptedPacs,
    instance,
    retrieve_from,
    series_of,
    series_uid,
    study_uid,
)
from tests.scripted_pacs import uids as uids_of

pytestmark = pytest.mark.anyio
LIMIT = 60
CT = "1.2.840.10008.5.1.4.1.1.2"
ASSOCIATE_AC, ASSOCIATE_RJ = 2, 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as opened:
        yield opened


async def scripted(
    pacs: ScriptedPacs, store: Store, method: Method, move_from: tuple[str, ...] = ()
) -> RetrieveOutcome:
    study = str(pacs.instances[0].StudyInstanceUID)
    keys = [f"StudyInstanceUID={study}"]
    return await retrieve_from(pacs, store, Level.STUDY, keys, method=method, move_from=move_from)


def on_disk(store: Store) -> set[str]:
    """SOP Instance UIDs of every file under the store's root, read back from the files."""
    files = [p for p in store.root.rglob("*") if p.is_file() and ".qrclient" not in p.parts]
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


async def stranger(port: int, calling: str, source: str, study: str) -> int:
    """Connect from ``source`` as ``calling`` and, if let in, push an instance of ``study``.

    Returns the answer's PDU type (2 accepted, 3 rejected).
    """
    stream = await anyio.connect_tcp("127.0.0.1", port, local_host=source)
    async with stream:
        conn = PeerConnection(stream, BufferedByteReceiveStream(stream))
        answer = await conn.associate(OUR_AE, calling, [CT])
        if answer == ASSOCIATE_AC:
            pushed = instance("INTRUDER", study, series_uid("intruder"), 1)
            command = c_store_rq(1, CT, str(pushed.SOPInstanceUID))
            command.CommandDataSetType = 0x0000
            data = encode(pushed, False, True)
            assert data is not None
            context = next(iter(conn.contexts))
            await conn.send_raw(p_data(context, 0x03, encode_command_set(command)))
            await conn.send_raw(p_data(context, 0x02, data))
            await conn.read_message()
        return answer


@asynccontextmanager
async def listening(router: MoveRouter, port: int) -> AsyncIterator[StorageListener]:
    async with move_listener(router, "127.0.0.1", port, Settings(calling_ae=OUR_AE)) as listener:
        assert listener is not None
        yield listener


async def test_a_stranger_from_another_address_during_a_real_move(
    real_pacs: RealPacs, archive: Archive, store: Store, listen_ports: tuple[int, int]
) -> None:
    """Issue 13.1: from 127.0.0.2, calling itself the PACS, while a move from it runs."""
    study = find_patient(archive, "BIG001").studies[0]
    expected = {i.sop_instance_uid for s in study.series for i in s.instances}
    request = RetrieveRequest.parse(
        Level.STUDY, Model.STUDY, [f"StudyInstanceUID={study.study_instance_uid}"]
    )
    router = MoveRouter(OUR_AE, store)
    job = RetrieveJob(
        real_pacs.peer, request, store, store, Settings(calling_ae=OUR_AE), 1, Method.MOVE,
        OUR_AE, router,
    )  # fmt: skip
    answers: list[tuple[int, bool]] = []  # (PDU type, a move ran before and after)

    async def intrude() -> None:
        async with aclosing(job.progress.watch(interval=0)) as snapshots:
            async for snapshot in snapshots:
                if snapshot.received >= 1:
                    break
        running_before = bool(router._moves)
        answer = await stranger(
            listen_ports[0], real_pacs.peer.ae_title, "127.0.0.2", study.study_instance_uid
        )
        answers.append((answer, running_before and bool(router._moves)))

    with anyio.fail_after(LIMIT):
        async with listening(router, listen_ports[0]) as listener:
            async with anyio.create_task_group() as group:
                group.start_soon(intrude)
                outcome = await job.run()
            note_refusals(outcome, listener.refusals)
    assert answers == [(ASSOCIATE_RJ, True)]
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == len(expected)
    assert outcome.refused_connections == 1
    assert "127.0.0.2" in outcome.refusals[0]
    assert on_disk(store) == expected
    assert {i.sop_instance_uid for i in store.instances()} == expected


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
async def test_a_stranger_when_no_move_runs(
    store: Store, listen_ports: tuple[int, int], source: str
) -> None:
    router = MoveRouter(OUR_AE, store)
    with anyio.fail_after(LIMIT):
        async with listening(router, listen_ports[0]) as listener:
            answer = await stranger(listen_ports[0], "ORTHANC", source, study_uid("any"))
    assert answer == ASSOCIATE_RJ
    assert [r.address for r in listener.refusals] == [source]
    assert on_disk(store) == set()


@pytest.mark.parametrize("method", [Method.GET, Method.MOVE])
async def test_a_peer_sending_an_instance_of_another_study(store: Store, method: Method) -> None:
    """Issue 13.6: asked for one study, the peer sends another's instance too."""
    asked = series_of("A", study_uid("asked"), series_uid("asked"), 3)
    other = instance("Z", study_uid("other"), series_uid("other"), 1)
    with ScriptedPacs(asked, Quirks(extra=[other])) as pacs:
        outcome = await scripted(pacs, store, method)
    assert on_disk(store) == uids_of(asked)
    assert outcome.received == 3
    assert outcome.refused_instances == 1
    assert study_uid("other") in outcome.refusals[0]
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors


async def test_a_pacs_delivering_from_an_address_of_its_own_needs_move_from(
    store: Store,
) -> None:
    """A PACS whose C-MOVE associations come from another of its addresses (here
    127.0.0.3) is refused, naming that address, unless move_from lists it."""
    asked = series_of("A", study_uid("from"), series_uid("from"), 2)
    with ScriptedPacs(asked, Quirks(move_bind="127.0.0.3")) as pacs:
        refused = await scripted(pacs, store, Method.MOVE)
        assert on_disk(store) == set()
        assert refused.refused_connections >= 1
        assert "127.0.0.3" in refused.refusals[0]
        assert refused.state is RetrieveState.FAILED
        accepted = await scripted(pacs, store, Method.MOVE, move_from=("127.0.0.0/29",))
    assert accepted.state is RetrieveState.COMPLETE, accepted.errors
    assert on_disk(store) == uids_of(asked)

"""Retrieves from peers that lack optional features or bend the rules (scripted PACS).

What neither real PACS of the suite shows: no list matching in C-GET / C-MOVE, instances
the peer cannot send for lack of a presentation context, keys above the level ignored
by a peer that then sends other patients' instances, studies that need more than 128
presentation contexts, and failures that hold for every request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from qrclient.jobs.retrieve import RetrieveJob, RetrieveRequest, RetrieveState
from qrclient.net import Settings
from qrclient.net.storage_classes import OTHER_STORAGE_CLASSES
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model
from tests.scripted_pacs import (
    LIMIT,
    OUR_AE,
    Quirks,
    ScriptedPacs,
    instance,
    retrieve_from,
    series_of,
    series_uid,
    study_uid,
    uids,
)

pytestmark = pytest.mark.anyio
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the peer runs in pynetdicom's threads; one backend is enough here


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as opened:
        yield opened


def put(store: Store, datasets: Sequence[Dataset]) -> None:
    """Put instances in the store as if an earlier retrieve had fetched them."""
    for ds in datasets:
        data = encode(ds, False, True)
        assert data is not None
        incoming = store.begin(
            str(ds.SOPClassUID), str(ds.SOPInstanceUID), "1.2.840.10008.1.2.1", "X"
        )
        incoming.write(data)
        incoming.commit()


def stored(store: Store) -> set[str]:
    assert store.verify() == []
    return {i.sop_instance_uid for i in store.instances()}


def list_requests(pacs: ScriptedPacs, service: str) -> int:
    return sum("\\" in ids.get("SOPInstanceUID", "") for _, ids in pacs.seen.of(service))


# -- no list matching in C-GET / C-MOVE ------------------------------------------------


@pytest.mark.parametrize("method", [Method.GET, Method.MOVE])
async def test_resume_without_list_matching_asks_one_instance_at_a_time(
    store: Store, method: Method
) -> None:
    """Issue 12.3: 24 of 30 here, the 6 others asked for with a list the peer fails
    (0xA801, as seen): each is asked for alone, and the next series goes alone at once."""
    study = study_uid("resume")
    first = series_of("P1", study, series_uid("resume-1"), 30)
    second = series_of("P1", study, series_uid("resume-2"), 10)
    quirks = Quirks(computed_keys=False, retrieve_lists=False)
    put(store, first[:24] + second[:7])
    with ScriptedPacs([*first, *second], quirks) as pacs:
        outcome = await retrieve_from(
            pacs, store, Level.STUDY, [f"StudyInstanceUID={study}"], method=method, parallel=1
        )
        again = await retrieve_from(
            pacs, store, Level.STUDY, [f"StudyInstanceUID={study}"], method=method
        )
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert (outcome.skipped, outcome.received) == (31, 9)
    assert stored(store) == uids(first) | uids(second)
    assert any("lists of SOP Instance UIDs" in note for note in outcome.notes)
    service = "C-GET" if method is Method.GET else "C-MOVE"
    # One list request failed; the job kept to single UIDs after it (and the rerun too).
    assert list_requests(pacs, service) == 1
    assert (again.state, again.received, again.skipped) == (RetrieveState.COMPLETE, 0, 40)


async def test_a_series_split_for_parallel_associations_without_list_matching(
    store: Store,
) -> None:
    """The rest of a series shared by two associations, each with a list the peer fails
    (both at once): each goes one UID at a time, and the job says so once."""
    study = study_uid("split")
    series = series_of("P1", study, series_uid("split"), 20)
    put(store, series[:4])
    quirks = Quirks(computed_keys=False, retrieve_lists=False, list_failure=0xC000)
    with ScriptedPacs(series, quirks) as pacs:
        outcome = await retrieve_from(
            pacs, store, Level.STUDY, [f"StudyInstanceUID={study}"], parallel=2
        )
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert (outcome.skipped, outcome.received) == (4, 16)
    assert stored(store) == uids(series)
    notes = [n for n in outcome.notes if "lists of SOP Instance UIDs" in n]
    assert len(notes) == 1
    assert list_requests(pacs, "C-GET") == 2


async def test_planning_without_list_matching_in_c_find(store: Store) -> None:
    studies = [study_uid(f"find-{n}") for n in range(3)]
    archive = [ds for n, s in enumerate(studies) for ds in series_of("P1", s, series_uid(s), 2)]
    with ScriptedPacs(archive, Quirks(find_lists=False)) as pacs:
        outcome = await retrieve_from(
            pacs, store, Level.STUDY, ["StudyInstanceUID=" + "\\".join(studies)]
        )
        finds = pacs.seen.of("C-FIND")
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert stored(store) == uids(archive)
    assert any("C-FIND" in note for note in outcome.notes)
    # The list was tried once, then one C-FIND per study.
    assert sum("\\" in ids.get("StudyInstanceUID", "") for _, ids in finds) == 1


# -- instances the peer cannot send for lack of a context --------------------------------


async def test_instances_of_unknown_classes_are_asked_for_again(store: Store) -> None:
    """Issue 12.1: classes unknown (no computed keys, no SOPClassUID at IMAGE level); the
    first association proposes every class uncompressed (at most 128 contexts); what the
    peer could not send (a JPEG instance, a rare class: 0xB000 and its failed list) is
    asked for again with the next packs."""
    study = study_uid("packs")
    rare = OTHER_STORAGE_CLASSES[-1]
    archive = [
        *series_of("P1", study, series_uid("packs-1"), 3),
        instance("P1", study, series_uid("packs-1"), 4, jpeg=True),
        instance("P1", study, series_uid("packs-2"), 1, rare),
    ]
    quirks = Quirks(computed_keys=False, sop_class_at_image=False)
    with ScriptedPacs(archive, quirks) as pacs:
        outcome = await retrieve_from(pacs, store, Level.STUDY, [f"StudyInstanceUID={study}"])
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert (outcome.received, outcome.failed) == (5, 0)
    assert stored(store) == uids(archive)
    assert max(pacs.seen.proposed) <= 128
    assert any("asked again for 2 instances" in note for note in outcome.notes)
    jpeg = next(i for i in store.instances() if i.sop_instance_uid == archive[3].SOPInstanceUID)
    assert jpeg.transfer_syntax == "1.2.840.10008.1.2.4.50"  # stored as sent, not transcoded


async def test_a_study_needing_more_than_128_contexts_is_split_by_class(store: Store) -> None:
    """Issue 12.1: 14 SOP classes, each with uncompressed and 9 compressed contexts: 141."""
    study = study_uid("classes")
    classes = [CT, *OTHER_STORAGE_CLASSES[:13]]
    archive = [
        instance("P1", study, series_uid(f"classes-{n % 2}"), n, sop_class)
        for n, sop_class in enumerate(classes)
    ]
    with ScriptedPacs(archive) as pacs:
        outcome = await retrieve_from(pacs, store, Level.STUDY, [f"StudyInstanceUID={study}"])
        proposed = pacs.seen.proposed
        gets = pacs.seen.of("C-GET")
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert stored(store) == uids(archive)
    assert max(proposed) <= 128
    assert len(gets) >= 2  # the classes did not fit one association


# -- keys above the level, and a peer that sends more than asked -------------------------


@pytest.mark.parametrize("method", [Method.GET, Method.MOVE])
async def test_a_patient_retrieve_from_a_peer_that_ignores_the_patient_key(
    store: Store, method: Method
) -> None:
    """Issue 12.2: the peer matches every study for PatientID=A and sends its whole
    archive for each request; only A's study is planned and stored, the rest refused."""
    mine = series_of("A", study_uid("A"), series_uid("A"), 3)
    others = [
        *series_of("B", study_uid("B"), series_uid("B"), 4),
        *series_of("C", study_uid("C"), series_uid("C"), 2),
    ]
    quirks = Quirks(study_keys_ignored=True, sends_everything=True)
    with ScriptedPacs([*mine, *others], quirks) as pacs:
        outcome = await retrieve_from(pacs, store, Level.STUDY, ["PatientID=A"], method=method)
        requests = pacs.seen.of("C-GET" if method is Method.GET else "C-MOVE")
    assert stored(store) == uids(mine)
    assert outcome.received == 3
    assert outcome.refused_instances == len(others)
    assert len(outcome.refusals) == len(others)
    assert all("not one this request asked for" in r for r in outcome.refusals)
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    # Retrieved by A's study UID only, never by PatientID.
    assert [ids.get("StudyInstanceUID") for _, ids in requests] == [study_uid("A")]
    assert any("keys differ from those asked" in n for n in outcome.notes)


async def test_a_peer_sending_other_instances_in_place_of_planned_ones(store: Store) -> None:
    """A peer that answers a series' C-GET with another study's instances: refused, and
    the retrieve is not complete (the planned count is not met)."""
    study = study_uid("swap")
    planned = series_of("A", study, series_uid("swap"), 3)
    foreign = series_of("B", study_uid("swap-b"), series_uid("swap-b"), 3)
    with ScriptedPacs(planned, Quirks(instead=foreign)) as pacs:
        outcome = await retrieve_from(
            pacs, store, Level.STUDY, [f"StudyInstanceUID={study}"], parallel=1
        )
    assert stored(store) == set()
    assert outcome.refused_instances == 3
    assert outcome.state is not RetrieveState.COMPLETE


# -- failures that hold for every request -----------------------------------------------


async def test_a_move_to_an_unknown_destination_stops_at_the_first_request(store: Store) -> None:
    """Issue 12.8: 3 studies, one failure: one error naming the peer, one C-MOVE."""
    archive = [
        ds for n in range(3) for ds in series_of("A", study_uid(f"A{n}"), series_uid(f"A{n}"), 2)
    ]
    with ScriptedPacs(archive) as pacs:
        request = RetrieveRequest.parse(Level.STUDY, Model.STUDY, ["PatientID=A"])
        job = RetrieveJob.into_store(
            pacs.peer,
            request,
            store,
            Settings(calling_ae=OUR_AE),
            parallel=1,
            method=Method.MOVE,
            destination="NOBODY",
            node="scripted",
        )
        with anyio.fail_after(LIMIT):
            outcome = await job.run()
        moves = pacs.seen.of("C-MOVE")
    assert outcome.state is RetrieveState.FAILED
    assert len(moves) == 1
    assert len(outcome.errors) == 1
    error = outcome.errors[0]
    assert f"SCRIPTED at 127.0.0.1:{pacs.port}" in error
    assert "0xA801" in error
    assert "register" in error
    assert "qrclient doctor scripted" in error
    assert outcome.status_failures == 1

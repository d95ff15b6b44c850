"""C-GET and C-MOVE into the local store, against each real PACS (Orthanc, dcmqrscp).

What arrives is checked against the archive's manifest and against what DCMTK's getscu
and movescu fetch for the same request on the same PACS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import anyio
import pydicom
import pytest

from fixtures.dataset import Archive, PatientSpec, StudySpec, all_studies, find_patient
from qrclient.jobs.retrieve import RetrieveJob, RetrieveOutcome, RetrieveRequest, RetrieveState
from qrclient.net import AssociationRejected, ContextRequest, Peer, Settings, open_association
from qrclient.net.listener import StorageListener
from qrclient.net.uids import VERIFICATION
from qrclient.ops.move import MoveRouter
from qrclient.ops.progress import Progress
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model
from tests import dcmtk
from tests.conftest import OUR_AE, THIRD_PARTY_AE, RealPacs
from tests.fakepeer import PeerConnection, fake_peer

pytestmark = pytest.mark.anyio
LIMIT = 60  # seconds for any one job


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
async def router(store: Store, listen_ports: tuple[int, int]) -> AsyncIterator[MoveRouter]:
    """Our storage listener on the port Orthanc knows for QRCLIENT."""
    router = MoveRouter(OUR_AE, store)
    listener = StorageListener(OUR_AE, router, host="127.0.0.1", port=listen_ports[0])
    async with anyio.create_task_group() as group:
        await group.start(listener.serve)
        yield router
        group.cancel_scope.cancel()


def patient(archive: Archive, patient_id: str) -> PatientSpec:
    return find_patient(archive, patient_id)


def study_uids(study: StudySpec) -> set[str]:
    return {i.sop_instance_uid for s in study.series for i in s.instances}


def assert_store_holds(store: Store, expected: set[str]) -> None:
    """Every expected instance is a readable Part-10 file with the right UID."""
    stored = {i.sop_instance_uid: i for i in store.instances()}
    assert set(stored) == expected
    for uid, item in stored.items():
        ds = pydicom.dcmread(store.root / item.path)
        assert ds.SOPInstanceUID == uid
        assert ds.file_meta.MediaStorageSOPInstanceUID == uid
    assert store.verify() == []
    assert not any((store.root / ".qrclient" / "incoming").iterdir())


async def run_job(
    peer: Peer,
    store: Store,
    level: Level,
    keys: list[str],
    *,
    model: Model = Model.STUDY,
    method: Method = Method.GET,
    router: MoveRouter | None = None,
    destination: str = OUR_AE,
    parallel: int = 2,
) -> RetrieveOutcome:
    request = RetrieveRequest.parse(level, model, keys)
    job = RetrieveJob(
        peer,
        request,
        store,
        store,
        Settings(calling_ae=OUR_AE),
        parallel,
        method,
        destination,
        router,
    )
    with anyio.fail_after(LIMIT):
        return await job.run()


@pytest.mark.parametrize("model", [Model.STUDY, Model.PATIENT])
async def test_get_study(real_pacs: RealPacs, archive: Archive, store: Store, model: Model) -> None:
    owner = patient(archive, "PAT002")
    study = owner.studies[1]  # two series
    keys = [f"StudyInstanceUID={study.study_instance_uid}"]
    if model is Model.PATIENT:
        keys.append(f"PatientID={owner.patient_id}")
    outcome = await run_job(real_pacs.peer, store, Level.STUDY, keys, model=model)
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == len(study_uids(study))
    assert_store_holds(store, study_uids(study))
    getscu = dcmtk.getscu(real_pacs.peer, "STUDY", keys, patient_root=model is Model.PATIENT)
    assert getscu == study_uids(study)


async def test_get_series_and_image_levels(
    real_pacs: RealPacs, archive: Archive, store: Store
) -> None:
    study = patient(archive, "PAT001").studies[1]
    series = study.series[0]
    series_keys = [
        f"StudyInstanceUID={study.study_instance_uid}",
        f"SeriesInstanceUID={series.series_instance_uid}",
    ]
    outcome = await run_job(real_pacs.peer, store, Level.SERIES, series_keys)
    assert outcome.received == len(series.instances)
    two = study.series[1].instances[:2]
    image_keys = [
        f"StudyInstanceUID={study.study_instance_uid}",
        f"SeriesInstanceUID={study.series[1].series_instance_uid}",
        "SOPInstanceUID=" + "\\".join(i.sop_instance_uid for i in two),
    ]
    outcome = await run_job(real_pacs.peer, store, Level.IMAGE, image_keys)
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == 2
    expected = {i.sop_instance_uid for i in series.instances} | {i.sop_instance_uid for i in two}
    assert_store_holds(store, expected)
    assert (
        dcmtk.getscu(real_pacs.peer, "SERIES", series_keys)
        | dcmtk.getscu(real_pacs.peer, "IMAGE", image_keys)
        == expected
    )


@pytest.mark.parametrize("method", [Method.GET, Method.MOVE])
@pytest.mark.parametrize("key", ["PatientID", "AccessionNumber"])
async def test_retrieve_by_patient_or_accession_fetches_only_theirs(
    real_pacs: RealPacs,
    archive: Archive,
    store: Store,
    router: MoveRouter,
    method: Method,
    key: str,
) -> None:
    """Issue 12.2: dcmqrscp ignores keys above the level: PatientID must be resolved to
    the patient's studies first, never sent in a retrieve for the PACS to honour."""
    owner = patient(archive, "PAT001")
    value = owner.patient_id if key == "PatientID" else owner.studies[1].accession_number
    studies = owner.studies if key == "PatientID" else owner.studies[1:]
    expected = set().union(*(study_uids(s) for s in studies))
    outcome = await run_job(
        real_pacs.peer, store, Level.STUDY, [f"{key}={value}"], method=method, router=router
    )
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == len(expected)
    assert_store_holds(store, expected)
    assert outcome.refused_instances == 0


async def test_resume_fetches_only_what_is_missing(
    real_pacs: RealPacs, archive: Archive, store: Store
) -> None:
    study = patient(archive, "PAT001").studies[1]
    first = study.series[0]
    await run_job(
        real_pacs.peer,
        store,
        Level.SERIES,
        [
            f"StudyInstanceUID={study.study_instance_uid}",
            f"SeriesInstanceUID={first.series_instance_uid}",
        ],
    )
    key = [f"StudyInstanceUID={study.study_instance_uid}"]
    outcome = await run_job(real_pacs.peer, store, Level.STUDY, key)
    assert outcome.skipped == len(first.instances)
    assert outcome.received == len(study_uids(study)) - len(first.instances)
    assert_store_holds(store, study_uids(study))
    again = await run_job(real_pacs.peer, store, Level.STUDY, key)
    assert again.received == 0
    assert again.skipped == len(study_uids(study))
    assert again.state is RetrieveState.COMPLETE


@pytest.mark.parametrize("method", [Method.GET, Method.MOVE])
async def test_big_study_in_parallel(
    real_pacs: RealPacs, archive: Archive, store: Store, router: MoveRouter, method: Method
) -> None:
    study = patient(archive, "BIG001").studies[0]
    key = [f"StudyInstanceUID={study.study_instance_uid}"]
    outcome = await run_job(
        real_pacs.peer, store, Level.STUDY, key, parallel=3, method=method, router=router
    )
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == 300
    assert_store_holds(store, study_uids(study))


async def test_several_studies_in_parallel_match_getscu(
    real_pacs: RealPacs, archive: Archive, store: Store
) -> None:
    studies = [s for _, s in all_studies(archive) if len(s.series) > 1][:4]
    key = "StudyInstanceUID=" + "\\".join(s.study_instance_uid for s in studies)
    outcome = await run_job(real_pacs.peer, store, Level.STUDY, [key], parallel=4)
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    expected = set().union(*(study_uids(s) for s in studies))
    assert_store_holds(store, expected)
    reference = set().union(
        *(
            dcmtk.getscu(real_pacs.peer, "STUDY", [f"StudyInstanceUID={s.study_instance_uid}"])
            for s in studies
        )
    )
    assert reference == expected


async def test_cancel_mid_transfer_leaves_no_partial_file(
    real_pacs: RealPacs, archive: Archive, store: Store
) -> None:
    peer = real_pacs.peer
    study = patient(archive, "BIG001").studies[0]
    request = RetrieveRequest.parse(
        Level.STUDY, Model.STUDY, [f"StudyInstanceUID={study.study_instance_uid}"]
    )
    job = RetrieveJob(peer, request, store, store, Settings(calling_ae=OUR_AE), 1)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(job.run)
            async with aclosing(job.progress.watch(interval=0)) as snapshots:
                async for snapshot in snapshots:
                    if snapshot.received >= 20:
                        scope.cancel()
                        break
    assert job.outcome.cancelled
    received = job.outcome.received
    assert 20 <= received < 300
    stored = {i.sop_instance_uid for i in store.instances()}
    assert len(stored) == received
    assert_store_holds(store, stored)
    # The next run fetches only the rest.
    rest = await run_job(peer, store, Level.STUDY, [f"StudyInstanceUID={study.study_instance_uid}"])
    assert rest.skipped == received
    assert rest.received == 300 - received


@pytest.mark.parametrize(
    ("level", "model"),
    [(Level.STUDY, Model.STUDY), (Level.SERIES, Model.STUDY), (Level.STUDY, Model.PATIENT)],
)
async def test_move_to_our_listener(
    real_pacs: RealPacs,
    archive: Archive,
    store: Store,
    router: MoveRouter,
    level: Level,
    model: Model,
) -> None:
    owner = patient(archive, "PAT004")
    study = owner.studies[1]
    keys = [f"StudyInstanceUID={study.study_instance_uid}"]
    expected = study_uids(study)
    if level is Level.SERIES:
        keys.append(f"SeriesInstanceUID={study.series[0].series_instance_uid}")
        expected = {i.sop_instance_uid for i in study.series[0].instances}
    if model is Model.PATIENT:
        keys.append(f"PatientID={owner.patient_id}")
    outcome = await run_job(
        real_pacs.peer, store, level, keys, model=model, method=Method.MOVE, router=router
    )
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == len(expected)
    assert_store_holds(store, expected)
    assert router.unexpected.count == 0


async def test_moves_match_movescu(
    real_pacs: RealPacs, archive: Archive, store: Store, listen_ports: tuple[int, int]
) -> None:
    study = patient(archive, "PAT007").studies[0]
    series_keys = [
        f"StudyInstanceUID={study.study_instance_uid}",
        f"SeriesInstanceUID={study.series[1].series_instance_uid}",
    ]
    reference = dcmtk.movescu(real_pacs.peer, "SERIES", series_keys, OUR_AE, listen_ports[0])
    router = MoveRouter(OUR_AE, store)
    listener = StorageListener(OUR_AE, router, host="127.0.0.1", port=listen_ports[0])
    async with anyio.create_task_group() as group:
        await group.start(listener.serve)
        outcome = await run_job(
            real_pacs.peer, store, Level.SERIES, series_keys, method=Method.MOVE, router=router
        )
        group.cancel_scope.cancel()
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert reference == {i.sop_instance_uid for i in study.series[1].instances}
    assert_store_holds(store, reference)


async def test_move_to_an_unknown_destination_stops_once_and_says_how_to_fix(
    real_pacs: RealPacs, archive: Archive, store: Store
) -> None:
    """Issue 12.8: one error naming the peer and pointing to doctor, for all 9 studies
    of three patients (Orthanc answers 0xC000, dcmqrscp 0xA801)."""
    outcome = await run_job(
        real_pacs.peer,
        store,
        Level.STUDY,
        ["PatientID=PAT001\\PAT002\\PAT007"],
        method=Method.MOVE,
        destination="NOBODY",
        parallel=1,
    )
    assert outcome.state is RetrieveState.FAILED
    assert outcome.status_failures == 1
    assert len(outcome.errors) == 1
    peer = real_pacs.peer
    assert f"{peer.ae_title} at {peer.host}:{peer.port}" in outcome.errors[0]
    assert "register" in outcome.errors[0]
    assert f"qrclient doctor {peer}" in outcome.errors[0]
    assert store.instances() == []


@pytest.mark.parametrize("method", [Method.MOVE, Method.AUTO])
async def test_move_to_a_third_party_reports_counts_only(
    real_pacs: RealPacs,
    archive: Archive,
    tmp_path: Path,
    store: Store,
    listen_ports: tuple[int, int],
    method: Method,
) -> None:
    """Issue 12.6: the instances go to THIRDPARTY (C-MOVE even where C-GET is accepted);
    the outcome has the peer's completed count, nothing came here."""
    peer = real_pacs.peer
    study = patient(archive, "PAT004").studies[0]
    with Store.open(tmp_path / "elsewhere") as elsewhere:
        third = MoveRouter(THIRD_PARTY_AE, elsewhere)
        listener = StorageListener(THIRD_PARTY_AE, third, host="127.0.0.1", port=listen_ports[1])
        async with anyio.create_task_group() as group:
            await group.start(listener.serve)
            request = RetrieveRequest.parse(
                Level.STUDY, Model.STUDY, [f"StudyInstanceUID={study.study_instance_uid}"]
            )
            job = RetrieveJob.into_store(
                peer,
                request,
                store,
                Settings(calling_ae=OUR_AE),
                parallel=1,
                method=method,
                destination=THIRD_PARTY_AE,
            )
            # The third party expects this move (as a real destination would accept it).
            with third.expect(peer.ae_title, -1, study_uids(study), Progress()):
                outcome = await job.run()
            group.cancel_scope.cancel()
        assert outcome.state is RetrieveState.COMPLETE, outcome.errors
        assert outcome.received == 0
        assert outcome.destination == THIRD_PARTY_AE
        assert outcome.completed == len(study_uids(study))
        assert {i.sop_instance_uid for i in elsewhere.instances()} == study_uids(study)
    assert store.instances() == []


async def test_listener_refuses_an_unexpected_calling_ae(
    store: Store, router: MoveRouter, listen_ports: tuple[int, int]
) -> None:
    ours = Peer(OUR_AE, "127.0.0.1", listen_ports[0])
    with pytest.raises(AssociationRejected, match="calling AE title not recognised"):
        async with open_association(
            ours, [ContextRequest(VERIFICATION)], Settings(calling_ae="STRANGER")
        ):
            pass


async def test_retrieve_chooses_move_when_the_get_context_is_rejected(store: Store) -> None:
    model = Model.STUDY
    contexts = [
        ContextRequest(model.find_sop_class),
        ContextRequest(model.get_sop_class),
        ContextRequest(model.move_sop_class),
    ]

    async def refuse_get(conn: PeerConnection) -> None:
        await conn.accept(reject_ids=(3,))  # the second proposed context: C-GET
        await conn.read_pdu()

    request = RetrieveRequest.parse(Level.STUDY, model, ["StudyInstanceUID=1.2.3"])
    async with fake_peer(refuse_get) as (port, _):
        peer = Peer("FAKE", "127.0.0.1", port)
        job = RetrieveJob(peer, request, store, store, method=Method.AUTO)
        async with open_association(peer, contexts) as association:
            chosen = job._choose(association)
            await association.abort()
    assert chosen is Method.MOVE
    assert "C-MOVE" in job.outcome.notes[0]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the UI's backend is asyncio's
@pytest.mark.parametrize("method", [Method.AUTO, Method.MOVE])
async def test_the_uis_retrieve_works_on_each_pacs(
    real_pacs: RealPacs,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
    method: Method,
) -> None:
    """Issue 12.1 hit the UI's ``r`` too: its backend builds the same jobs."""
    from qrclient.tui.backend import Node, RealBackend

    study = patient(archive, "PAT007").studies[0]
    backend = RealBackend(
        tmp_path / "store", Settings(OUR_AE), listen=("127.0.0.1", listen_ports[0])
    )
    request = RetrieveRequest.parse(
        Level.STUDY, Model.STUDY, [f"StudyInstanceUID={study.study_instance_uid}"]
    )
    try:
        with anyio.fail_after(LIMIT):
            outcome = await backend.retrieve(Node(real_pacs.peer, method), request, _ignore)
    finally:
        await backend.aclose()
    assert outcome.state is RetrieveState.COMPLETE, outcome.errors
    assert outcome.received == len(study_uids(study))
    with Store.open(tmp_path / "store") as store:
        assert_store_holds(store, study_uids(study))


def _ignore(snapshot: object) -> None:
    return None

"""C-FIND against both real PACSs, checked against the synthetic archive's manifest.

Orthanc and DCMTK's dcmqrscp answer the same queries (``real_pacs``); what only one of
them does (computed keys, case-insensitive names, a result cap) is checked for that one.
Repeated matches and other odd answers come from scripted peers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from fixtures.dataset import Archive, all_series, all_studies, find_patient
from qrclient.net import (
    AssociationAborted,
    ContextRequest,
    FailureStatus,
    Peer,
    ProtocolError,
    open_association,
)
from qrclient.net.association import Association
from qrclient.ops import find as find_module
from qrclient.ops.find import FindResults, FindState, find, find_distinct, find_values
from qrclient.ops.query import Query, build_query
from qrclient.vocabulary import PATIENT_ROOT_FIND, STUDY_ROOT_FIND, Level, Model
from tests.conftest import RealPacs, start_orthanc
from tests.fake_pacs import FakePacs, instances
from tests.fakepeer import PeerConnection, fake_peer, response

pytestmark = pytest.mark.anyio
BOTH_MODELS = [ContextRequest(STUDY_ROOT_FIND), ContextRequest(PATIENT_ROOT_FIND)]


async def run_find(peer: Peer, query: Query) -> tuple[list[Dataset], FindResults]:
    async with open_association(peer, BOTH_MODELS) as assoc, find(assoc, query) as matches:
        found = [ds async for ds in matches]
    return found, matches


def values(found: list[Dataset], keyword: str) -> list[str]:
    return sorted(str(ds.get(keyword, "")).strip() for ds in found)


async def test_patient_level_returns_every_patient(real_pacs: RealPacs, archive: Archive) -> None:
    found, matches = await run_find(real_pacs.peer, build_query(Level.PATIENT, Model.PATIENT))
    assert values(found, "PatientID") == sorted(p.patient_id for p in archive)
    assert matches.outcome.state is FindState.SUCCESS
    assert matches.outcome.count == len(archive)


@pytest.mark.parametrize("model", [Model.STUDY, Model.PATIENT])
async def test_study_level(real_pacs: RealPacs, archive: Archive, model: Model) -> None:
    keys = ["PatientID=PAT001"] if model is Model.PATIENT else []
    found, _ = await run_find(real_pacs.peer, build_query(Level.STUDY, model, keys))
    expected = [
        s.study_instance_uid
        for p, s in all_studies(archive)
        if model is Model.STUDY or p.patient_id == "PAT001"
    ]
    assert values(found, "StudyInstanceUID") == sorted(expected)
    big = next(ds for ds in found if ds.PatientID == "BIG001") if model is Model.STUDY else None
    if big is not None and real_pacs.computed_keys:
        assert int(big.NumberOfStudyRelatedInstances) == 300
    elif big is not None:  # dcmqrscp leaves out what it would have to compute
        assert "NumberOfStudyRelatedInstances" not in big


@pytest.mark.parametrize("model", [Model.STUDY, Model.PATIENT])
async def test_series_and_image_levels(real_pacs: RealPacs, archive: Archive, model: Model) -> None:
    peer = real_pacs.peer
    patient = find_patient(archive, "PAT002")
    study = patient.studies[0]
    patient_key = [f"PatientID={patient.patient_id}"] if model is Model.PATIENT else []
    series_query = build_query(
        Level.SERIES, model, [*patient_key, f"StudyInstanceUID={study.study_instance_uid}"]
    )
    found, _ = await run_find(peer, series_query)
    assert values(found, "SeriesInstanceUID") == sorted(s.series_instance_uid for s in study.series)
    series = study.series[0]
    image_query = build_query(
        Level.IMAGE,
        model,
        [
            *patient_key,
            f"StudyInstanceUID={study.study_instance_uid}",
            f"SeriesInstanceUID={series.series_instance_uid}",
        ],
    )
    assert image_query.warnings == ()
    found, _ = await run_find(peer, image_query)
    assert values(found, "SOPInstanceUID") == sorted(i.sop_instance_uid for i in series.instances)
    if real_pacs.kind == "orthanc":  # dcmqrscp does not return SOPClassUID at IMAGE level
        assert {ds.SOPClassUID for ds in found} == {i.sop_class_uid for i in series.instances}


async def test_image_level_without_parent_uids_warns_but_runs(
    real_pacs: RealPacs, archive: Archive
) -> None:
    peer = real_pacs.peer
    series = next(se for p, _, se in all_series(archive) if p.patient_id == "PAT004")
    query = build_query(Level.IMAGE, keys=[f"SeriesInstanceUID={series.series_instance_uid}"])
    assert any("StudyInstanceUID" in w for w in query.warnings)
    found, matches = await run_find(peer, query)
    assert len(found) == len(series.instances)
    assert matches.outcome.warnings == list(query.warnings)


@pytest.mark.parametrize(
    ("pattern", "prefix"), [("DOE*", "DOE"), ("DOE^*", "DOE^"), ("*^J*", None)]
)
async def test_wildcards(
    real_pacs: RealPacs, archive: Archive, pattern: str, prefix: str | None
) -> None:
    found, _ = await run_find(
        real_pacs.peer, build_query(Level.STUDY, keys=[f"PatientName={pattern}"])
    )
    if prefix is not None:
        expected = [s for p, s in all_studies(archive) if p.patient_name.startswith(prefix)]
    else:
        expected = [
            s for p, s in all_studies(archive) if p.patient_name.partition("^")[2][:1] == "J"
        ]
    assert found
    assert values(found, "StudyInstanceUID") == sorted(s.study_instance_uid for s in expected)


@pytest.mark.parametrize(
    ("name", "prefix"), [("d?e^j*", "DOE^J"), ("müller*", "MÜLLER"), ("mÜLLER*", "MÜLLER")]
)
async def test_orthanc_matches_names_case_insensitively(
    peer: Peer, archive: Archive, name: str, prefix: str
) -> None:
    # Orthanc's own choice (PS3.4 leaves it to the PACS); dcmqrscp matches case.
    query = build_query(Level.PATIENT, Model.PATIENT, [f"PatientName={name}"])
    found, _ = await run_find(peer, query)
    expected = [p.patient_id for p in archive if p.patient_name.startswith(prefix)]
    assert expected
    assert values(found, "PatientID") == sorted(expected)


@pytest.mark.parametrize(
    ("date_range", "low", "high"),
    [
        ("20200101-20221231", "20200101", "20221231"),
        ("20240101-", "20240101", "99999999"),
        ("-20201231", "00000000", "20201231"),
        ("20210607", "20210607", "20210607"),
    ],
)
async def test_date_ranges(
    real_pacs: RealPacs, archive: Archive, date_range: str, low: str, high: str
) -> None:
    found, _ = await run_find(
        real_pacs.peer, build_query(Level.STUDY, keys=[f"StudyDate={date_range}"])
    )
    expected = [s for _, s in all_studies(archive) if low <= s.study_date <= high]
    assert expected
    assert values(found, "StudyInstanceUID") == sorted(s.study_instance_uid for s in expected)


async def test_lists_of_uids(real_pacs: RealPacs, archive: Archive) -> None:
    two = [s.study_instance_uid for _, s in all_studies(archive)][:2]
    found, _ = await run_find(
        real_pacs.peer, build_query(Level.STUDY, keys=["StudyInstanceUID=" + "\\".join(two)])
    )
    assert values(found, "StudyInstanceUID") == sorted(two)


async def test_orthanc_matches_lists_of_ids(peer: Peer) -> None:
    # PS3.4 makes list matching mandatory for UIDs only; dcmqrscp reads this as one ID.
    found, _ = await run_find(peer, build_query(Level.STUDY, keys=["PatientID=PAT001\\PAT004"]))
    assert set(values(found, "PatientID")) == {"PAT001", "PAT004"}


@pytest.mark.parametrize("name", ["山田*", "ΠΑΠΑΔΟΠΟΥΛΟΣ*", "MÜLLER*"])
async def test_non_ascii_names_query_and_decode(
    real_pacs: RealPacs, archive: Archive, name: str
) -> None:
    peer = real_pacs.peer
    query = build_query(Level.PATIENT, Model.PATIENT, [f"PatientName={name}"])
    assert query.identifier().SpecificCharacterSet == "ISO_IR 192"
    found, _ = await run_find(peer, query)
    expected = [p for p in archive if p.patient_name.startswith(name[:-1])]
    assert len(found) == len(expected) == 1
    assert str(found[0].PatientName) == expected[0].patient_name


def as_text(value: object) -> str:
    """A decoded value as find_values gives it: ``\\`` between values, "" for none."""
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


async def values_both_ways(peer: Peer, query: Query) -> tuple[list[str], list[str]]:
    """find_values' rows and pydicom's decoding of the same matches, comparable."""
    async with open_association(peer, BOTH_MODELS) as assoc:
        raw = await find_values(assoc, query)
    found, _ = await run_find(peer, query)
    keywords = [k.keyword for k in query.keys]
    expected = [repr([as_text(ds.get(kw)) for kw in keywords]) for ds in found]
    return sorted(repr([row[kw] for kw in keywords]) for row in raw), sorted(expected)


@pytest.mark.parametrize(
    ("level", "model", "keys"),
    [
        (Level.PATIENT, Model.PATIENT, []),
        (Level.STUDY, Model.STUDY, ["SOPClassesInStudy", "PatientName=*"]),
        (Level.SERIES, Model.STUDY, ["SeriesDate"]),
        (Level.STUDY, Model.STUDY, ["PatientName=山田*"]),
    ],
)
async def test_find_values_read_what_pydicom_decodes(
    real_pacs: RealPacs, level: Level, model: Model, keys: list[str]
) -> None:
    """The retrieve plans with find_values (no pydicom); it must read the same values."""
    query = build_query(level, model, keys)
    raw, decoded = await values_both_ways(real_pacs.peer, query)
    assert raw == decoded
    assert raw  # every case has matches


@pytest.mark.peers  # starts its own Orthanc
async def test_latin1_answers_decode(tmp_path: Path, archive: Archive) -> None:
    """A PACS answering in ISO_IR 100 (Orthanc's stock default encoding)."""
    muller = [p for p in archive if p.charset == "ISO_IR 100"]
    server = start_orthanc(tmp_path, tuple(muller), DefaultEncoding="Latin1")
    try:
        peer = Peer(server.aet, server.host, server.dicom_port)
        found, _ = await run_find(peer, build_query(Level.PATIENT, Model.PATIENT))
        raw, decoded = await values_both_ways(peer, build_query(Level.PATIENT, Model.PATIENT))
    finally:
        server.stop(graceful=False)
    assert found[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(found[0].PatientName) == muller[0].patient_name
    assert raw == decoded
    assert muller[0].patient_name in raw[0]


async def test_matches_stream_before_the_last_arrives(
    real_pacs: RealPacs, archive: Archive
) -> None:
    peer = real_pacs.peer
    study = find_patient(archive, "BIG001").studies[0]
    query = build_query(Level.IMAGE, keys=[f"StudyInstanceUID={study.study_instance_uid}"])
    async with open_association(peer, BOTH_MODELS) as assoc, find(assoc, query) as matches:
        first = await matches.__anext__()
        # The final response is still ahead: the first match was handed over on arrival.
        assert matches.outcome.count == 1
        assert not matches.outcome.done
        rest = [ds async for ds in matches]
    assert first.SOPInstanceUID
    assert 1 + len(rest) == 300 == matches.outcome.count
    assert matches.outcome.state is FindState.SUCCESS


async def test_leaving_early_cancels_and_the_association_stays_usable(
    real_pacs: RealPacs, archive: Archive
) -> None:
    peer = real_pacs.peer
    study = find_patient(archive, "BIG001").studies[0]
    query = build_query(Level.IMAGE, keys=[f"StudyInstanceUID={study.study_instance_uid}"])
    async with open_association(peer, BOTH_MODELS) as assoc:
        async with find(assoc, query) as matches:
            async for _ in matches:
                break
        assert matches.outcome.state is FindState.CANCELLED
        # Orthanc ignores C-CANCEL but finishes within the grace period, dcmqrscp stops:
        # drained either way, not aborted.
        assert not matches.outcome.aborted
        assert assoc.is_open
        found = await collect(assoc, build_query(Level.PATIENT, Model.PATIENT))
        assert len(found) == len(archive)


async def collect(assoc: Association, query: Query) -> list[Dataset]:
    async with find(assoc, query) as matches:
        return [ds async for ds in matches]


async def test_cancelling_the_scope_cancels_the_query(
    real_pacs: RealPacs, archive: Archive
) -> None:
    peer = real_pacs.peer
    study = find_patient(archive, "BIG001").studies[0]
    query = build_query(Level.IMAGE, keys=[f"StudyInstanceUID={study.study_instance_uid}"])
    seen = 0
    async with open_association(peer, BOTH_MODELS) as assoc:
        with anyio.CancelScope() as scope:
            async with find(assoc, query) as matches:
                async for _ in matches:
                    seen += 1
                    scope.cancel()
        assert scope.cancelled_caught
        assert seen == 1
        assert matches.outcome.state is FindState.CANCELLED


@pytest.mark.peers  # starts its own Orthanc
async def test_truncated_results_are_reported(tmp_path: Path, archive: Archive) -> None:
    server = start_orthanc(tmp_path, archive[:4], LimitFindResults=2)
    try:
        peer = Peer(server.aet, server.host, server.dicom_port)
        found, matches = await run_find(peer, build_query(Level.STUDY))
    finally:
        server.stop(graceful=False)
    assert matches.outcome.state is FindState.TRUNCATED
    assert matches.outcome.status is not None
    assert matches.outcome.status.code == 0xFE00
    assert len(found) == matches.outcome.count == 2
    assert "truncated" in matches.outcome.warnings[-1]


# -- a peer that misbehaves in ways Orthanc does not ------------------------------------


def identifier(patient_id: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = patient_id
    return ds


async def stubborn(conn: PeerConnection) -> None:
    """Sends a match every 50 ms and never stops, whatever C-CANCEL says."""
    await conn.accept()
    context_id, request, _ = await conn.read_message()

    async def keep_reading() -> None:  # logs the C-CANCEL and the A-ABORT as they come
        while True:
            await conn.read_pdu()

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_reading)
        for number in range(1000):
            rsp = response(0x8020, request.MessageID, 0xFF00, PATIENT_ROOT_FIND)
            await conn.send_message(context_id, rsp, identifier(f"P{number}"))
            await anyio.sleep(0.05)


@pytest.fixture
async def stubborn_peer() -> AsyncIterator[tuple[Peer, list[PeerConnection]]]:
    async with fake_peer(stubborn) as (port, conns):
        yield Peer("FAKE", "127.0.0.1", port), conns


async def test_peer_ignoring_cancel_is_aborted_after_grace(
    stubborn_peer: tuple[Peer, list[PeerConnection]],
) -> None:
    peer, conns = stubborn_peer
    query = build_query(Level.PATIENT, Model.PATIENT)
    with anyio.fail_after(5):
        async with open_association(peer, BOTH_MODELS) as assoc:
            started = anyio.current_time()
            async with find(assoc, query, grace=0.3) as matches:
                async for _ in matches:
                    break
            elapsed = anyio.current_time() - started
            assert not assoc.is_open
    assert matches.outcome.aborted
    assert matches.outcome.state is FindState.CANCELLED
    assert 0.3 <= elapsed < 2
    await anyio.sleep(0.2)
    log = conns[0].log
    # After the C-FIND request (command and data set PDUs): C-CANCEL, then A-ABORT.
    assert log[:5] == ["pdu-01", "pdu-04", "command-0020", "pdu-04", "pdu-04"]
    assert log[5:] == ["pdu-07", "closed-by-client"]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0xA900, "Identifier Does Not Match SOP Class"),
        (0xA700, "Out of Resources"),
        (0xC001, "Unable to Process"),
    ],
)
async def test_failure_status_is_decoded(code: int, words: str) -> None:
    async def refuse(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        rsp = response(0x8020, request.MessageID, code, PATIENT_ROOT_FIND)
        rsp.ErrorComment = "computer says no"
        await conn.send_message(context_id, rsp)
        await conn.read_pdu()
        await conn.send_raw(b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00")

    async with fake_peer(refuse) as (port, _):
        with pytest.raises(FailureStatus) as caught:
            await run_find(
                Peer("FAKE", "127.0.0.1", port), build_query(Level.PATIENT, Model.PATIENT)
            )
    assert caught.value.status.code == code
    assert words in caught.value.message
    assert "computer says no" in caught.value.message
    assert caught.value.hint
    # A failed query gets a hint about queries, not about C-MOVE destinations.
    assert "C-MOVE" not in caught.value.hint
    assert "destination" not in caught.value.hint
    if code == 0xC001:
        assert caught.value.hint.startswith("the peer could not process the query")


async def test_response_to_a_message_never_sent_is_a_protocol_error() -> None:
    async def confused(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        rsp = response(0x8020, request.MessageID + 7, 0x0000, PATIENT_ROOT_FIND)
        await conn.send_message(context_id, rsp)
        await conn.read_pdu()

    async with fake_peer(confused) as (port, conns):
        with anyio.fail_after(5), pytest.raises(ProtocolError, match="answered message"):
            await run_find(
                Peer("FAKE", "127.0.0.1", port), build_query(Level.PATIENT, Model.PATIENT)
            )
        await anyio.sleep(0.1)
    assert conns[0].log[-1] == "pdu-07"


async def test_peer_abort_mid_query_is_reported() -> None:
    async def quitter(conn: PeerConnection) -> None:
        await conn.accept()
        await conn.read_message()
        await conn.send_raw(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x01")

    async with fake_peer(quitter) as (port, _):
        with pytest.raises(AssociationAborted, match="network layer: unrecognised PDU"):
            await run_find(
                Peer("FAKE", "127.0.0.1", port), build_query(Level.PATIENT, Model.PATIENT)
            )


# -- a PACS that repeats matches ------------------------------------------------------


async def test_find_distinct_merges_a_study_sent_once_per_instance() -> None:
    pacs = FakePacs(instances(studies=2, per_study=3), study_per_instance=True)
    query = build_query(Level.STUDY)
    async with fake_peer(pacs.serve) as (port, _):
        with anyio.fail_after(10):
            peer = Peer("FAKE", "127.0.0.1", port)
            every, raw = await run_find(peer, query)
            async with (
                open_association(peer, BOTH_MODELS) as assoc,
                find_distinct(assoc, query) as matches,
            ):
                distinct = [ds async for ds in matches]
    assert pacs.finds == [6, 6]
    # find hands over what the peer sent; find_distinct each study once, in order.
    assert values(every, "StudyInstanceUID") == ["2.25.10"] * 3 + ["2.25.11"] * 3
    assert [ds.StudyInstanceUID for ds in distinct] == ["2.25.10", "2.25.11"]
    outcome = matches.outcome
    assert (outcome.count, outcome.duplicates, outcome.distinct) == (6, 4, 2)
    assert outcome.state is FindState.SUCCESS
    repeated = [w for w in outcome.warnings if "more than once" in w]
    assert repeated == [
        "the peer sent the same study more than once (same StudyInstanceUID): each is shown once"
    ]
    assert raw.outcome.duplicates == 0
    assert not any("more than once" in w for w in raw.outcome.warnings)


@pytest.mark.parametrize(
    ("level", "keys", "handed_over"),
    [
        # The unique key not asked for: nothing to merge by, every match is handed over.
        (Level.STUDY, ["PatientID"], 6),
        # Below STUDY the scripted PACS sends each match once: nothing is dropped.
        (Level.SERIES, ["SeriesInstanceUID"], 2),
        (Level.IMAGE, ["SOPInstanceUID"], 6),
    ],
)
async def test_find_distinct_drops_only_repeated_unique_keys(
    level: Level, keys: list[str], handed_over: int
) -> None:
    pacs = FakePacs(instances(studies=2, per_study=3), study_per_instance=True)
    query = build_query(level, Model.STUDY, keys, default_keys=False)
    async with fake_peer(pacs.serve) as (port, _):
        with anyio.fail_after(10):
            async with (
                open_association(Peer("FAKE", "127.0.0.1", port), BOTH_MODELS) as assoc,
                find_distinct(assoc, query) as matches,
            ):
                found = [ds async for ds in matches]
    assert len(found) == handed_over == matches.outcome.count
    assert matches.outcome.duplicates == 0


async def test_find_distinct_remembers_a_bounded_number_of_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that never stops cannot fill memory with keys: past the bound, matches are
    handed over as sent, and a warning says so."""
    monkeypatch.setattr(find_module, "MAX_DISTINCT", 1)
    pacs = FakePacs(instances(studies=3, per_study=2), study_per_instance=True)
    query = build_query(Level.STUDY, Model.STUDY, ["StudyInstanceUID"], default_keys=False)
    async with fake_peer(pacs.serve) as (port, _):
        with anyio.fail_after(10):
            async with (
                open_association(Peer("FAKE", "127.0.0.1", port), BOTH_MODELS) as assoc,
                find_distinct(assoc, query) as matches,
            ):
                found = [str(ds.StudyInstanceUID) async for ds in matches]
    # 2.25.10 and 2.25.11 are remembered (the bound, then the one that warns), not 2.25.12.
    assert found == ["2.25.10", "2.25.11", "2.25.12", "2.25.12"]
    assert matches.outcome.duplicates == 2
    assert sum("later duplicates are not merged" in w for w in matches.outcome.warnings) == 1


# -- keys a PACS may ignore ---------------------------------------------------------------


async def test_a_key_above_the_level_holds_on_both_pacs(
    real_pacs: RealPacs, archive: Archive
) -> None:
    """Matching PatientID at SERIES level is optional: Orthanc does it, dcmqrscp answers
    every series; find_distinct leaves out those whose PatientID is another one."""
    keys = ["PatientID=PAT002", "StudyInstanceUID", "SeriesInstanceUID"]  # as dcmqrscp needs
    query = build_query(Level.SERIES, Model.STUDY, keys, default_keys=False)
    async with open_association(real_pacs.peer, BOTH_MODELS) as assoc:
        async with find(assoc, query) as raw:
            every = [ds async for ds in raw]
        async with find_distinct(assoc, query) as matches:
            kept = [ds async for ds in matches]
    patient = find_patient(archive, "PAT002")
    expected = sorted(se.series_instance_uid for s in patient.studies for se in s.series)
    assert values(kept, "SeriesInstanceUID") == expected
    assert {str(ds.PatientID) for ds in kept} == {"PAT002"}
    ignored = [w for w in matches.outcome.warnings if "the peer ignored PatientID" in w]
    if real_pacs.kind == "orthanc":
        assert len(every) == len(kept)
        assert matches.outcome.unmatched == 0
        assert ignored == []
    else:
        assert len(every) == sum(1 for _ in all_series(archive))
        assert matches.outcome.unmatched == len(every) - len(kept)
        assert len(ignored) == 1


async def test_find_leaves_matches_as_sent_and_find_distinct_checks_them() -> None:
    """A scripted PACS that matches UIDs only, as if PatientID were not a key."""
    pacs = FakePacs(instances(studies=2, per_study=2))
    query = build_query(Level.SERIES, Model.STUDY, ["PatientID=NOPE", "SeriesInstanceUID"])
    async with fake_peer(pacs.serve) as (port, _):
        with anyio.fail_after(10):
            every, _ = await run_find(Peer("FAKE", "127.0.0.1", port), query)
            async with (
                open_association(Peer("FAKE", "127.0.0.1", port), BOTH_MODELS) as assoc,
                find_distinct(assoc, query) as matches,
            ):
                kept = [ds async for ds in matches]
    assert len(every) == 2
    assert kept == []
    assert (matches.outcome.count, matches.outcome.unmatched, matches.outcome.distinct) == (
        2,
        2,
        0,
    )
    assert matches.outcome.state is FindState.SUCCESS

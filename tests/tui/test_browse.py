"""The DICOM rules behind browsing: drill-down keys, retrieve requests, form keys, logs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydicom.dataset import Dataset

from qrclient.net.events import (
    AssociateAccepted,
    AssociateRejected,
    DimseReceived,
    ReleaseRequested,
    SettledContextInfo,
    Tag,
)
from qrclient.ops.query import QueryError, build_query
from qrclient.present.browse import (
    QueryForm,
    Row,
    drill_keys,
    form_keys,
    match_row,
    ordered_columns,
    remote_totals,
    retrieve_selections,
)
from qrclient.present.events import describe_event
from qrclient.vocabulary import Level, Model


def test_match_row_is_text_without_the_repeated_keys() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "DOE^JOHN"
    ds.StudyDate = "20240131"
    ds.StudyTime = "083000.123"
    ds.ModalitiesInStudy = ["CT", "PT"]
    ds.SOPClassesInStudy = ["1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"]
    ds.add_new(0x00091001, "LO", "private")
    assert match_row(ds) == {
        "PatientName": "DOE^JOHN",
        "StudyDate": "2024-01-31",
        "StudyTime": "08:30:00.123",  # nothing lost: an export gives it back
        "ModalitiesInStudy": "CT\\PT",
        "SOPClassesInStudy": "CT Image Storage\\1.2.3.4",
        "(0009,1001)": "private",
    }


@pytest.mark.parametrize(
    ("level", "model", "row", "expected"),
    [
        (Level.PATIENT, Model.PATIENT, {"PatientID": "P1"}, (Level.STUDY, ["PatientID=P1"])),
        (
            Level.STUDY,
            Model.STUDY,
            {"StudyInstanceUID": "1.2", "PatientID": "P1"},
            (Level.SERIES, ["StudyInstanceUID=1.2"]),
        ),
        (
            Level.STUDY,
            Model.PATIENT,
            {"StudyInstanceUID": "1.2", "PatientID": "P1"},
            (Level.SERIES, ["PatientID=P1", "StudyInstanceUID=1.2"]),
        ),
        (
            Level.SERIES,
            Model.STUDY,
            {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3"},
            (Level.IMAGE, ["StudyInstanceUID=1.2", "SeriesInstanceUID=1.2.3"]),
        ),
    ],
)
def test_drill_keys_pin_the_parent(
    level: Level, model: Model, row: dict[str, str], expected: tuple[Level, list[str]]
) -> None:
    assert drill_keys(level, model, row) == expected
    child, keys = expected
    build_query(child, model, keys)  # and the peer can be asked


def test_drill_needs_the_unique_key_and_stops_at_images() -> None:
    with pytest.raises(QueryError, match="no StudyInstanceUID"):
        drill_keys(Level.STUDY, Model.STUDY, {"PatientID": "P1"})
    with pytest.raises(QueryError, match="no level below"):
        drill_keys(Level.IMAGE, Model.STUDY, {"SOPInstanceUID": "1.2"})


def test_retrieve_selections_group_by_parent_and_list_uids() -> None:
    rows = [
        {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.1"},
        {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.2"},
        {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.1"},
        {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.1"},  # twice: once
    ]
    selections = retrieve_selections(Level.SERIES, Model.STUDY, rows)
    assert [(s.count, s.request.level) for s in selections] == [(2, Level.SERIES)] * 1 + [
        (1, Level.SERIES)
    ]
    keys = {k.keyword: k.value for k in selections[0].request.keys}
    assert keys == {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.1\\1.1.2"}


def test_retrieve_selections_split_long_uid_lists() -> None:
    rows = [{"StudyInstanceUID": f"1.{n}"} for n in range(250)]
    selections = retrieve_selections(Level.STUDY, Model.STUDY, rows)
    assert [s.count for s in selections] == [100, 100, 50]


def test_retrieve_selections_refuse_rows_without_uids() -> None:
    with pytest.raises(QueryError, match="no SeriesInstanceUID"):
        retrieve_selections(Level.SERIES, Model.STUDY, [{"StudyInstanceUID": "1.1"}])


def test_form_keys_follow_the_level() -> None:
    form = QueryForm(
        patient_name="DOE*",
        date_from="2024-01-01",
        date_to="2024-12-31",
        modalities="ct",
        description="CHEST*",
        extra="BodyPartExamined=CHEST, InstitutionName",
    )
    assert form_keys(Level.STUDY, form) == [
        "PatientName=DOE*",
        "ModalitiesInStudy=CT",
        "StudyDescription=CHEST*",
        "StudyDate=20240101-20241231",
        "BodyPartExamined=CHEST",
        "InstitutionName",
    ]
    assert "Modality=CT" in form_keys(Level.SERIES, form)
    assert form_keys(Level.STUDY, QueryForm()) == []
    assert form_keys(Level.STUDY, QueryForm(date_from="20240101", date_to="20240101")) == [
        "StudyDate=20240101"
    ]


def test_uid_columns_go_last() -> None:
    assert ordered_columns(Level.SERIES, ["StudyInstanceUID", "SeriesNumber", "Modality"]) == [
        "SeriesNumber",
        "Modality",
        "StudyInstanceUID",
    ]


def test_events_decode_statuses_with_their_fix() -> None:
    [line] = describe_event(
        DimseReceived(
            {"command": "C-MOVE-RSP", "status": 0xA801, "message_id_being_responded_to": 3}
        )
    )
    assert "Move destination unknown (0xA801)" in line
    assert "0xA801" in line
    assert "register its AE title" in line
    [pending] = describe_event(DimseReceived({"command": "C-FIND-RSP", "status": 0xFF00}))
    assert "(0xFF00)" in pending
    assert "hint" not in pending


def test_other_events_show_their_details_as_names_and_values() -> None:
    [line] = describe_event(AssociateRejected(1, 1, 3, "rejected"))
    assert line == "associate-rj result=1 source=1 reason=3 error=rejected"
    tagged = ReleaseRequested(tag=Tag(7, "requestor"))
    assert describe_event(ReleaseRequested()) == ["A-RELEASE-RQ"]
    assert describe_event(tagged) == ["A-RELEASE-RQ association=7 role=requestor"]


def test_events_show_negotiation() -> None:
    lines = describe_event(
        AssociateAccepted(
            size=100,
            peer_implementation_class_uid="1.2.3",
            peer_implementation_version_name="ORTHANC",
            peer_max_pdu=16384,
            contexts=(
                SettledContextInfo(1, "Verification SOP Class", "accepted", "1.2.840.10008.1.2.1"),
            ),
        )
    )
    assert lines[0] == "A-ASSOCIATE-AC peer ORTHANC (1.2.3), max PDU 16384"
    assert lines[1] == "  [1] Verification SOP Class: accepted Explicit VR Little Endian"


def test_selection_labels_name_the_parent_when_given() -> None:
    rows = [{"StudyInstanceUID": "1.1", "SeriesInstanceUID": f"1.1.{n}"} for n in (1, 2)]
    [selection] = retrieve_selections(Level.SERIES, Model.STUDY, rows)
    assert selection.label() == "2 series"
    assert selection.label("2024-01-31 CT CHEST") == "2 series of 2024-01-31 CT CHEST"
    [one] = retrieve_selections(Level.STUDY, Model.STUDY, [{"StudyInstanceUID": "1.2"}])
    assert one.label() == "1 study"


@pytest.mark.anyio
async def test_remote_totals_ask_in_bounded_uid_lists() -> None:
    asked: list[tuple[Level, int]] = []

    async def find_rows(level: Level, keys: list[str]) -> AsyncIterator[Row]:
        uids = keys[0].removeprefix("StudyInstanceUID=").split("\\")
        asked.append((level, len(uids)))
        for uid in uids:
            if level is Level.STUDY:
                yield {"StudyInstanceUID": uid, "NumberOfStudyRelatedInstances": "3"}
            else:
                yield {"SeriesInstanceUID": f"{uid}.1", "NumberOfSeriesRelatedInstances": "3"}

    studies = [f"1.{n}" for n in range(250)]
    totals = await remote_totals(find_rows, studies)
    assert asked == [(Level.STUDY, n) for n in (100, 100, 50)] + [
        (Level.SERIES, n) for n in (100, 100, 50)
    ]
    assert len(totals) == 500
    assert totals["1.249.1"] == 3

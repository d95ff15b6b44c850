"""Identifiers and the keyword table without pydicom, checked against pydicom itself.

The request identifiers of find, get and move are encoded by qrclient.net.identifier
and keywords looked up in qrclient.net.dictionary, so that a retrieve never imports
pydicom. pydicom stays the reference: the same data set must give the same bytes, and
every row of the table must be the dictionary's.
"""

from __future__ import annotations

import zlib

import pytest
from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag
from pydicom.dataset import Dataset

from qrclient.jobs.retrieve import Unit, unit_identifier
from qrclient.net.datasets import encode_dataset
from qrclient.net.dictionary import COMMON, keyword_of, tag_of, vr_of
from qrclient.net.identifier import Attribute, Identifier
from qrclient.net.uids import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE
from qrclient.ops.query import build_query
from qrclient.vocabulary import Level, Model

SYNTAXES = [IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE]
UID = "1.2.826.0.1.3680043.8.498.1"


@pytest.mark.parametrize("keyword", sorted(COMMON))
def test_every_common_row_is_the_dictionarys(keyword: str) -> None:
    tag, vr = COMMON[keyword]
    assert keyword_dict[keyword] == tag
    assert dictionary_VR(tag).split(" or ")[0] == vr


@pytest.mark.parametrize("keyword", ["ReferencedSOPClassUID", "Rows", "SliceThickness"])
def test_other_keywords_come_from_pydicom(keyword: str) -> None:
    assert keyword not in COMMON
    tag = tag_of(keyword)
    assert tag == keyword_dict[keyword]
    assert vr_of(tag) == dictionary_VR(tag).split(" or ")[0]
    assert keyword_of(tag) == keyword_for_tag(tag) == keyword


def test_unknown_keywords_and_tags() -> None:
    assert tag_of("PatientNmae") is None
    assert tag_of("(0010,0010)") is None  # a keyword lookup only
    assert vr_of(0x00110010) is None  # a private creator is not in the dictionary


QUERIES = [
    (Level.PATIENT, Model.PATIENT, []),
    (Level.STUDY, Model.STUDY, []),
    (Level.SERIES, Model.STUDY, [f"StudyInstanceUID={UID}"]),
    (Level.IMAGE, Model.STUDY, [f"StudyInstanceUID={UID}\\{UID}.2", f"SeriesInstanceUID={UID}.3"]),
    (Level.STUDY, Model.STUDY, ["PatientName=山田^太郎*", "StudyDate=20240101-20241231"]),
    (Level.STUDY, Model.STUDY, ["PatientName=MÜLLER*", "ModalitiesInStudy=CT\\MR"]),
    (Level.IMAGE, Model.STUDY, ["Rows=512", "Columns", "SliceThickness=1.25", "0028,0100=16"]),
    (Level.SERIES, Model.STUDY, ["ReferencedSOPSequence", "Modality=CT", "SeriesNumber=3"]),
    (Level.STUDY, Model.STUDY, ["AccessionNumber=A1", "StudyID=7", "PatientID=Ab*"]),
]


@pytest.mark.parametrize(("level", "model", "keys"), QUERIES)
@pytest.mark.parametrize("syntax", SYNTAXES)
def test_query_identifiers_encode_as_pydicom_does(
    level: Level, model: Model, keys: list[str], syntax: str
) -> None:
    query = build_query(level, model, keys)
    assert query.as_identifier().encode(syntax) == encode_dataset(query.identifier(), syntax)


def test_deflated_identifier_inflates_to_the_explicit_one() -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["PatientName=MÜLLER*"])
    deflated = query.as_identifier().encode(DEFLATED_LE)
    inflated = zlib.decompress(deflated, -zlib.MAX_WBITS)
    assert inflated == query.as_identifier().encode(EXPLICIT_LE)


@pytest.mark.parametrize("level", [Level.STUDY, Level.SERIES, Level.IMAGE])
@pytest.mark.parametrize("model", [Model.STUDY, Model.PATIENT])
def test_unit_identifiers_encode_as_pydicom_does(level: Level, model: Model) -> None:
    unit = Unit(level, UID, f"{UID}.2", (f"{UID}.3", f"{UID}.4"), (), "PAT^Ö")
    expected = Dataset()
    expected.QueryRetrieveLevel = level.value
    if model is Model.PATIENT:
        expected.SpecificCharacterSet = "ISO_IR 192"
        expected.PatientID = unit.patient_id
    expected.StudyInstanceUID = unit.study_uid
    if level is not Level.STUDY:
        expected.SeriesInstanceUID = unit.series_uid
    if level is Level.IMAGE:
        expected.SOPInstanceUID = list(unit.sop_instance_uids)
    for syntax in SYNTAXES:
        assert unit_identifier(unit, model).encode(syntax) == encode_dataset(expected, syntax)


def test_identifier_keeps_tag_order_and_one_attribute_per_tag() -> None:
    identifier = Identifier.of(
        [
            Attribute(0x0020000D, "UI", UID),
            Attribute(0x00080052, "CS", "STUDY"),
            Attribute(0x0020000D, "UI", f"{UID}.9"),  # the later one wins
        ]
    )
    assert [a.tag for a in identifier.attributes] == [0x00080052, 0x0020000D]
    assert identifier.value(0x0020000D) == f"{UID}.9"
    assert identifier.value(0x00100010) is None


def test_identifier_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="transfer syntax"):
        Identifier.of([Attribute(0x00080052, "CS", "STUDY")]).encode("1.2.840.10008.1.2.4.50")
    with pytest.raises(ValueError, match="cannot carry a value"):
        Identifier.of([Attribute(0x00081140, "SQ", "x")]).encode(EXPLICIT_LE)
    too_long = Identifier.of([Attribute(0x00080018, "UI", "\\".join([UID] * 3000))])
    with pytest.raises(ValueError, match="too long"):
        too_long.encode(EXPLICIT_LE)
    assert too_long.encode(IMPLICIT_LE)  # a 4-byte length holds it

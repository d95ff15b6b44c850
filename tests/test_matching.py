"""Checking C-FIND answers against the query: what a PACS that ignores a key returns."""

from __future__ import annotations

import pytest

from qrclient.net.text import SPECIFIC_CHARACTER_SET
from qrclient.ops.matching import AnswerCheck, matches
from qrclient.ops.query import build_query
from qrclient.vocabulary import Level, Model

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030


@pytest.mark.parametrize(
    ("query", "vr", "value"),
    [
        ("doe*", "PN", "DOE^JOHN"),
        ("muller*", "PN", "MÜLLER^JÜRGEN"),  # accents: some PACSs fold them
        ("DOE", "PN", "DOE^JOHN"),  # some PACSs match a name's start
        ("DOE^JOHN", "PN", "DOE^JOHN^^^"),  # empty trailing components
        ("山田*", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう"),  # any component group
        ("pat001", "LO", "PAT001"),
        ("CT", "CS", "CT\\MR"),  # any of a multi-valued attribute
        ("PAT001\\PAT004", "LO", "PAT004"),  # any of a list
        ("20200101-20221231", "DA", "20210607"),
        ("20200101-", "DA", "2021.06.07"),  # the old dotted form
        ("0800-0900", "TM", "090030"),  # at the bound's precision
        ("1.2.3\\1.2.4", "UI", "1.2.4"),
        ("7", "IS", "07"),
    ],
)
def test_lenient_matching_keeps_what_any_pacs_may_match(query: str, vr: str, value: str) -> None:
    assert matches(query, vr, value.split("\\"), lenient=True)


@pytest.mark.parametrize(
    ("query", "vr", "value"),
    [
        ("PAT003", "LO", "PAT001"),
        ("DOE*", "PN", "SMITH^ALICE"),
        ("20200101-20221231", "DA", "20230101"),
        ("1.2.3", "UI", "1.2.30"),
        ("1.2.3", "UI", "1.2.3.4"),
        ("CT", "CS", "MR\\US"),
        ("7", "IS", "8"),
    ],
)
def test_lenient_matching_still_tells_other_values(query: str, vr: str, value: str) -> None:
    assert not matches(query, vr, value.split("\\"), lenient=True)


def test_the_demo_pacs_keeps_its_stricter_matching() -> None:
    assert matches("doe*", "PN", "DOE^JOHN")  # names are case-insensitive
    assert not matches("pat001", "LO", "PAT001")  # IDs are not
    assert not matches("DOE", "PN", "DOE^JOHN")
    assert not matches("muller*", "PN", "MÜLLER^JÜRGEN")


def check(keys: list[str], warnings: list[str], **options: bool) -> AnswerCheck:
    query = build_query(Level.SERIES, Model.STUDY, keys, default_keys=False)
    return AnswerCheck(query, warnings.append, **options)


def test_a_contradicting_value_drops_the_match_and_warns_once() -> None:
    warnings: list[str] = []
    answers = check(["PatientID=PAT003", "SeriesInstanceUID"], warnings)
    assert answers.accepts({PATIENT_ID: b"PAT003"})
    assert not answers.accepts({PATIENT_ID: b"PAT001"})
    assert not answers.accepts({PATIENT_ID: b"PAT002 "})
    assert answers.accepts({PATIENT_ID: b""})  # no value: nothing to tell
    assert warnings == [
        "the peer ignored PatientID=PAT003 (it returned matches with other values): "
        "those matches are left out"
    ]


def test_a_key_not_returned_is_kept_with_a_warning_once() -> None:
    warnings: list[str] = []
    answers = check(["SeriesDescription=CT*"], warnings)
    assert answers.accepts({})
    assert answers.accepts({})
    assert warnings == [
        "the peer did not return SeriesDescription, which the query matches on: it may "
        "have ignored it (check the matches)"
    ]


def test_values_are_decoded_in_the_matchs_character_set() -> None:
    answers = check(["PatientName=MÜLLER*"], [])
    assert answers.accepts({SPECIFIC_CHARACTER_SET: b"ISO_IR 100", PATIENT_NAME: b"M\xdcLLER^J"})
    assert answers.accepts(
        {SPECIFIC_CHARACTER_SET: b"ISO_IR 192", PATIENT_NAME: "MÜLLER^J".encode()}
    )
    assert not answers.accepts({SPECIFIC_CHARACTER_SET: b"ISO_IR 100", PATIENT_NAME: b"DOE^J"})


def test_return_keys_universal_values_and_binary_numbers_are_not_checked() -> None:
    query = build_query(
        Level.IMAGE,
        Model.STUDY,
        ["PatientName", "PatientID=*", "StudyDate=", "Rows=512", "SOPInstanceUID"],
        default_keys=False,
    )
    answers = AnswerCheck(query, lambda text: None)
    assert answers.keys == []
    assert answers.accepts({PATIENT_ID: b"ANY"})


def test_what_negotiation_widened_is_not_checked() -> None:
    keys = ["PatientName=DOE^JOHN", "StudyDate=20240101-20240102", "StudyTime=1000-1100"]
    strict = check(keys, [])
    widened = check(keys, [], fuzzy=True, combined_datetime=True)
    # Fuzzy matching may return JON for JOHN; combined, the range runs from 10:00 on
    # the first day to 11:00 on the second.
    answer = {PATIENT_NAME: b"DOE^JON", STUDY_DATE: b"20240101", STUDY_TIME: b"233000"}
    assert not strict.accepts(answer)
    assert widened.accepts(answer)
    assert [k.keyword for k in widened.keys] == ["StudyDate"]

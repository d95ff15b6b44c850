"""Lenient input where the intent is clear, said in a note: dates as people type them,
lower-case code strings, a retrieve key that belongs to a lower level."""

from __future__ import annotations

import json

import pytest

from fixtures.dataset import Archive, all_studies, find_patient
from qrclient.cli import exit_codes
from qrclient.ops.dates import DateError, date_bound, date_range
from qrclient.ops.query import QueryError, build_query, parse_key
from qrclient.present.browse import QueryForm, form_keys
from qrclient.vocabulary import Level
from tests.conftest import RealPacs
from tests.test_cli import run_cli


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("2020", "20200101-20201231"),
        ("2020-02", "20200201-20200229"),
        ("2023-02", "20230201-20230228"),
        ("202003", "20200301-20200331"),
        ("2020-03-14", "20200314"),
        ("2020/3/4", "20200304"),
        ("20200314", "20200314"),
        ("2020-01-01-2020-06-30", "20200101-20200630"),
        ("2020-01-01 - 2020-06-30", "20200101-20200630"),
        ("2019-2021", "20190101-20211231"),
        ("2020-", "20200101-"),
        ("-2020-06", "-20200630"),
        ("20200101-20201231", "20200101-20201231"),
    ],
)
def test_dates_as_people_type_them(typed: str, read: str) -> None:
    assert date_range(typed) == read


@pytest.mark.parametrize("typed", ["x", "2020-13", "2020-02-30", "-", "2021-2019", "20-20"])
def test_what_is_not_a_date_says_what_is_expected(typed: str) -> None:
    with pytest.raises(DateError, match=r"expected 2020, 2020-03|ends before it starts"):
        date_range(typed)


def test_range_bounds_take_the_first_and_last_day() -> None:
    assert date_bound("2020") == "20200101"
    assert date_bound("2020", end=True) == "20201231"
    assert date_bound("2021-06", end=True) == "20210630"
    assert date_bound("  ") == ""


def test_the_ui_form_reads_dates_with_the_same_code() -> None:
    form = QueryForm(date_from="2020", date_to="2021-06")
    assert form_keys(Level.STUDY, form) == ["StudyDate=20200101-20210630"]
    with pytest.raises(QueryError, match=r"StudyDate: '2024-02-30' is not a date"):
        form_keys(Level.STUDY, QueryForm(date_from="2024-02-30"))


def test_lenient_keys_say_what_they_changed() -> None:
    modality = parse_key("Modality=ct", lenient=True)
    assert modality.value == "CT"
    assert modality.note == "Modality=ct read as Modality=CT"
    listed = parse_key("ModalitiesInStudy=ct\\MR", lenient=True)
    assert listed.value == "CT\\MR"
    date = parse_key("StudyDate=2020-01-01-2020-12-31", lenient=True)
    assert date.value == "20200101-20201231"
    assert date.note == "StudyDate=2020-01-01-2020-12-31 read as StudyDate=20200101-20201231"
    exact = parse_key("StudyDate=20200101-", lenient=True)
    assert exact.note == ""  # nothing to change, nothing said
    query = build_query(Level.STUDY, keys=["Modality=mr", "PatientName=doe*"], lenient=True)
    assert query.notes == ["Modality=mr read as Modality=MR"]  # names stay as typed
    # Where the intent is not clear, the value is still refused; strict by default.
    with pytest.raises(QueryError, match="code strings are upper-case"):
        parse_key("Modality=ct")
    with pytest.raises(QueryError, match="Modality='c-t'"):
        parse_key("Modality=c-t", lenient=True)
    with pytest.raises(QueryError, match="StudyDate='2020-13'"):
        parse_key("StudyDate=2020-13", lenient=True)


def test_find_reads_dates_and_code_strings_leniently(real_pacs: RealPacs, archive: Archive) -> None:
    result = run_cli("find", real_pacs.node, "-l", "study", "-k", "StudyDate=2019", "-f", "ndjson")
    assert result.returncode == exit_codes.OK, result.stderr
    found = {json.loads(line)["0020000D"]["Value"][0] for line in result.stdout.splitlines()}
    expected = {s.study_instance_uid for _, s in all_studies(archive) if s.study_date[:4] == "2019"}
    assert found == expected
    assert "qrclient: note: StudyDate=2019 read as StudyDate=20190101-20191231" in result.stderr

    study = find_patient(archive, "PAT001").studies[1]  # MR BRAIN, three MR series
    result = run_cli(
        "find",
        real_pacs.node,
        "-l",
        "series",
        "-k",
        f"StudyInstanceUID={study.study_instance_uid}",
        "-k",
        "Modality=mr",
        "-f",
        "ndjson",
    )
    assert result.returncode == exit_codes.OK, result.stderr
    assert len(result.stdout.splitlines()) == len(study.series)
    assert "qrclient: note: Modality=mr read as Modality=MR" in result.stderr
    quiet = run_cli("find", real_pacs.node, "-l", "study", "-k", "StudyDate=2019", "-q")
    assert "note:" not in quiet.stderr


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (("-k", "SeriesInstanceUID=1.2.3"), "did you mean -l series?"),
        (("-l", "series", "-k", "SOPInstanceUID=1.2.3"), "did you mean -l image?"),
    ],
)
def test_a_retrieve_key_of_a_lower_level_suggests_that_level(
    args: tuple[str, ...], suggestion: str
) -> None:
    result = run_cli("get", "PACS@127.0.0.1:1", *args)
    assert result.returncode == exit_codes.USAGE
    assert suggestion in result.stderr
    assert len(result.stderr.splitlines()) == 1

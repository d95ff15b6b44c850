"""Unit tests for query keys, values, levels, models, identifiers and node parsing.

Pure: nothing here touches the network.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from qrclient.net.datasets import decode_dataset, encode_dataset
from qrclient.net.peer import NodeError, Peer, check_ae_title, check_host, check_port, parse_node
from qrclient.ops.query import (
    DEFAULT_RETURN_KEYS,
    Key,
    Query,
    QueryError,
    build_query,
    parse_key,
    parse_level,
    parse_model,
)
from qrclient.vocabulary import Level, Model

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def query_error(text: str) -> str:
    """The message of the QueryError that ``parse_key(text)`` must raise."""
    with pytest.raises(QueryError) as excinfo:
        parse_key(text)
    message = str(excinfo.value)
    assert "\n" not in message, "QueryError messages are one line"
    return message


def node_error(text: str) -> str:
    """The message of the NodeError that ``parse_node(text)`` must raise."""
    with pytest.raises(NodeError) as excinfo:
        parse_node(text)
    message = str(excinfo.value)
    assert "\n" not in message, "NodeError messages are one line"
    return message


def round_trip(query: Query) -> Dataset:
    """The identifier, encoded as on the wire and decoded back."""
    return decode_dataset(encode_dataset(query.identifier(), EXPLICIT_LE), EXPLICIT_LE)


def dicom_date(day: datetime.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


# -- keys: keyword or tag ------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["PatientID", "0010,0020", "(0010,0020)", "00100020"])
def test_key_by_keyword_or_tag_spelling(spelling: str) -> None:
    key = parse_key(spelling)
    assert key.tag == Tag(0x0010, 0x0020)
    assert key.keyword == "PatientID"
    assert key.vr == "LO"
    assert key.name == "PatientID"


@pytest.mark.parametrize("spelling", ["PatientName", "0010,0010", "(0010,0010)", "00100010"])
def test_key_by_tag_with_value(spelling: str) -> None:
    key = parse_key(f"{spelling}=Smith*")
    assert key.keyword == "PatientName"
    assert key.value == "Smith*"


def test_tag_hex_is_case_insensitive() -> None:
    assert parse_key("0020,000d").keyword == "StudyInstanceUID"
    assert parse_key("0020000D").keyword == "StudyInstanceUID"


def test_bare_key_asks_for_return() -> None:
    assert parse_key("StudyDescription").value is None


def test_empty_value_is_universal_match() -> None:
    key = parse_key("PatientID=")
    assert key.value == ""
    assert key.value is not None


def test_value_may_contain_equals_sign() -> None:
    assert parse_key("StudyDescription=a=b").value == "a=b"


# -- keys: valid values --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # wildcards on text VRs
        "PatientName=Sm*th^J?hn",
        "PatientName=*",
        "PatientID=12*",
        "StudyDescription=*THORAX*",
        "AccessionNumber=A?23",
        "Modality=C*",
        "Modality=M?",
        # dates: single, ranges, open ranges, lists
        "StudyDate=20240229",
        "StudyDate=20240101-20241231",
        "StudyDate=20240101-20240101",
        "StudyDate=20240101-",
        "StudyDate=-20241231",
        "StudyDate=20240101\\20240105",
        "StudyDate=20240101-20240131\\20240301",
        "PatientBirthDate=19700101-19791231",
        # times: single, ranges, open ranges, fractions
        "StudyTime=083000",
        "StudyTime=080000-170000",
        "StudyTime=0800-1700",
        "StudyTime=08-17",
        "StudyTime=080000.123-",
        "StudyTime=-170000",
        # UIDs and UID lists
        "StudyInstanceUID=1.2.840.10008.5.1.4.1.1.2",
        "StudyInstanceUID=1.2.3\\1.2.4",
        "SOPInstanceUID=" + "1." * 31 + "12",  # exactly 64 characters
        # code strings, lists of them
        "Modality=CT",
        "ModalitiesInStudy=CT\\MR",
        "PatientSex=F",
        # numbers
        "SeriesNumber=3",
        "InstanceNumber=12\\13",
        "PatientWeight=72.5",
    ],
)
def test_valid_values_accepted(text: str) -> None:
    key = parse_key(text)
    assert key.value == text.partition("=")[2]


def test_max_length_uid_is_64() -> None:
    uid = "1." * 31 + "12"
    assert len(uid) == 64
    assert parse_key(f"SOPInstanceUID={uid}").value == uid


# -- keys: invalid values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("StudyDate=20241301", ["StudyDate", "20241301", "YYYYMMDD"]),
        ("StudyDate=2024-01-01", ["StudyDate", "2024-01-01", "YYYYMMDD"]),
        ("StudyDate=20240230", ["StudyDate", "20240230", "YYYYMMDD"]),
        ("StudyDate=20230229", ["StudyDate", "20230229", "YYYYMMDD"]),
        ("StudyDate=2024010", ["StudyDate", "2024010", "YYYYMMDD"]),
        ("StudyDate=-", ["StudyDate", "YYYYMMDD"]),
        ("StudyDate=20240101--20240102", ["StudyDate", "YYYYMMDD"]),
        ("StudyDate=20240101\\2024", ["StudyDate", "'2024'", "YYYYMMDD"]),
        ("StudyTime=250000", ["StudyTime", "250000", "HHMMSS"]),
        ("StudyTime=126000", ["StudyTime", "126000", "HHMMSS"]),
        ("StudyTime=08:30", ["StudyTime", "08:30", "HHMMSS"]),
    ],
)
def test_bad_date_or_time_refused(text: str, fragments: list[str]) -> None:
    message = query_error(text)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "text",
    [
        "StudyDate=20241231-20240101",
        "StudyTime=170000-080000",
        "PatientBirthDate=20000102-20000101",
    ],
)
def test_reversed_range_refused(text: str) -> None:
    keyword, _, value = text.partition("=")
    message = query_error(text)
    assert keyword in message
    assert value in message
    assert "before it starts" in message


@pytest.mark.parametrize(
    ("text", "vr"),
    [
        ("StudyDate=2024*", "DA"),
        ("StudyDate=202401??", "DA"),
        ("StudyInstanceUID=1.2.840.*", "UI"),
        ("SeriesInstanceUID=1.2.?", "UI"),
        ("SeriesNumber=1*", "IS"),
        ("InstanceNumber=?", "IS"),
    ],
)
def test_wildcard_on_non_text_vr_refused(text: str, vr: str) -> None:
    keyword = text.partition("=")[0]
    message = query_error(text)
    assert keyword in message
    assert "wildcard" in message
    assert vr in message


@pytest.mark.parametrize("text", ["SeriesNumber=abc", "InstanceNumber=1.5", "SeriesNumber=1-5"])
def test_non_numeric_integer_string_refused(text: str) -> None:
    keyword, _, value = text.partition("=")
    message = query_error(text)
    assert keyword in message
    assert value in message
    assert "whole number" in message


def test_non_numeric_decimal_string_refused() -> None:
    message = query_error("PatientWeight=heavy")
    assert "PatientWeight" in message
    assert "number" in message


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.abc",
        "1.2.3a",
        ".1.2.3",
        "1.2.3.",
        "1..2",
        "1." * 32 + "1",  # 65 characters
        "1." * 40 + "1",
    ],
)
def test_bad_uid_refused(uid: str) -> None:
    message = query_error(f"StudyInstanceUID={uid}")
    assert "StudyInstanceUID" in message
    assert "not a UID" in message
    assert "64" in message


def test_bad_uid_in_list_refused() -> None:
    message = query_error("StudyInstanceUID=1.2.3\\1.2.x")
    assert "'1.2.x'" in message


def test_lower_case_code_string_refused_with_suggestion() -> None:
    message = query_error("Modality=ct")
    assert "Modality" in message
    assert "'ct'" in message
    assert "upper-case" in message
    assert "'CT'" in message


def test_unknown_keyword_with_suggestion() -> None:
    message = query_error("PatientNam=Smith")
    assert "PatientNam" in message
    assert "did you mean PatientName?" in message


def test_unknown_keyword_without_near_miss() -> None:
    message = query_error("Xyzzy=1")
    assert "'Xyzzy'" in message
    assert "keyword" in message
    assert "did you mean" not in message


def test_empty_key_refused() -> None:
    assert "KEY=VALUE" in query_error("=x")


@pytest.mark.parametrize("tag", ["0009,0010", "(0009,1001)", "00291010", "0011,0010"])
def test_private_tag_refused(tag: str) -> None:
    message = query_error(f"{tag}=x")
    assert tag in message
    assert "cannot be a query key" in message


@pytest.mark.parametrize("tag", ["0000,0000", "0000,0900", "0002,0010", "(0002,0002)"])
def test_command_and_meta_group_refused(tag: str) -> None:
    message = query_error(tag)
    assert tag in message
    assert "cannot be a query key" in message


def test_tag_not_in_dictionary_refused() -> None:
    message = query_error("1234,5678")
    assert "1234,5678" in message
    assert "dictionary" in message


def test_query_retrieve_level_via_key_refused() -> None:
    message = query_error("QueryRetrieveLevel=STUDY")
    assert "QueryRetrieveLevel" in message
    assert "--level" in message


def test_query_retrieve_level_by_tag_refused() -> None:
    message = query_error("0008,0052=SERIES")
    assert "QueryRetrieveLevel" in message
    assert "--level" in message


def test_specific_character_set_via_key_refused() -> None:
    message = query_error("SpecificCharacterSet=ISO_IR 100")
    assert "SpecificCharacterSet" in message
    assert "automatically" in message
    # The message must read as a sentence: "use (set automatically)" tells the user
    # nothing they can use.
    assert "use (" not in message


def test_value_on_sequence_refused() -> None:
    message = query_error("ReferencedStudySequence=1.2.3")
    assert "ReferencedStudySequence" in message
    assert "sequence" in message


def test_sequence_without_value_accepted() -> None:
    key = parse_key("ReferencedStudySequence")
    assert key.vr == "SQ"
    assert key.value is None


def test_too_long_value_refused() -> None:
    message = query_error("PatientID=" + "x" * 65)
    assert "PatientID" in message
    assert "64" in message


@pytest.mark.parametrize(
    "text",
    [
        "PixelData=abc",  # OB/OW: binary, no matching possible
        "FrameIncrementPointer=abc",  # AT: 'abc' is no tag (it is sent as (0000,0ABC))
    ],
)
def test_value_on_binary_or_tag_vr_refused(text: str) -> None:
    message = query_error(text)
    assert text.partition("=")[0] in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rows=512", 512),  # US
        ("SimpleFrameList=7", 7),  # UL
        ("DiffusionBValue=1000", 1000.0),  # FD
    ],
)
def test_binary_number_value_encodes_or_is_refused(text: str, expected: float) -> None:
    """A value on a binary-number VR must either be refused up front or go on the wire."""
    try:
        query = build_query(Level.IMAGE, Model.STUDY, [text], default_keys=False)
    except QueryError:
        return
    decoded = round_trip(query)
    assert decoded[parse_key(text).tag].value == expected


@pytest.mark.parametrize("value", ["abc\ndef", "a\tb", "x\x01y", "x\x7fy"])
def test_control_characters_in_value_refused(value: str) -> None:
    """LO forbids control characters (PS3.5 6.2: only ESC, for code extensions)."""
    with pytest.raises(QueryError, match="PatientID"):
        parse_key(f"PatientID={value}")


def test_undecodable_argument_byte_refused() -> None:
    """A byte that did not decode (surrogate escape) must not be sent as the '?' wildcard."""
    with pytest.raises(QueryError, match="PatientName"):
        parse_key("PatientName=M\udcfcller")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_decimal_string_refused(value: str) -> None:
    with pytest.raises(QueryError, match="PatientWeight"):
        parse_key(f"PatientWeight={value}")


# -- property: date ranges -------------------------------------------------------------------

_dates = st.dates(min_value=datetime.date(1, 1, 1), max_value=datetime.date(9999, 12, 31))


@given(first=_dates, second=_dates)
def test_date_range_accepted_iff_ordered(first: datetime.date, second: datetime.date) -> None:
    text = f"StudyDate={dicom_date(first)}-{dicom_date(second)}"
    if first <= second:
        assert parse_key(text).value == f"{dicom_date(first)}-{dicom_date(second)}"
    else:
        with pytest.raises(QueryError, match="before it starts"):
            parse_key(text)


@given(day=_dates)
def test_any_valid_date_and_open_ranges_accepted(day: datetime.date) -> None:
    value = dicom_date(day)
    for form in (value, f"{value}-", f"-{value}"):
        assert parse_key(f"StudyDate={form}").value == form


# -- levels and models -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("patient", Level.PATIENT),
        ("PATIENT", Level.PATIENT),
        ("Study", Level.STUDY),
        ("series", Level.SERIES),
        ("iMaGe", Level.IMAGE),
    ],
)
def test_parse_level_case_insensitive(text: str, level: Level) -> None:
    assert parse_level(text) is level


@pytest.mark.parametrize("text", ["instance", "", "studies", "all"])
def test_bad_level_message(text: str) -> None:
    with pytest.raises(QueryError) as excinfo:
        parse_level(text)
    message = str(excinfo.value)
    assert repr(text) in message
    assert "patient, study, series or image" in message


@pytest.mark.parametrize(
    ("text", "model"),
    [("patient", Model.PATIENT), ("STUDY", Model.STUDY), ("Study", Model.STUDY)],
)
def test_parse_model(text: str, model: Model) -> None:
    assert parse_model(text) is model


@pytest.mark.parametrize("text", ["hierarchical", "", "patient-study"])
def test_bad_model_message(text: str) -> None:
    with pytest.raises(QueryError) as excinfo:
        parse_model(text)
    message = str(excinfo.value)
    assert repr(text) in message
    assert "patient or study" in message


def test_patient_level_with_study_root_refused() -> None:
    with pytest.raises(QueryError) as excinfo:
        build_query(Level.PATIENT, Model.STUDY)
    message = str(excinfo.value)
    assert "PATIENT" in message
    assert "--model patient" in message


def test_patient_level_with_patient_root_accepted() -> None:
    query = build_query(Level.PATIENT, Model.PATIENT)
    assert query.level is Level.PATIENT
    assert query.warnings == ()


@pytest.mark.parametrize(
    ("level", "model"),
    [
        (Level.PATIENT, Model.PATIENT),
        (Level.STUDY, Model.STUDY),
        (Level.SERIES, Model.STUDY),
        (Level.IMAGE, Model.STUDY),
        (Level.STUDY, Model.PATIENT),
    ],
)
def test_default_keys_present_and_in_order(level: Level, model: Model) -> None:
    query = build_query(level, model)
    assert query.return_keywords == list(DEFAULT_RETURN_KEYS[level])
    assert all(key.value is None for key in query.keys)


def test_given_keys_come_after_defaults() -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["ReferringPhysicianName", "InstitutionName"])
    defaults = list(DEFAULT_RETURN_KEYS[Level.STUDY])
    assert query.return_keywords == [*defaults, "ReferringPhysicianName", "InstitutionName"]


def test_no_default_keys_returns_only_given() -> None:
    query = build_query(
        Level.STUDY,
        Model.STUDY,
        ["PatientID=123", "StudyDate", "0008,1030"],
        default_keys=False,
    )
    assert query.return_keywords == ["PatientID", "StudyDate", "StudyDescription"]
    assert [key.value for key in query.keys] == ["123", None, None]


def test_value_for_default_key_replaces_it_in_place() -> None:
    defaults = list(DEFAULT_RETURN_KEYS[Level.STUDY])
    query = build_query(Level.STUDY, Model.STUDY, ["StudyDate=20240101-20241231"])
    assert query.return_keywords == defaults
    position = defaults.index("StudyDate")
    assert query.keys[position].value == "20240101-20241231"
    others = [key for i, key in enumerate(query.keys) if i != position]
    assert all(key.value is None for key in others)


def test_value_for_default_key_by_tag_replaces_it_in_place() -> None:
    defaults = list(DEFAULT_RETURN_KEYS[Level.SERIES])
    query = build_query(Level.SERIES, Model.STUDY, ["0008,0060=MR"])
    assert query.return_keywords == defaults
    assert query.keys[defaults.index("Modality")].value == "MR"


def test_bare_repeat_of_matching_key_keeps_value() -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["PatientID=123", "PatientID"])
    values = {key.keyword: key.value for key in query.keys}
    assert values["PatientID"] == "123"
    assert query.return_keywords.count("PatientID") == 1


def test_same_value_twice_accepted() -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["PatientID=123", "0010,0020=123"])
    assert query.return_keywords.count("PatientID") == 1


@pytest.mark.parametrize(
    "keys",
    [
        ["PatientID=123", "PatientID=456"],
        ["PatientID=123", "0010,0020=456"],
        ["Modality=CT", "Modality=MR"],
    ],
)
def test_conflicting_values_refused(keys: list[str]) -> None:
    with pytest.raises(QueryError) as excinfo:
        build_query(Level.SERIES, Model.STUDY, keys)
    message = str(excinfo.value)
    first, second = (k.partition("=")[2] for k in keys)
    assert "given twice" in message
    assert repr(first) in message
    assert repr(second) in message


def test_prebuilt_keys_accepted() -> None:
    key = Key(Tag(0x0010, 0x0020), "PatientID", "LO", "123")
    query = build_query(Level.STUDY, Model.STUDY, [key], default_keys=False)
    assert query.keys == (key,)


def test_sop_class_follows_model() -> None:
    assert build_query(Level.STUDY, Model.STUDY).sop_class == Model.STUDY.find_sop_class
    assert build_query(Level.STUDY, Model.PATIENT).sop_class == Model.PATIENT.find_sop_class
    assert Model.STUDY.find_sop_class != Model.PATIENT.find_sop_class


# -- hierarchy warnings ----------------------------------------------------------------------


def test_image_level_without_uids_warns() -> None:
    query = build_query(Level.IMAGE, Model.STUDY)
    assert len(query.warnings) == 1
    assert "StudyInstanceUID" in query.warnings[0]
    assert "SeriesInstanceUID" in query.warnings[0]
    assert "IMAGE" in query.warnings[0]


def test_image_level_with_study_uid_only_warns_about_series() -> None:
    query = build_query(Level.IMAGE, Model.STUDY, ["StudyInstanceUID=1.2.3"])
    assert len(query.warnings) == 1
    assert "SeriesInstanceUID" in query.warnings[0]
    assert "StudyInstanceUID" not in query.warnings[0]


def test_image_level_with_both_uids_no_warning() -> None:
    query = build_query(
        Level.IMAGE, Model.STUDY, ["StudyInstanceUID=1.2.3", "SeriesInstanceUID=1.2.3.4"]
    )
    assert query.warnings == ()


def test_universal_match_does_not_count_as_given_uid() -> None:
    query = build_query(Level.SERIES, Model.STUDY, ["StudyInstanceUID="])
    assert len(query.warnings) == 1
    assert "StudyInstanceUID" in query.warnings[0]


@pytest.mark.parametrize("keys", [[], ["PatientName=Smith*"], ["StudyDate=20240101-"]])
def test_study_level_study_root_no_warning(keys: list[str]) -> None:
    assert build_query(Level.STUDY, Model.STUDY, keys).warnings == ()


def test_series_level_study_root_without_study_uid_warns() -> None:
    query = build_query(Level.SERIES, Model.STUDY)
    assert len(query.warnings) == 1
    assert "StudyInstanceUID" in query.warnings[0]


def test_patient_root_study_level_without_patient_id_warns() -> None:
    query = build_query(Level.STUDY, Model.PATIENT)
    assert len(query.warnings) == 1
    assert "PatientID" in query.warnings[0]
    assert "STUDY" in query.warnings[0]


def test_patient_root_study_level_with_patient_id_no_warning() -> None:
    assert build_query(Level.STUDY, Model.PATIENT, ["PatientID=123"]).warnings == ()


def test_patient_root_image_level_names_all_missing() -> None:
    query = build_query(Level.IMAGE, Model.PATIENT)
    assert len(query.warnings) == 1
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert keyword in query.warnings[0]


# -- identifier ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "model"),
    [
        (Level.PATIENT, Model.PATIENT),
        (Level.STUDY, Model.STUDY),
        (Level.SERIES, Model.STUDY),
        (Level.IMAGE, Model.STUDY),
    ],
)
def test_identifier_sets_query_retrieve_level(level: Level, model: Model) -> None:
    identifier = build_query(level, model).identifier()
    assert identifier.QueryRetrieveLevel == level.value
    for keyword in DEFAULT_RETURN_KEYS[level]:
        assert keyword in identifier


def test_identifier_values_and_return_keys() -> None:
    query = build_query(
        Level.STUDY,
        Model.STUDY,
        ["PatientName=Smith*", "StudyDate=20240101-", "PatientID="],
    )
    decoded = round_trip(query)
    assert decoded.QueryRetrieveLevel == "STUDY"
    assert str(decoded.PatientName) == "Smith*"
    assert decoded.StudyDate == "20240101-"
    assert decoded.PatientID == ""
    assert decoded.StudyInstanceUID == ""


def test_identifier_sequence_return_key_is_empty_sequence() -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["ReferencedStudySequence"], default_keys=False)
    decoded = round_trip(query)
    assert decoded.ReferencedStudySequence == []


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("PatientName=Müller^Hans", "PatientName"),
        ("PatientName=山田^太郎", "PatientName"),
        ("PatientName=Ελλη*", "PatientName"),
        ("StudyDescription=Thorax ö", "StudyDescription"),
    ],
)
def test_non_ascii_value_sets_utf8_and_round_trips(text: str, keyword: str) -> None:
    query = build_query(Level.STUDY, Model.STUDY, [text])
    assert query.identifier().SpecificCharacterSet == "ISO_IR 192"
    decoded = round_trip(query)
    assert decoded.SpecificCharacterSet == "ISO_IR 192"
    assert str(decoded[keyword].value) == text.partition("=")[2]


def test_ascii_query_has_no_specific_character_set() -> None:
    query = build_query(Level.STUDY, Model.STUDY, ["PatientName=Smith*", "StudyDescription=CT"])
    assert "SpecificCharacterSet" not in query.identifier()
    assert "SpecificCharacterSet" not in round_trip(query)


# -- nodes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "peer"),
    [
        ("ORTHANC@127.0.0.1:4242", Peer("ORTHANC", "127.0.0.1", 4242)),
        ("PACS@pacs.example.org:104", Peer("PACS", "pacs.example.org", 104)),
        ("A@[::1]:104", Peer("A", "::1", 104)),
        ("A@[2001:db8::1]:11112", Peer("A", "2001:db8::1", 11112)),
        ("  PACS  @localhost:104", Peer("PACS", "localhost", 104)),
        ("MY PACS@host-1:1", Peer("MY PACS", "host-1", 1)),
        ("SIXTEEN_CHARS_AE@h:65535", Peer("SIXTEEN_CHARS_AE", "h", 65535)),
    ],
)
def test_good_node(text: str, peer: Peer) -> None:
    assert parse_node(text) == peer


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("PACS", ["'PACS'", "AET@host:port"]),
        ("PACS:104", ["'PACS:104'", "AET@host:port"]),
        ("PACS@host", ["'PACS@host'", "no port"]),
        ("PACS@:104", ["no port"]),
        ("PACS@host:0", ["port 0", "1 to 65535"]),
        ("PACS@host:70000", ["port 70000", "1 to 65535"]),
        ("PACS@host:abc", ["'abc'", "not a number"]),
        ("A" * 17 + "@host:104", ["A" * 17, "17 characters", "at most 16"]),
        ("@host:104", ["empty", "AE title"]),
        ("   @host:104", ["empty", "AE title"]),
        ("A\\B@host:104", ["AE title", "backslash"]),
        ("PÄCS@host:104", ["PÄCS", "ASCII"]),
        ("A@::1:104", ["brackets", "[::1]"]),
        ("A@bad_host!:104", ["'bad_host!'", "not a host name or IP address"]),
        ("A@[::1:104", ["not a host name or IP address"]),
    ],
)
def test_bad_node(text: str, fragments: list[str]) -> None:
    message = node_error(text)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("port", ["1_04", "١٠٤"])
def test_port_must_be_plain_digits(port: str) -> None:
    """int() accepts underscores and other scripts' digits; a port should be ASCII digits."""
    with pytest.raises(NodeError, match="port"):
        parse_node(f"PACS@host:{port}")


def test_check_ae_title_strips_and_names_option() -> None:
    assert check_ae_title(" QRCLIENT ") == "QRCLIENT"
    with pytest.raises(NodeError, match=r"--aet"):
        check_ae_title("X" * 17, "calling AE title (--aet)")


def test_check_port_and_host() -> None:
    assert check_port("104") == 104
    assert check_host("[::1]") == "::1"
    assert check_host("pacs.example.org.") == "pacs.example.org."
    with pytest.raises(NodeError, match="65536"):
        check_port("65536")
    with pytest.raises(NodeError, match="under_score"):
        check_host("under_score")

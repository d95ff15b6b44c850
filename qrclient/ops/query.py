"""C-FIND queries: levels, models, keys, their validation and the identifier sent.

Validation refuses only what no PACS can answer (a malformed date, a wildcard in a UID,
an unknown keyword). What a strict PACS might refuse but many answer (an IMAGE-level
query without the higher-level UIDs) becomes a warning, never a refusal.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from qrclient.net.dictionary import COMMON, all_keywords, keyword_of, tag_of, vr_of
from qrclient.net.identifier import Attribute, Identifier
from qrclient.net.uids import EXPLICIT_LE
from qrclient.ops.dates import DateError, date_range
from qrclient.vocabulary import Level, Model

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


class QueryError(ValueError):
    """Bad query input; the message is one line naming the value and what is expected."""


LEVEL_ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
UNIQUE_KEY = {  # the attribute that identifies a match at each level
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

DEFAULT_RETURN_KEYS: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    Level.STUDY: (
        "PatientName",
        "PatientID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    ),
    Level.SERIES: (
        "StudyInstanceUID",
        "SeriesNumber",
        "Modality",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "SeriesInstanceUID",
    ),
    Level.IMAGE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "InstanceNumber",
        "SOPClassUID",
        "SOPInstanceUID",
    ),
}

QUERY_RETRIEVE_LEVEL = COMMON["QueryRetrieveLevel"][0]
# Keys the user must not set with -k: they are set from --level or by the encoder.
_RESERVED = {
    "QueryRetrieveLevel": "use --level",
    "SpecificCharacterSet": "qrclient sets it automatically from the values given",
}

# Value representations whose values may hold wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_TEXT_VRS = {"LT", "ST", "UT"}  # the only ones where CR, LF, FF and TAB are allowed
_INTEGER_VRS = {
    "US": (0, 0xFFFF),
    "SS": (-0x8000, 0x7FFF),
    "UL": (0, 0xFFFFFFFF),
    "SL": (-0x80000000, 0x7FFFFFFF),
    "UV": (0, 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
}
_FLOAT_VRS = {"FL", "FD"}
_UNMATCHABLE_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT"}
_AS_RE = re.compile(r"^\d{3}[DWMY]$")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CS_RE = re.compile(r"^[A-Z0-9 _*?]*$")
_DA_RE = re.compile(r"^\d{8}$")
_TM_RE = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_IS_RE = re.compile(r"^[+-]?\d+$")
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64 * 5, "UI": 64}


@dataclass(frozen=True, slots=True)
class Key:
    """A query key: a matching value, or ``None`` to ask for it to be returned."""

    tag: int
    keyword: str
    vr: str
    value: str | None = None
    note: str = field(default="", compare=False)  # how a lenient reading changed the value
    # The sequences the key is nested in, outermost first (a query's sequence holds one
    # item): ``ScheduledProcedureStepSequence.Modality`` is Modality in (0040,0100).
    path: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return ".".join((*(_tag_name(tag) for tag in self.path), self.own_name))

    @property
    def own_name(self) -> str:
        return self.keyword or _tag_name(self.tag)


def _tag_name(tag: int) -> str:
    return keyword_of(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


MAX_NESTING = 2  # sequences around a key: worklist queries need one
_ITEM_INDEX = re.compile(r"\[(\d+)\]$")


def _resolve_tag(text: str) -> int:
    """A keyword, or a tag written gggg,eeee / (gggg,eeee) / ggggeeee."""
    stripped = text.strip().strip("()").replace(" ", "")
    match = re.fullmatch(r"([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})", stripped)
    if match:
        return int(match[1], 16) << 16 | int(match[2], 16)
    tag = tag_of(text)
    if tag is not None:
        return tag
    close = difflib.get_close_matches(text, all_keywords(), n=1, cutoff=0.75)
    suggestion = f"; did you mean {close[0]}?" if close else ""
    raise QueryError(
        f"unknown key {text!r}: expected a DICOM keyword (e.g. PatientName) or a tag "
        f"written gggg,eeee{suggestion}"
    )


def parse_key(text: str, *, lenient: bool = False) -> Key:
    """Parse ``KEY`` or ``KEY=VALUE`` as given to ``-k``.

    ``lenient``: read a value whose intent is clear (``Modality=ct``, ``StudyDate=2020``)
    as DICOM wants it, and say so in the key's ``note``.
    """
    name, sep, value = text.partition("=")
    if not name.strip():
        raise QueryError(f"empty key in {text!r}: expected KEY or KEY=VALUE")
    *parents, own = name.strip().split(".")
    if len(parents) > MAX_NESTING:
        raise QueryError(f"{name.strip()}: keys nest at most {MAX_NESTING} sequences deep")
    path = tuple(_sequence_tag(parent) for parent in parents)
    tag, vr = _attribute(own)
    keyword = keyword_of(tag)
    if keyword in _RESERVED:
        raise QueryError(f"{keyword} cannot be given with -k: {_RESERVED[keyword]}")
    key = Key(tag, keyword, vr, value if sep else None, path=path)
    if key.value and lenient:
        key = _leniently(key)
    if key.value:
        _validate_value(key)
    return key


def _attribute(text: str) -> tuple[int, str]:
    """The tag and VR of a data set attribute named by keyword or tag."""
    tag = _resolve_tag(text)
    group = tag >> 16
    if group in (0x0000, 0x0002) or group & 1:  # command, file meta or private
        raise QueryError(f"{text} cannot be a query key: expected a data set attribute")
    vr = vr_of(tag)
    if vr is None:
        raise QueryError(
            f"tag {text} is not in the DICOM dictionary: give a standard keyword or tag"
        )
    return tag, vr


def _sequence_tag(text: str) -> int:
    """A sequence a key is nested in: ``Seq`` or ``Seq[0]`` (a query's sequence has one item)."""
    index = _ITEM_INDEX.search(text)
    if index is not None:
        if index[1] != "0":
            raise QueryError(
                f"{text}: a query's sequence holds one item: write {text[: index.start()]}[0] "
                f"or {text[: index.start()]}"
            )
        text = text[: index.start()]
    tag, vr = _attribute(text)
    if vr != "SQ":
        raise QueryError(f"{text} is not a sequence: only sequences hold nested keys (A.B)")
    return tag


def _leniently(key: Key) -> Key:
    """``key`` with each value read as its VR wants it where the intent is clear: a
    lower-case code string upper-cased, a date typed as people do (see ops.dates)."""
    items = []
    for item in (key.value or "").split("\\"):
        if key.vr == "CS" and not _CS_RE.fullmatch(item) and _CS_RE.fullmatch(item.upper()):
            item = item.upper()
        elif key.vr == "DA" and not _valid_date_item(key, item):
            with suppress(DateError):  # else the validation that follows says what is wrong
                item = date_range(item)
        items.append(item)
    value = "\\".join(items)
    if value == key.value:
        return key
    return replace(key, value=value, note=f"{key.name}={key.value} read as {key.name}={value}")


def _valid_date_item(key: Key, item: str) -> bool:
    try:
        _validate_range(key, item, _check_date, "YYYYMMDD")
    except QueryError:
        return False
    return True


def _validate_value(key: Key) -> None:
    value = key.value or ""
    vr = key.vr
    if vr == "SQ":
        raise QueryError(f"{key.name} is a sequence: give it without a value to have it returned")
    if vr in _UNMATCHABLE_VRS:
        raise QueryError(
            f"{key.name} ({vr}) cannot be matched on: give it without a value to have it returned"
        )
    if any("\udc80" <= c <= "\udcff" for c in value):
        raise QueryError(
            f"{key.name}: the value has bytes that are not valid text in this terminal's "
            "encoding; expected UTF-8 text"
        )
    allowed = "\r\n\f\t" if vr in _TEXT_VRS else ""
    if any((ord(c) < 0x20 or ord(c) == 0x7F) and c not in allowed for c in value):
        raise QueryError(f"{key.name}={value!r}: control characters are not allowed in {vr} values")
    if any(c in value for c in "*?") and vr not in WILDCARD_VRS:
        raise QueryError(
            f"{key.name}={value!r}: wildcards (* ?) only match text attributes; "
            f"{key.name} ({vr}) needs an exact value, a range or a \\-separated list"
        )
    for item in value.split("\\"):
        _validate_item(key, item)


def _validate_item(key: Key, item: str) -> None:
    vr = key.vr
    if vr == "DA":
        _validate_range(key, item, _check_date, "YYYYMMDD")
    elif vr == "TM":
        _validate_range(key, item, _check_time, "HHMMSS")
    elif vr == "DT":
        if not re.fullmatch(r"[0-9.+\- ]+", item):
            raise QueryError(f"{key.name}={item!r}: expected YYYYMMDDHHMMSS or a range a-b")
    elif vr == "UI":
        if not _UID_RE.fullmatch(item) or len(item) > 64:
            raise QueryError(
                f"{key.name}={item!r} is not a UID: expected digits and dots "
                "(at most 64), or a \\-separated list of UIDs"
            )
    elif vr == "CS":
        if not _CS_RE.fullmatch(item):
            raise QueryError(
                f"{key.name}={item!r}: code strings are upper-case letters, digits, "
                f"space or _ (e.g. {item.upper()!r})"
            )
    elif vr == "AS":
        if not _AS_RE.fullmatch(item):
            raise QueryError(f"{key.name}={item!r}: expected an age such as 045Y, 006M or 012D")
    elif vr == "IS" or vr in _INTEGER_VRS:
        low, high = _INTEGER_VRS.get(vr, (-(2**31), 2**31 - 1))
        if not (_IS_RE.fullmatch(item) and item.lstrip("+-").isascii()) or not (
            low <= int(item) <= high
        ):
            raise QueryError(f"{key.name}={item!r}: expected a whole number from {low} to {high}")
    elif vr == "DS" or vr in _FLOAT_VRS:
        try:
            number = float(item)
        except ValueError:
            number = math.nan
        if not item.isascii() or not math.isfinite(number):
            raise QueryError(f"{key.name}={item!r}: expected a finite decimal number")
    limit = _MAX_LENGTH.get(vr)
    if limit and len(item) > limit:
        raise QueryError(f"{key.name}={item[:20]!r}...: longer than {limit} characters")


def _check_date(text: str) -> bool:
    if not _DA_RE.fullmatch(text):
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def _check_time(text: str) -> bool:
    if not _TM_RE.fullmatch(text):
        return False
    hours, minutes, seconds = int(text[:2]), int(text[2:4] or 0), int(text[4:6] or 0)
    return hours < 24 and minutes < 60 and seconds < 61


def _validate_range(key: Key, item: str, check: object, form: str) -> None:
    assert callable(check)
    start, dash, end = item.partition("-")
    bounds = [b for b in (start, end) if b]
    if not bounds or not all(check(b) for b in bounds) or item.count("-") > 1:
        raise QueryError(
            f"{key.name}={item!r} is not a valid value: expected {form}, {form}-{form}, "
            f"{form}- or -{form}"
        )
    if dash and start and end and start > end:
        raise QueryError(f"{key.name}={item!r}: the range ends before it starts")


@dataclass(frozen=True, slots=True)
class Query:
    """A C-FIND request: what to match and what to return, at one level of one model."""

    level: Level
    model: Model = Model.STUDY
    keys: tuple[Key, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sop_class(self) -> str:
        return self.model.find_sop_class

    @property
    def notes(self) -> list[str]:
        """What a lenient reading changed in the values given (see parse_key)."""
        return [k.note for k in self.keys if k.note]

    @property
    def return_keywords(self) -> list[str]:
        """Column names in the order asked."""
        return [k.name for k in self.keys]

    def as_identifier(self) -> Identifier:
        """The identifier to send, with Specific Character Set when values need it."""
        return Identifier.of(
            [
                Attribute(QUERY_RETRIEVE_LEVEL, "CS", self.level.value),
                *(Attribute(k.tag, k.vr, k.value or "") for k in self.keys),
            ]
        )

    def identifier(self) -> Dataset:
        """``as_identifier`` as a pydicom data set (encodes to the same bytes)."""
        from pydicom.dataset import Dataset  # here: pydicom is slow to import

        ds = Dataset()
        needs_utf8 = any(k.value and not k.value.isascii() for k in self.keys)
        if needs_utf8:
            ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = self.level.value
        for key in self.keys:
            if key.vr == "SQ":
                ds.add_new(key.tag, "SQ", [])
            else:
                ds.add_new(key.tag, key.vr, wire_value(key))
        return ds


def wire_value(key: Key) -> object:
    """Text VRs travel as text; binary numbers must be numbers for pydicom to encode."""
    if not key.value:
        return None
    if key.vr in _INTEGER_VRS or key.vr in _FLOAT_VRS:
        convert = float if key.vr in _FLOAT_VRS else int
        numbers = [convert(item) for item in key.value.split("\\")]
        return numbers[0] if len(numbers) == 1 else numbers
    return key.value


def parse_level(text: str) -> Level:
    try:
        return Level(text.upper())
    except ValueError:
        raise QueryError(
            f"unknown level {text!r}: expected patient, study, series or image"
        ) from None


def parse_model(text: str) -> Model:
    try:
        return Model(text.lower())
    except ValueError:
        raise QueryError(f"unknown query model {text!r}: expected patient or study") from None


def build_query(
    level: Level,
    model: Model = Model.STUDY,
    keys: Iterable[str | Key] = (),
    *,
    default_keys: bool = True,
    lenient: bool = False,
) -> Query:
    """Build a query from ``-k`` texts; defaults for the level come first unless disabled.
    ``lenient``: see parse_key (``Query.notes`` says what it changed)."""
    if level is Level.PATIENT and model is Model.STUDY:
        raise QueryError(
            "the study root model has no PATIENT level: use --model patient, or --level study"
        )
    given = [k if isinstance(k, Key) else parse_key(k, lenient=lenient) for k in keys]
    nested = next((k for k in given if k.path), None)
    if nested is not None:
        raise QueryError(
            f"{nested.name}: nested keys are for 'qrclient worklist'; a query/retrieve "
            "C-FIND takes top-level keys"
        )
    defaults = DEFAULT_RETURN_KEYS[level] if default_keys or not given else ()
    ordered = merge_keys(defaults, given)
    return Query(level, model, ordered, tuple(_hierarchy_warnings(level, model, ordered)))


def merge_keys(defaults: Iterable[str], given: Iterable[Key]) -> tuple[Key, ...]:
    """The default return keys, then the keys given: a key given twice with two values
    is refused; each value is checked to fit in one request."""
    merged: dict[tuple[tuple[int, ...], int], Key] = {}
    for name in defaults:
        key = parse_key(name)
        merged[key.path, key.tag] = key
    for key in given:
        previous = merged.get((key.path, key.tag))
        if previous is not None and previous.value and key.value and previous.value != key.value:
            raise QueryError(
                f"{key.name} given twice ({previous.value!r} and {key.value!r}): "
                "use one value, or a \\-separated list"
            )
        merged[key.path, key.tag] = key if key.value or previous is None else previous
    ordered = tuple(merged.values())
    for key in ordered:
        _check_fits(key)
    return ordered


def _check_fits(key: Key) -> None:
    """Refuse, before connecting, a value one request cannot carry: most VRs have a
    16-bit length in explicit VR, so a list of some 1,000 UIDs is already too long."""
    if not key.value:
        return
    try:
        Identifier.of([Attribute(key.tag, key.vr, key.value)]).encode(EXPLICIT_LE)
    except ValueError:
        count = key.value.count("\\") + 1
        size = len(key.value.encode())
        raise QueryError(
            f"{key.name}: {count:,} values of {size:,} bytes in all are more than one "
            "request can carry (65,535 bytes; some 1,000 UIDs): split them over several "
            "queries"
        ) from None


def _hierarchy_warnings(level: Level, model: Model, keys: Sequence[Key]) -> list[str]:
    """Warn where a strict hierarchical PACS would want the unique keys above ``level``."""
    matched = {k.keyword for k in keys if k.value}
    top = Level.PATIENT if model is Model.PATIENT else Level.STUDY
    needed = LEVEL_ORDER[LEVEL_ORDER.index(top) : LEVEL_ORDER.index(level)]
    missing = [UNIQUE_KEY[lv] for lv in needed if UNIQUE_KEY[lv] not in matched]
    if not missing:
        return []
    return [
        f"{level.value}-level query without {' and '.join(missing)}: a strictly "
        "hierarchical PACS may refuse it (many, Orthanc included, answer it)"
    ]

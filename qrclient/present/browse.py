"""Browsing a PACS level by level: the queries and retrieves behind an interactive face.

A match is shown as a row of text (keyword -> value). From a row the next level down is
one C-FIND with the row's unique keys; selected rows become retrieve requests with
their unique keys. Faces call these and hold no DICOM rules of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from qrclient.jobs.retrieve import RetrieveRequest
from qrclient.net.status import FailureStatus
from qrclient.ops.dates import DateError, date_bound
from qrclient.ops.query import QueryError
from qrclient.vocabulary import Level, Model

Row = Mapping[str, str]
# Runs one C-FIND (level, match/return keys) and yields its matches as rows.
FindRows = Callable[[Level, list[str]], AsyncIterator[Row]]

# Returned on every match; not worth showing (the command line hides them too).
HIDDEN_COLUMNS = frozenset({"QueryRetrieveLevel", "RetrieveAETitle", "SpecificCharacterSet"})

# SOP classes are shown by name ("CT Image Storage"): nobody reads them as numbers.
_CLASS_KEYS = frozenset({"SOPClassUID", "SOPClassesInStudy"})

_CHILD = {Level.PATIENT: Level.STUDY, Level.STUDY: Level.SERIES, Level.SERIES: Level.IMAGE}

# The keys that pin a row down at its level, from the top of the hierarchy.
_PATH_KEYS = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("StudyInstanceUID",),
    Level.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    Level.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}

# UIDs per retrieve request: keeps identifiers small for PACSs with short limits.
_UIDS_PER_REQUEST = 100


def text_of(element: DataElement | None) -> str:
    """One line of text for an element: lists joined with backslash, sequences counted."""
    if element is None or element.value is None:
        return ""
    if element.VR == "SQ":
        return f"<{len(element.value)} items>"
    if isinstance(element.value, MultiValue | list):
        return "\\".join(str(v) for v in element.value)
    if isinstance(element.value, bytes):
        return f"<{len(element.value)} bytes>"
    return str(element.value).strip()


def match_row(dataset: Dataset) -> dict[str, str]:
    """A C-FIND match as keyword -> text; elements without a keyword by tag."""
    row: dict[str, str] = {}
    for element in dataset:
        name = element.keyword or f"({element.tag.group:04X},{element.tag.element:04X})"
        if name not in HIDDEN_COLUMNS:
            row[name] = _readable(element.VR, text_of(element))
            if name in _CLASS_KEYS:
                row[name] = "\\".join(UID(uid).name for uid in row[name].split("\\"))
    return row


def _readable(vr: str, text: str) -> str:
    """Dates and times as people write them (they still sort the same); nothing is lost
    (fractions of a second stay): :func:`dataset_of` gives the DICOM text back."""
    if vr == "DA" and len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    if vr == "TM" and len(text) >= 4 and text[:4].isdigit() and ":" not in text:
        return f"{text[:2]}:{text[2:4]}" + (f":{text[4:]}" if len(text) > 4 else "")
    return text


def _dicom_text(vr: str, text: str) -> str:
    """The inverse of :func:`_readable`."""
    if vr == "DA" and len(text) == 10 and text[4] == text[7] == "-":
        return text.replace("-", "")
    if vr == "TM" and ":" in text:
        return text.replace(":", "")
    return text


def _class_uids() -> dict[str, str]:
    from pydicom._uid_dict import UID_dictionary

    return {entry[0]: uid for uid, entry in UID_dictionary.items()}


def dataset_of(row: Row) -> Dataset:
    """A match again as the data set it was (the inverse of :func:`match_row`), for
    writers that take data sets: dates, times and SOP class names back to DICOM text.
    A sequence (shown as a count) is left out; so is a name pydicom does not know."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    names: dict[str, str] | None = None
    dataset = Dataset()
    for name, text in row.items():
        if name.startswith("("):
            tag = int(name[1:5] + name[6:10], 16)
            vr = "LO"
        else:
            known = tag_for_keyword(name)
            if known is None:
                continue  # not an attribute: a column of the face's own (Here)
            tag, vr = known, dictionary_VR(known)
        if vr == "SQ":
            continue
        value = _dicom_text(vr, text)
        if name in _CLASS_KEYS:
            names = names if names is not None else _class_uids()
            value = "\\".join(names.get(part, part) for part in value.split("\\"))
        dataset.add_new(tag, vr, value if value else None)
    return dataset


def level_noun(level: Level, count: int) -> str:
    """``study`` / ``studies``: what ``count`` matches at ``level`` are called."""
    if count == 1:
        return level.value.lower()
    return {Level.STUDY: "studies", Level.SERIES: "series"}.get(level, f"{level.value.lower()}s")


def child_level(level: Level) -> Level | None:
    """The level one down, or None below IMAGE."""
    return _CHILD.get(level)


def drill_keys(level: Level, model: Model, row: Row) -> tuple[Level, list[str]]:
    """The level and match keys listing what is under ``row`` (a match at ``level``)."""
    child = child_level(level)
    if child is None:
        raise QueryError("an image has no level below it")
    names = list(_PATH_KEYS[level])
    if model is Model.PATIENT and level is not Level.PATIENT:
        names.insert(0, "PatientID")
    keys = []
    for name in names:
        value = row.get(name, "")
        if not value:
            raise QueryError(f"the row has no {name}: the peer did not return it")
        keys.append(f"{name}={value}")
    return child, keys


@dataclass(frozen=True, slots=True)
class Selection:
    """One retrieve request built from selected rows at ``level``."""

    level: Level
    request: RetrieveRequest
    count: int

    def label(self, parent: str = "") -> str:
        """``3 series``, or ``3 series of <parent>`` given a name for their parent."""
        text = f"{self.count} {level_noun(self.level, self.count)}"
        return f"{text} of {parent}" if parent else text


def retrieve_selections(level: Level, model: Model, rows: Iterable[Row]) -> list[Selection]:
    """Retrieve requests for the rows selected at ``level``: UID lists grouped by parent."""
    path = _PATH_KEYS[level]
    if model is Model.PATIENT and level is not Level.PATIENT:
        path = ("PatientID", *path)
    # UIDs per parent, each once, in the order selected (a dict: fast for 10k rows).
    groups: dict[tuple[str, ...], dict[str, None]] = {}
    for row in rows:
        values = tuple(row.get(name, "") for name in path)
        if not all(values):
            missing = next(n for n, v in zip(path, values, strict=True) if not v)
            raise QueryError(f"a selected row has no {missing}: cannot retrieve it")
        groups.setdefault(values[:-1], {})[values[-1]] = None
    selections = []
    for parents, members in groups.items():
        uids = list(members)
        for start in range(0, len(uids), _UIDS_PER_REQUEST):
            chunk = uids[start : start + _UIDS_PER_REQUEST]
            keys = [f"{n}={v}" for n, v in zip(path[:-1], parents, strict=True)]
            keys.append(f"{path[-1]}=" + "\\".join(chunk))
            request = RetrieveRequest.parse(level, model, keys)
            selections.append(Selection(level, request, len(chunk)))
    return selections


@dataclass(frozen=True, slots=True)
class QueryForm:
    """What a query form holds: the usual search fields plus free ``KEY=VALUE`` text."""

    patient_name: str = ""
    patient_id: str = ""
    accession_number: str = ""
    date_from: str = ""
    date_to: str = ""
    modalities: str = ""
    description: str = ""
    extra: str = ""  # KEY=VALUE pairs separated by spaces or commas


def form_keys(level: Level, form: QueryForm) -> list[str]:
    """Match keys for the filled-in fields (empty form: everything at the level)."""
    keys: list[str] = []
    modality = "Modality" if level in (Level.SERIES, Level.IMAGE) else "ModalitiesInStudy"
    description = "SeriesDescription" if level is Level.SERIES else "StudyDescription"
    for name, value in (
        ("PatientName", form.patient_name),
        ("PatientID", form.patient_id),
        ("AccessionNumber", form.accession_number),
        (modality, form.modalities.upper()),
        (description, form.description),
    ):
        if value.strip():
            keys.append(f"{name}={value.strip()}")
    try:  # "2024" from, "2024-06" to: the first day of one, the last of the other
        start, end = date_bound(form.date_from), date_bound(form.date_to, end=True)
    except DateError as exc:
        raise QueryError(f"StudyDate: {exc}") from None
    if start or end:
        keys.append(f"StudyDate={start}-{end}" if start != end else f"StudyDate={start}")
    keys.extend(_extra_keys(form.extra))
    return keys


def _extra_keys(text: str) -> list[str]:
    items = [i.strip() for i in text.replace(",", " ").split()]
    return [i for i in items if i]


def unique_key(level: Level) -> str:
    """The attribute that identifies a match at ``level``."""
    return _PATH_KEYS[level][-1]


def path_label(level: Level, row: Row) -> str:
    """A short name for a row in a breadcrumb."""
    if level is Level.PATIENT:
        return row.get("PatientName") or row.get("PatientID", "?")
    if level is Level.STUDY:
        parts = [row.get("StudyDate", ""), row.get("StudyDescription", "")]
        text = " ".join(p for p in parts if p)
        return text or row.get("StudyInstanceUID", "?")[-16:]
    if level is Level.SERIES:
        parts = [
            row.get("SeriesNumber", ""),
            row.get("Modality", ""),
            row.get("SeriesDescription", ""),
        ]
        text = " ".join(p for p in parts if p)
        return text or row.get("SeriesInstanceUID", "?")[-16:]
    return row.get("InstanceNumber") or row.get("SOPInstanceUID", "?")[-16:]


def count_column(level: Level) -> str | None:
    """The returned attribute saying how many instances a row holds, if any."""
    return {
        Level.STUDY: "NumberOfStudyRelatedInstances",
        Level.SERIES: "NumberOfSeriesRelatedInstances",
    }.get(level)


def ordered_columns(level: Level, keywords: Sequence[str]) -> list[str]:
    """Columns to show, in the order asked, without the ones every match repeats."""
    shown = [k for k in keywords if k not in HIDDEN_COLUMNS]
    # Long UIDs last: the columns people read come first in a narrow terminal.
    long = [k for k in shown if k.endswith("UID") and k not in _CLASS_KEYS]
    return [k for k in shown if k not in long] + long


async def remote_totals(find_rows: FindRows, study_uids: Sequence[str]) -> dict[str, int]:
    """Instances the peer holds per study and per series (one C-FIND at each level).

    A PACS that does not compute the counts (they are optional: DCMTK's dcmqrscp returns
    none) has the instances of the studies left uncounted listed at IMAGE level instead.
    """
    totals: dict[str, int] = {}
    for level, uid_key, count_key in (
        (Level.STUDY, "StudyInstanceUID", "NumberOfStudyRelatedInstances"),
        (Level.SERIES, "SeriesInstanceUID", "NumberOfSeriesRelatedInstances"),
    ):
        async for row in _by_study_lists(find_rows, level, study_uids, [uid_key, count_key]):
            uid, count = row.get(uid_key, ""), row.get(count_key, "")
            if uid and count.isdigit():
                totals[uid] = int(count)
    uncounted = [uid for uid in study_uids if uid not in totals]
    asked = set(uncounted)
    keys = ["SeriesInstanceUID", "SOPInstanceUID"]
    async for row in _by_study_lists(find_rows, Level.IMAGE, uncounted, keys):
        study, series = row.get("StudyInstanceUID", ""), row.get("SeriesInstanceUID", "")
        if study in asked and series and row.get("SOPInstanceUID"):
            totals[study] = totals.get(study, 0) + 1
            totals[series] = totals.get(series, 0) + 1
    return totals


async def _by_study_lists(
    find_rows: FindRows, level: Level, study_uids: Sequence[str], keys: list[str]
) -> AsyncIterator[Row]:
    """The rows of one C-FIND per bounded list of study UIDs (a PACS may refuse a long
    identifier); a PACS that refuses a list is asked one study at a time."""
    for start in range(0, len(study_uids), _UIDS_PER_REQUEST):
        chunk = study_uids[start : start + _UIDS_PER_REQUEST]
        uid_list = "\\".join(chunk)
        answered = False
        try:
            async for row in find_rows(level, [f"StudyInstanceUID={uid_list}", *keys]):
                answered = True
                yield row
        except FailureStatus:
            if len(chunk) == 1 or answered:  # asking again would count twice
                raise
            for uid in chunk:
                async for row in find_rows(level, [f"StudyInstanceUID={uid}", *keys]):
                    yield row

"""The demo archive as a PACS sees it: one record per patient, study, series and image.

Each record holds the attributes of its level and of the levels above it, plus the
computed ones (counts, ModalitiesInStudy, SOPClassesInStudy), so a C-FIND identifier
matches and is answered from one record, and a C-GET / C-MOVE identifier selects the
instances under the matching records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from qrclient.ops.matching import Value, matches
from qrclient.ops.query import LEVEL_ORDER, UNIQUE_KEY

LEVELS: tuple[str, ...] = LEVEL_ORDER  # Level is a StrEnum: "PATIENT", ... as in requests
UNIQUE_KEYS = {str(level): key for level, key in UNIQUE_KEY.items()}
# The stored attributes of each level (taken from the level's first instance).
_STORED = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
    ),
    "SERIES": (
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
    ),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns"),
}
# Never matched nor returned from records: they describe the message, not the data.
_MESSAGE_KEYWORDS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet"})


class QueryRefused(ValueError):
    """An identifier the demo cannot answer; ``status`` is the C-FIND/GET/MOVE failure."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Record:
    attributes: dict[str, Value]
    instances: list[Dataset] = field(default_factory=list)


class Catalogue:
    """Records of every level built once from ``datasets`` (read-only afterwards)."""

    def __init__(self, datasets: Sequence[Dataset], ae_title: str) -> None:
        self.ae_title = ae_title
        self.records: dict[str, list[Record]] = {level: [] for level in LEVELS}
        for depth, level in enumerate(LEVELS):
            groups: dict[tuple[str, ...], list[Dataset]] = {}
            for ds in datasets:
                path = tuple(str(ds.get(UNIQUE_KEYS[up], "")) for up in LEVELS[: depth + 1])
                groups.setdefault(path, []).append(ds)
            for members in groups.values():
                self.records[level].append(self._record(level, members))

    def _record(self, level: str, members: list[Dataset]) -> Record:
        first = members[0]
        attributes: dict[str, Value] = {
            "RetrieveAETitle": self.ae_title,
            "InstanceAvailability": "ONLINE",
        }
        for up in LEVELS[: LEVELS.index(level) + 1]:
            for keyword in _STORED[up]:
                attributes[keyword] = _plain(first.get(keyword))
        series = {str(ds.SeriesInstanceUID) for ds in members}
        studies = {str(ds.StudyInstanceUID) for ds in members}
        if level == "PATIENT":
            attributes["NumberOfPatientRelatedStudies"] = len(studies)
            attributes["NumberOfPatientRelatedSeries"] = len(series)
            attributes["NumberOfPatientRelatedInstances"] = len(members)
        elif level == "STUDY":
            attributes["ModalitiesInStudy"] = sorted({str(ds.Modality) for ds in members})
            attributes["SOPClassesInStudy"] = sorted({str(ds.SOPClassUID) for ds in members})
            attributes["NumberOfStudyRelatedSeries"] = len(series)
            attributes["NumberOfStudyRelatedInstances"] = len(members)
        elif level == "SERIES":
            attributes["NumberOfSeriesRelatedInstances"] = len(members)
        return Record(attributes, members)

    def matching(self, identifier: Dataset, level: str) -> Iterator[Record]:
        """The records of ``level`` that every matching key of ``identifier`` matches."""
        if level not in self.records:
            raise QueryRefused(
                f"QueryRetrieveLevel {level!r}: expected one of {', '.join(LEVELS)}", 0xA900
            )
        keys = [
            (elem.keyword, elem.VR, _query_text(elem))
            for elem in identifier
            if elem.keyword and elem.keyword not in _MESSAGE_KEYWORDS and elem.VR != "SQ"
        ]
        for record in self.records[level]:
            if all(
                matches(text, vr, record.attributes[keyword])
                for keyword, vr, text in keys
                if text and keyword in record.attributes
            ):
                yield record

    def answer(self, identifier: Dataset, level: str, record: Record) -> Dataset:
        """The C-FIND response: every key of ``identifier`` with the record's value."""
        response = Dataset()
        response.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 covers every name we hold
        response.QueryRetrieveLevel = level
        unique = UNIQUE_KEYS[level]
        if unique not in identifier:  # the level's unique key is always returned
            setattr(response, unique, record.attributes[unique])
        for elem in identifier:
            if elem.keyword in _MESSAGE_KEYWORDS or elem.tag.group == 0x0002:
                continue
            value = record.attributes.get(elem.keyword) if elem.keyword else None
            response.add(_element(elem, value))
        return response

    def select(self, identifier: Dataset, level: str) -> list[Dataset]:
        """The instances a C-GET / C-MOVE identifier asks for, in archive order."""
        return [ds for record in self.matching(identifier, level) for ds in record.instances]


def _plain(value: object) -> Value:
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return [str(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return str(value)


def _query_text(elem: DataElement) -> str:
    """An identifier's value as query text; pydicom splits ``\\`` lists, so join them."""
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _element(requested: DataElement, value: Value | None) -> DataElement:
    if requested.VR == "SQ" or value is None or value == "":
        empty: object = [] if requested.VR == "SQ" else None
        return DataElement(requested.tag, requested.VR, empty)
    if isinstance(value, int) and requested.VR in ("IS", "DS"):
        return DataElement(requested.tag, requested.VR, str(value))
    return DataElement(requested.tag, requested.VR, value)

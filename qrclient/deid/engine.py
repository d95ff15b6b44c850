"""Pseudonymising one decoded data set, following PS3.15's Basic Profile, with dicognito.

Every element goes to the first of these handlers that takes it:

1. Profile (ours, from ``profile``): private attributes, overlays, curves, and what
   Table E.1-1 removes, empties or dummies that dicognito leaves.
2. Keyed (ours): every UID but class, transfer syntax and DICOM-defined ones, the
   patient's ID and name, accession numbers. Their pseudonyms come from the store's
   key (``key``), never from the library, so they stay the same across runs and
   library versions, and a retrieve can compute them to skip what it stored.
3. Dates: kept (``--keep-dates``), or moved back by the patient's number of days,
   times with them, by dicognito's ``DateTimeAnonymizer``. A date that does not
   parse is emptied, never kept.
4. dicognito's own: other person names, IDs, addresses, institution and station names
   (seeded from the key: also the same across runs).

Then the data set is marked as the profile asks: De-identification Method Code
Sequence (Basic Profile, and the date option), Longitudinal Temporal Information
Modified; dicognito adds "DICOGNITO" to De-identification Method, and sets Patient
Identity Removed to YES only where Burned In Annotation is NO: pixel data are never
changed here (burned-in text is out of scope), so nothing claims more.

Anything that fails raises: the sink then refuses the instance, it is never stored
half done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from qrclient.deid.key import PseudonymKey
from qrclient.deid.linkage import LinkageRow
from qrclient.deid.marker import Dates
from qrclient.deid.profile import DUMMIED, EMPTIED, REMOVED

PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020
ACCESSION_NUMBER = 0x00080050
SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID = 0x00080018, 0x0020000D, 0x0020000E
TRANSFER_SYNTAX_UID = 0x00020010
DICOM_UID_ROOT = "1.2.840.10008."  # UIDs the standard defines identify nobody
DUMMY_TEXT = "REMOVED"
_TEXT_VRS = frozenset(("AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "UR"))
_BINARY_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "UN"))


def _tags(keywords: list[str]) -> frozenset[int]:
    found = (tag_for_keyword(keyword) for keyword in keywords)
    return frozenset(tag for tag in found if tag is not None)


_REMOVED, _EMPTIED, _DUMMIED = _tags(REMOVED), _tags(EMPTIED), _tags(DUMMIED)


class Pseudonymizer:
    """Pseudonymises data sets in place under one key and date treatment."""

    def __init__(self, key: PseudonymKey, dates: Dates) -> None:
        self.key = key
        self.dates = dates
        self._keyed = _Keyed(key)
        self._dates = _Dates(kept=dates.kept)
        self._anonymizer = Anonymizer(seed=key.seed())
        # Each added handler goes first: added in the reverse of the order they run.
        for handler in (self._dates, self._keyed, _Profile()):
            self._anonymizer.add_element_handler(handler)

    def apply(self, dataset: Dataset) -> LinkageRow:
        """Pseudonymise ``dataset`` (with its file meta) in place; the row linking it."""
        patient_id = _text(dataset.get(PATIENT_ID))
        patient_name = _text(dataset.get(PATIENT_NAME))
        accession = _text(dataset.get(ACCESSION_NUMBER))
        study = _text(dataset.get(STUDY_INSTANCE_UID))
        series = _text(dataset.get(SERIES_INSTANCE_UID))
        instance = _text(dataset.get(SOP_INSTANCE_UID))
        # A patient is their ID; without one, their name.
        patient = patient_id or f"name:{patient_name}"
        pseudonym = self.key.patient(patient)
        days = 0 if self.dates.kept else self.key.date_shift(patient, self.dates.most)
        self._keyed.begin(dataset, pseudonym)
        self._dates.shift_by(days)
        self._anonymizer.anonymize(dataset)
        _record_method(dataset, self.dates)
        key = self.key
        return LinkageRow(
            patient_id,
            patient_name,
            accession,
            study,
            series,
            instance,
            pseudonym,
            key.accession(accession) if accession else "",
            key.uid(study) if study else "",
            key.uid(series) if series else "",
            key.uid(instance) if instance else "",
            days,
        )


def _text(element: DataElement | None) -> str:
    if element is None or element.value is None:
        return ""
    return str(element.value).strip(" \x00")


class _Keyed(ElementAnonymizer):
    """UIDs, the patient's ID and name, accession numbers: the key's pseudonyms."""

    def __init__(self, key: PseudonymKey) -> None:
        self._key = key
        self._top: Dataset | None = None
        self._pseudonym = ""

    def begin(self, dataset: Dataset, pseudonym: str) -> None:
        self._top, self._pseudonym = dataset, pseudonym

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        tag = data_element.tag
        if data_element.VR == "UI":
            if data_element.value and not _kept_uid(tag):
                data_element.value = _each(data_element.value, self._uid)
            return True
        if tag == PATIENT_ID:
            top = dataset is self._top
            data_element.value = self._pseudonym if top else _each(data_element.value, self._id)
            return True
        if tag == PATIENT_NAME and dataset is self._top:
            data_element.value = self._pseudonym
            return True
        if tag == ACCESSION_NUMBER:
            data_element.value = _each(data_element.value, self._accession)
            return True
        return False

    def _uid(self, value: str) -> str:
        return value if value.startswith(DICOM_UID_ROOT) else self._key.uid(value)

    def _id(self, value: str) -> str:
        return self._key.patient(value) if value else ""

    def _accession(self, value: str) -> str:
        return self._key.accession(value) if value else ""

    def describe_actions(self) -> Iterator[str]:
        yield "Replace UIDs, Patient ID and Name, Accession Number with keyed pseudonyms"


def _kept_uid(tag: int) -> bool:
    """Class and transfer syntax UIDs name kinds of objects, not people: kept."""
    return tag == TRANSFER_SYNTAX_UID or keyword_for_tag(tag).endswith("ClassUID")


def _each(value: object, change: Callable[[str], str]) -> object:
    """``change`` applied to each value of a possibly multi-valued element."""
    if value is None:
        return value
    if isinstance(value, MultiValue | list | tuple):
        return [change(str(v)) for v in value]
    return change(str(value))


class _Profile(ElementAnonymizer):
    """Private attributes, overlays, curves and the rows of ``profile``."""

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        tag = data_element.tag
        group = tag >> 16
        if tag in _REMOVED or group & 1 or _overlay_or_curve(group, tag & 0xFFFF):
            del dataset[tag]
            return True
        if tag in _EMPTIED:
            data_element.value = Sequence() if data_element.VR == "SQ" else None
            return True
        if tag in _DUMMIED:
            data_element.value = _dummy(data_element.VR)
            return True
        return False

    def describe_actions(self) -> Iterator[str]:
        yield "Remove private attributes, overlays, curves and PS3.15 E.1-1's free text"


def _overlay_or_curve(group: int, element: int) -> bool:
    if 0x5000 <= group <= 0x501E:  # curves: the whole group
        return True
    return 0x6000 <= group <= 0x601E and element in (0x3000, 0x4000)  # overlay data, comments


def _dummy(vr: str) -> object:
    if vr in _TEXT_VRS:
        return DUMMY_TEXT
    if vr in ("DS", "IS"):
        return "0"
    if vr in _BINARY_VRS:
        return b"\x00\x00"
    return None if vr in ("DA", "DT", "TM", "SQ", "PN", "UI") else 0


class _Dates(ElementAnonymizer):
    """Dates kept, or moved back by the current patient's days (times with them)."""

    def __init__(self, *, kept: bool) -> None:
        self._kept = kept
        self._shifters: dict[int, DateTimeAnonymizer] = {}
        self._shifter: DateTimeAnonymizer | None = None

    def shift_by(self, days: int) -> None:
        shifter = self._shifters.get(days)
        if shifter is None:
            shifter = self._shifters[days] = DateTimeAnonymizer(-24 * days)
        self._shifter = shifter

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.VR not in ("DA", "DT"):
            return False
        if self._kept or not data_element.value:
            return True
        assert self._shifter is not None
        try:
            self._shifter(dataset, data_element)
        except (ValueError, TypeError, OverflowError):
            data_element.value = None  # a date that does not parse: nothing of it kept
        return True

    def describe_actions(self) -> Iterator[str]:
        yield "Keep dates, or shift them back per patient"


def _record_method(dataset: Dataset, dates: Dates) -> None:
    """The profile and option applied (PS3.15 E.1.1, codes of CID 7050)."""
    codes = [("113100", "Basic Application Confidentiality Profile")]
    if dates.kept:
        codes.append(("113106", "Retain Longitudinal Temporal Information Full Dates Option"))
    else:
        codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    dataset.DeidentificationMethodCodeSequence = Sequence(items)
    dataset.LongitudinalTemporalInformationModified = "UNMODIFIED" if dates.kept else "MODIFIED"

"""One cohort row to its studies: a STUDY-level C-FIND, checked, split past the cap.

The query is Study Root at STUDY level, where PatientID, AccessionNumber, StudyDate
and StudyInstanceUID are keys of the level itself (PS3.4 C.6.2): nothing above the
level is relied on. A PACS may still ignore a key, so each match is checked here too
(``find_distinct``'s AnswerCheck, and a selecting key the match does not return drops
it, as the retrieve's planner does). ModalitiesInStudy is optional for an SCP: it is
asked as a matching key only when single, and checked on what comes back; where the
PACS does not return it, a SERIES-level C-FIND of the study's Modality decides.

Past the result cap. A PACS may stop a C-FIND early: Orthanc's ``LimitFindResults``
answers Cancel (0xFE00), others Out of Resources (0xA700), others just stop at a
number (``cap``, e.g. what ``doctor`` found). Such a query is split by StudyDate in
two halves, recursively, until each part comes back whole, and the parts are merged
(a study once). A single day still capped cannot be split: the row is marked
incomplete. Studies without a StudyDate match no range, so splitting a query that
gave none may miss them; ``notes`` says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from qrclient.net.association import Association
from qrclient.net.dictionary import COMMON
from qrclient.net.status import FailureStatus
from qrclient.ops.find import FindState, find_distinct
from qrclient.ops.query import Key, build_query
from qrclient.vocabulary import Level, Model

EARLIEST = datetime.date(1900, 1, 1)  # an open range's start, when split
OUT_OF_RESOURCES = 0xA700
_RETURNED = (
    "StudyInstanceUID",
    "PatientID",
    "AccessionNumber",
    "StudyDate",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
)


@dataclass(frozen=True, slots=True)
class FoundStudy:
    uid: str
    patient_id: str = ""
    accession: str = ""
    date: str = ""
    instances: int | None = None  # NumberOfStudyRelatedInstances, where the PACS says


@dataclass(slots=True)
class Resolution:
    studies: list[FoundStudy] = field(default_factory=list)
    queries: int = 0  # C-FINDs sent at STUDY level
    split: bool = False  # the query came back capped and was split by date
    incomplete: bool = False  # some part still came back capped: studies may be missing
    dropped: int = 0  # matches whose keys differ from those asked


def _key(keyword: str, value: str | None = None) -> Key:
    tag, vr = COMMON[keyword]
    return Key(tag, keyword, vr, value)


def _day(text: str) -> datetime.date:
    return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _range(low: datetime.date, high: datetime.date) -> str:
    return f"{low:%Y%m%d}" if low == high else f"{low:%Y%m%d}-{high:%Y%m%d}"


class Resolver:
    """Resolves rows over one association that accepted Study Root C-FIND.

    ``cap``: a number of matches at which a PACS stops without saying so (None: only
    a Cancel or Out of Resources status says it). ``split``: False to keep a capped
    answer as it is (marked incomplete). ``today`` closes open date ranges.
    """

    def __init__(
        self,
        association: Association,
        *,
        cap: int | None = None,
        split: bool = True,
        today: Callable[[], datetime.date] = datetime.date.today,
    ) -> None:
        self.association = association
        self.cap = cap
        self.split = split
        self.today = today
        self.notes: list[str] = []  # said once per job

    async def resolve(self, item: Mapping[str, str]) -> Resolution:
        resolution = Resolution()
        wanted_modalities = set(filter(None, item.get("ModalitiesInStudy", "").split("\\")))
        keys = [
            _key(keyword, item[keyword])
            for keyword in ("StudyInstanceUID", "PatientID", "AccessionNumber")
            if item.get(keyword)
        ]
        if len(wanted_modalities) == 1:
            keys.append(_key("ModalitiesInStudy", next(iter(wanted_modalities))))
        date = item.get("StudyDate", "")
        found = await self._dated(resolution, keys, date)
        merged: dict[str, tuple[FoundStudy, str]] = {}
        for study, modalities in found:
            merged.setdefault(study.uid, (study, modalities))
        for study, modalities in merged.values():
            if wanted_modalities and not await self._has_modality(
                study, modalities, wanted_modalities
            ):
                continue
            resolution.studies.append(study)
        return resolution

    async def _dated(
        self, resolution: Resolution, keys: list[Key], date: str
    ) -> list[tuple[FoundStudy, str]]:
        """The matches of ``keys`` with StudyDate ``date``, split while capped."""
        found, capped = await self._find(resolution, [*keys, _key("StudyDate", date or None)])
        if not capped:
            return found
        low_text, _, high_text = date.partition("-") if "-" in date else (date, "", date)
        low = _day(low_text) if low_text else EARLIEST
        high = _day(high_text) if high_text else self.today()
        if not self.split or low >= high:
            resolution.incomplete = True
            self._note(
                "the PACS cut a look-up short at its result cap"
                + ("" if self.split else " (--no-split)")
                + ": its row may miss studies (status in the report)"
            )
            return found
        if not resolution.split and not date:
            self._note(
                "a query split by StudyDate cannot match studies without a StudyDate: "
                "such studies, if the PACS has any, are not retrieved"
            )
        if not resolution.split:
            self._note(
                "the PACS cut a look-up short at its result cap: it was split by StudyDate "
                "until each part came back whole (--no-split keeps it as it is)"
            )
        resolution.split = True
        middle = low + (high - low) // 2
        first = await self._dated(resolution, keys, _range(low, middle))
        second = await self._dated(resolution, keys, _range(middle + datetime.timedelta(1), high))
        return first + second

    async def _find(
        self, resolution: Resolution, keys: list[Key]
    ) -> tuple[list[tuple[FoundStudy, str]], bool]:
        """The checked matches of one C-FIND, and whether it came back capped."""
        given = {k.keyword for k in keys}
        query = build_query(
            Level.STUDY,
            Model.STUDY,
            [*keys, *(_key(k) for k in _RETURNED if k not in given)],
            default_keys=False,
        )
        selecting = {
            k.keyword: k.value for k in keys if k.keyword in ("PatientID", "AccessionNumber")
        }
        resolution.queries += 1
        found: list[tuple[FoundStudy, str]] = []
        try:
            async with find_distinct(self.association, query) as matches:
                async for match in matches:
                    values = {k: _text(match, k) for k in _RETURNED}
                    if not values["StudyInstanceUID"] or any(
                        values[k] != v for k, v in selecting.items()
                    ):
                        resolution.dropped += 1
                        continue
                    count = values["NumberOfStudyRelatedInstances"]
                    found.append(
                        (
                            FoundStudy(
                                values["StudyInstanceUID"],
                                values["PatientID"],
                                values["AccessionNumber"],
                                values["StudyDate"],
                                int(count) if count.isdigit() else None,
                            ),
                            values["ModalitiesInStudy"],
                        )
                    )
        except FailureStatus as exc:
            if exc.status.code != OUT_OF_RESOURCES or not self.association.is_open:
                raise
            return found, True  # too many to answer at all: split
        outcome = matches.outcome
        resolution.dropped += outcome.unmatched
        capped = outcome.state is FindState.TRUNCATED or (
            self.cap is not None and outcome.count >= self.cap
        )
        return found, capped

    async def _has_modality(self, study: FoundStudy, returned: str, wanted: set[str]) -> bool:
        """Whether the study has one of the ``wanted`` modalities: by ModalitiesInStudy
        where the PACS returned it, else by its series' Modality."""
        modalities = set(filter(None, returned.split("\\")))
        if not modalities:
            query = build_query(
                Level.SERIES,
                Model.STUDY,
                [_key("StudyInstanceUID", study.uid), _key("SeriesInstanceUID"), _key("Modality")],
                default_keys=False,
            )
            async with find_distinct(self.association, query) as series:
                async for match in series:
                    if _text(match, "StudyInstanceUID") in ("", study.uid):
                        modalities.add(_text(match, "Modality"))
        return bool(modalities & wanted)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _text(match: object, keyword: str) -> str:
    """A match's value as text (multiple values ``\\``-joined); "" if absent."""
    value = getattr(match, keyword, None)
    if value is None:
        return ""
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()

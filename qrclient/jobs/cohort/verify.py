"""The store against the PACS, series by series: what it has that the store lacks.

The PACS's count of a series is NumberOfSeriesRelatedInstances where it computes that
optional key, else the number of instances an IMAGE-level C-FIND lists with the
series' and study's UIDs (dcmqrscp computes no such key, and wants the series' UID at
IMAGE level). The store's count asks the disk: an instance counts as here only while
its file is (``Store.series_counts``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from qrclient.net.association import Association
from qrclient.net.dictionary import COMMON
from qrclient.ops.find import find_values
from qrclient.ops.query import Key, build_query
from qrclient.vocabulary import Level, Model


class SeriesIndex(Protocol):
    """How many instances of a series are here (a Store, or one pseudonymising)."""

    def series_counts(self, series_uid: str) -> int: ...


@dataclass(frozen=True, slots=True)
class SeriesCount:
    study_uid: str
    series_uid: str
    on_pacs: int
    here: int

    @property
    def missing(self) -> int:
        return max(0, self.on_pacs - self.here)


def _key(keyword: str, value: str | None = None) -> Key:
    tag, vr = COMMON[keyword]
    return Key(tag, keyword, vr, value)


async def series_on_pacs(association: Association, study_uid: str) -> dict[str, int]:
    """Instances per series of the study on the PACS (Study Root C-FINDs)."""
    query = build_query(
        Level.SERIES,
        Model.STUDY,
        [
            _key("StudyInstanceUID", study_uid),
            _key("SeriesInstanceUID"),
            _key("NumberOfSeriesRelatedInstances"),
        ],
        default_keys=False,
    )
    counts: dict[str, int] = {}
    uncounted: list[str] = []
    for match in await find_values(association, query):
        series = match["SeriesInstanceUID"]
        if not series or match["StudyInstanceUID"] not in ("", study_uid) or series in counts:
            continue
        number = match["NumberOfSeriesRelatedInstances"].strip()
        if number.isdigit():
            counts[series] = int(number)
        elif series not in uncounted:
            uncounted.append(series)
    for series in uncounted:
        counts[series] = len(await instances_on_pacs(association, study_uid, series))
    return counts


async def instances_on_pacs(association: Association, study_uid: str, series_uid: str) -> set[str]:
    """The SOP Instance UIDs of one series on the PACS (an IMAGE-level C-FIND)."""
    query = build_query(
        Level.IMAGE,
        Model.STUDY,
        [
            _key("StudyInstanceUID", study_uid),
            _key("SeriesInstanceUID", series_uid),
            _key("SOPInstanceUID"),
        ],
        default_keys=False,
    )
    return {
        match["SOPInstanceUID"]
        for match in await find_values(association, query)
        if match["SOPInstanceUID"]
        and match["StudyInstanceUID"] in ("", study_uid)
        and match["SeriesInstanceUID"] in ("", series_uid)
    }


async def compare(
    association: Association, index: SeriesIndex, study_uids: Iterable[str]
) -> list[SeriesCount]:
    """Each series of the studies: the PACS's count and the store's."""
    compared: list[SeriesCount] = []
    for study in study_uids:
        for series, count in (await series_on_pacs(association, study)).items():
            compared.append(SeriesCount(study, series, count, index.series_counts(series)))
    return compared


def short(counts: Sequence[SeriesCount]) -> list[SeriesCount]:
    return [count for count in counts if count.missing]


def describe(counts: Sequence[SeriesCount]) -> str:
    """One line for the series that stay short."""
    missing = short(counts)
    shown = "; ".join(
        f"series {c.series_uid}: {c.here} of {c.on_pacs} instances here" for c in missing[:3]
    )
    more = f"; and {len(missing) - 3} more series" if len(missing) > 3 else ""
    return f"{shown}{more}"

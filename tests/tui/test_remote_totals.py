"""Counting the instances a PACS holds per study and series, whatever it computes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from qrclient.net.status import FailureStatus, Service, Status
from qrclient.present.browse import Row, remote_totals
from qrclient.vocabulary import Level

pytestmark = pytest.mark.anyio

# Two studies of two series of two instances each.
ARCHIVE = [
    (f"1.{s}", f"1.{s}.{se}", f"1.{s}.{se}.{i}") for s in (1, 2) for se in (1, 2) for i in (1, 2)
]


def uids_asked(keys: list[str]) -> list[str]:
    return keys[0].removeprefix("StudyInstanceUID=").split("\\")


async def test_a_pacs_without_counts_has_its_instances_counted() -> None:
    asked: list[tuple[Level, int]] = []

    async def find_rows(level: Level, keys: list[str]) -> AsyncIterator[Row]:
        studies = uids_asked(keys)
        asked.append((level, len(studies)))
        for study, series, instance in ARCHIVE:
            if study not in studies:
                continue
            if level is Level.STUDY:
                yield {"StudyInstanceUID": study}  # no NumberOfStudyRelatedInstances
            elif level is Level.SERIES:
                yield {"StudyInstanceUID": study, "SeriesInstanceUID": series}
            else:
                yield {
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": series,
                    "SOPInstanceUID": instance,
                }

    totals = await remote_totals(find_rows, ["1.1", "1.2"])
    assert asked == [(Level.STUDY, 2), (Level.SERIES, 2), (Level.IMAGE, 2)]
    assert totals == {"1.1": 4, "1.2": 4, "1.1.1": 2, "1.1.2": 2, "1.2.1": 2, "1.2.2": 2}


async def test_a_pacs_refusing_lists_is_asked_one_study_at_a_time() -> None:
    asked: list[tuple[Level, int]] = []

    async def find_rows(level: Level, keys: list[str]) -> AsyncIterator[Row]:
        studies = uids_asked(keys)
        asked.append((level, len(studies)))
        if len(studies) > 1:
            raise FailureStatus(Status(0xC000, Service.FIND))
        if level is Level.STUDY:
            yield {"StudyInstanceUID": studies[0], "NumberOfStudyRelatedInstances": "4"}

    totals = await remote_totals(find_rows, ["1.1", "1.2"])
    one_by_one = [(level, n) for level in (Level.STUDY, Level.SERIES) for n in (2, 1, 1)]
    assert asked == one_by_one
    assert totals == {"1.1": 4, "1.2": 4}

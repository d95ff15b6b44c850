"""C-FIND checks: does a query work, does the peer cap results, and one small instance.

A STUDY-level query for every study (UIDs and instance counts only) shows whether
C-FIND works, whether the peer truncates its answers (Orthanc ends a capped answer
with status 0xFE00 instead of Success) and whether it repeats matches (some send one
STUDY-level response per instance). The smallest study then gives one instance for
the C-GET and C-MOVE checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrclient.jobs.doctor.report import Check, State, Stopwatch
from qrclient.net.association import open_association
from qrclient.net.errors import DicomNetworkError
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest
from qrclient.net.settings import Settings
from qrclient.net.status import FailureStatus
from qrclient.ops.find import FindOutcome, FindState, find, find_distinct
from qrclient.ops.query import build_query
from qrclient.vocabulary import Level, Model

FIND = "C-FIND"
CAP = "C-FIND result cap"
DUPLICATES = "C-FIND duplicates"
READ_AT_MOST = 2000  # studies read for the cap check; a cap below this is found


@dataclass(frozen=True, slots=True)
class Sample:
    """One instance to move, with the UIDs a STUDY root IMAGE-level request needs."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class FindResult:
    check: Check  # C-FIND works?
    cap: Check  # truncated results?
    duplicates: Check  # the same study more than once?
    sample: Sample | None


def _count(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 1 << 30  # unknown: try such a study last


async def check_find(peer: Peer, settings: Settings, limit: int = READ_AT_MOST) -> FindResult:
    """Query every study (at most ``limit``) and pick one instance of the smallest."""
    query = build_query(
        Level.STUDY,
        Model.STUDY,
        ["StudyInstanceUID", "NumberOfStudyRelatedInstances"],
        default_keys=False,
    )
    watch = Stopwatch()
    studies: list[tuple[int, str]] = []
    try:
        async with (
            open_association(peer, [ContextRequest(Model.STUDY.find_sop_class)], settings) as a,
            find_distinct(a, query) as matches,
        ):
            async for match in matches:
                uid = str(match.get("StudyInstanceUID", ""))
                if uid:
                    count = _count(match.get("NumberOfStudyRelatedInstances", ""))
                    studies.append((count, uid))
                if matches.outcome.count >= limit:
                    break
        outcome = matches.outcome
        seconds = watch.seconds
    except FailureStatus as exc:
        fix = (
            f"{exc.hint}; if the PACS restricts queries by AE title, allow "
            f"{settings.calling_ae} to query"
        ).lstrip("; ")
        return _failed(Check(FIND, State.FAILED, exc.message, fix, watch.seconds))
    except DicomNetworkError as exc:
        return _failed(Check(FIND, State.FAILED, exc.message, exc.hint, watch.seconds))
    works = Check(
        FIND, State.OK, f"STUDY-level query answered: {_studies(outcome.distinct)}", "", seconds
    )
    try:
        # Its own failure is not C-FIND's: the later checks then say they had no instance.
        sample = await _smallest_instance(peer, settings, sorted(studies))
    except DicomNetworkError:
        sample = None
    return FindResult(works, _cap_check(outcome, limit), _duplicates_check(outcome), sample)


def _studies(count: int) -> str:
    return "1 study" if count == 1 else f"{count} studies"


def _cap_check(outcome: FindOutcome, limit: int) -> Check:
    if outcome.state is FindState.TRUNCATED:
        return Check(
            CAP,
            State.WARNING,
            f"the PACS stopped after {outcome.count} matches with status Cancel (0xFE00): it "
            "caps C-FIND answers, so broad queries miss matches",
            "narrow queries (e.g. by date), or raise the PACS's limit (Orthanc: "
            "LimitFindResults); qrclient find exits with 5 when results are truncated, and "
            "retrieve --from splits such look-ups by date by itself",
        )
    if outcome.state is FindState.CANCELLED:
        return Check(CAP, State.OK, f"no cap below {limit} matches (stopped reading there)")
    return Check(CAP, State.OK, f"no cap: all {_studies(outcome.distinct)} returned")


def _duplicates_check(outcome: FindOutcome) -> Check:
    if not outcome.duplicates:
        return Check(DUPLICATES, State.OK, "none: each study was answered once")
    return Check(
        DUPLICATES,
        State.WARNING,
        f"the PACS sent {outcome.count} responses for {_studies(outcome.distinct)}: it repeats "
        "matches (e.g. one per instance)",
        "nothing to do for qrclient, which shows each match once; other tools may list a "
        "study many times: the PACS's vendor or configuration should send each match once",
    )


def _failed(check: Check) -> FindResult:
    skipped = "C-FIND does not work"
    return FindResult(
        check, Check(CAP, State.SKIPPED, skipped), Check(DUPLICATES, State.SKIPPED, skipped), None
    )


async def _smallest_instance(
    peer: Peer, settings: Settings, studies: list[tuple[int, str]]
) -> Sample | None:
    """The first instance of the smallest study that lists one at IMAGE level."""
    for _, study_uid in studies[:3]:
        query = build_query(
            Level.IMAGE,
            Model.STUDY,
            [f"StudyInstanceUID={study_uid}", "SeriesInstanceUID", "SOPInstanceUID"],
            default_keys=False,
        )
        async with (
            open_association(peer, [ContextRequest(Model.STUDY.find_sop_class)], settings) as a,
            find(a, query) as matches,
        ):
            async for match in matches:
                series = str(match.get("SeriesInstanceUID", ""))
                instance = str(match.get("SOPInstanceUID", ""))
                if series and instance:
                    return Sample(study_uid, series, instance)  # leaving cancels the rest
    return None

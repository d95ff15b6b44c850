"""C-GET to us, end to end, exactly as ``qrclient get`` does it.

One instance is fetched by the retrieve job a user's get runs (its planning C-FIND,
the storage contexts it proposes, the C-GET), into a temporary store removed afterwards
(never the user's): wherever a real get fails, this check fails, whatever the cause,
and says why instead of ending in a traceback.
"""

from __future__ import annotations

import tempfile

import anyio

from qrclient.jobs.doctor.report import Check, State, Stopwatch
from qrclient.jobs.doctor.sample import Sample
from qrclient.jobs.retrieve import RetrieveJob, RetrieveOutcome, RetrieveRequest
from qrclient.net.errors import DicomNetworkError
from qrclient.net.peer import Peer
from qrclient.net.settings import Settings
from qrclient.present.failures import main_error
from qrclient.store import Store, StoreError
from qrclient.vocabulary import Level, Method, Model

NAME = "C-GET"
_ELSEWHERE = "until then, retrieve with 'qrclient move' (or set the node's method to move)"


def request_of(sample: Sample) -> RetrieveRequest:
    """The IMAGE-level request a user would give to get ``sample``."""
    return RetrieveRequest.parse(
        Level.IMAGE,
        Model.STUDY,
        [
            f"StudyInstanceUID={sample.study_uid}",
            f"SeriesInstanceUID={sample.series_uid}",
            f"SOPInstanceUID={sample.sop_instance_uid}",
        ],
    )


async def check_get(peer: Peer, settings: Settings, sample: Sample, wait: float) -> Check:
    """Get ``sample`` into a temporary store as ``qrclient get`` would."""
    watch = Stopwatch()
    with tempfile.TemporaryDirectory(prefix="qrclient-doctor-") as directory:
        try:
            with Store.open(directory) as store:
                job = RetrieveJob.into_store(
                    peer, request_of(sample), store, settings, parallel=1, method=Method.GET
                )
                with anyio.move_on_after(wait) as scope:
                    outcome = await job.run()
        except StoreError as exc:
            return Check(NAME, State.FAILED, f"not tried: {exc}", "check TMPDIR", watch.seconds)
        except Exception as exc:  # whatever ends a real get ends this check, with its cause
            return _crashed(exc, watch.seconds)
    if scope.cancelled_caught:
        return Check(
            NAME,
            State.FAILED,
            f"one instance did not arrive within {wait:g} s",
            f"check the PACS's log; {_ELSEWHERE}",
            watch.seconds,
        )
    return diagnose_get(outcome, settings.calling_ae, watch.seconds)


def _crashed(exc: Exception, seconds: float) -> Check:
    error = main_error(exc)
    if isinstance(error, DicomNetworkError):
        return Check(
            NAME, State.FAILED, f"qrclient get fails: {error.message}", error.hint, seconds
        )
    return Check(
        NAME,
        State.FAILED,
        f"qrclient get fails with an internal error: {type(error).__name__}: {error}",
        f"a defect of qrclient, not of the PACS: report it (with 'qrclient -v get'); {_ELSEWHERE}",
        seconds,
    )


def diagnose_get(outcome: RetrieveOutcome, calling_ae: str, seconds: float) -> Check:
    """What the outcome of getting one instance means, and what to fix."""
    size = f"{outcome.received_bytes / 1024:.1f} KB"
    if outcome.received and not (outcome.errors or outcome.failed or outcome.warning):
        detail = f"one instance fetched as 'qrclient get' does it ({size})"
        return Check(NAME, State.OK, detail, "", seconds)
    if outcome.received:
        problem = outcome.errors[0] if outcome.errors else f"{outcome.warning} warning(s)"
        return Check(NAME, State.WARNING, f"one instance received, but {problem}", "", seconds)
    if outcome.planned == 0:
        return Check(
            NAME,
            State.FAILED,
            "the planning C-FIND (IMAGE level) did not list the instance the STUDY-level "
            "query found",
            "check that the PACS answers IMAGE-level queries ('qrclient find -l image')",
            seconds,
        )
    if outcome.stopped is not None:  # the error's own hint sends the user to doctor
        why = outcome.stopped[0]
    elif outcome.errors:
        why = outcome.errors[0]
    elif outcome.failed:
        why = f"the PACS reported {outcome.failed} failed sub-operation(s)"
    else:
        why = "the PACS answered without sending it"
    return Check(
        NAME,
        State.FAILED,
        f"one instance could not be fetched: {why}",
        f"check the PACS's log; allow C-GET for AE title {calling_ae}; {_ELSEWHERE}",
        seconds,
    )

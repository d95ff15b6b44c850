"""Running a cohort job: look every row up, then retrieve each row's studies.

1. Look up (one association, Study Root C-FIND): each pending row is resolved to its
   studies (``resolve``) and marked found, not-found or ambiguous (an accession
   number matching several studies is not fetched: which one was meant is not ours to
   guess; a StudyDate or PatientID column tells them apart). A row the PACS answers
   with a failure fails alone.
2. Retrieve: each found (or partial) row's studies by a ``RetrieveJob``, which skips
   what the store holds (asking the disk) and asks again for what could not come.
   Rows run side by side, never more associations at once than ``parallel`` (the
   look-up's is closed by then). C-MOVEs to us share one listener.

Every row's status is written to the store's job as it changes (``store.jobs``): a
job stopped any way (Ctrl-C, a kill, a failure every request would meet, the end of
its window) is taken up by ``qrclient jobs resume`` where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import anyio

from qrclient.jobs.cohort.pacing import Pacer
from qrclient.jobs.cohort.resolve import Resolution, Resolver
from qrclient.jobs.cohort.verify import SeriesCount, SeriesIndex, compare, describe, short
from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    RetrieveStore,
    note_refusals,
    on_demand_listener,
)
from qrclient.net.association import open_association
from qrclient.net.errors import DicomNetworkError, NoAcceptedContext
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest
from qrclient.net.settings import Settings
from qrclient.net.status import FailureStatus
from qrclient.ops.move import MoveRouter
from qrclient.ops.query import Key, parse_key
from qrclient.store import ItemStatus, Job, JobItem, JobState, Store
from qrclient.vocabulary import Level, Method, Model

RETRIES = 2  # times a study found short after its retrieve is asked for again

# A row's detail when the PACS cut its look-up short and it could not be split.
CAPPED = "the PACS capped the look-up: more studies may match"


class CohortSink(RetrieveStore, SeriesIndex, Protocol):
    """The store (or it pseudonymising): takes instances, knows what it holds."""


@dataclass(frozen=True, slots=True)
class CohortOptions:
    method: Method = Method.AUTO
    destination: str = ""  # C-MOVE destination ("": us)
    parallel: int = 2  # associations at most, in all
    model: Model = Model.STUDY  # for the retrieves (the look-up is Study Root)
    split: bool = True
    verify: bool = True  # compare each series' count with the PACS's after a study
    cap: int | None = None  # where the PACS stops without saying so
    move_from: tuple[str, ...] = ()
    listen_host: str = "0.0.0.0"
    listen_port: int = 11113


@dataclass(slots=True)
class CohortSummary:
    items: list[JobItem] = field(default_factory=list)
    received: int = 0
    received_bytes: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: tuple[str, str] | None = None  # what stopped the job, and the hint
    stopped_by_status: bool = False  # the PACS's failure status (else the network)
    refused_connections: int = 0
    told: set[str] = field(default_factory=set)  # notes already said as they happened

    def counts(self) -> dict[ItemStatus, int]:
        counts: dict[ItemStatus, int] = {}
        for item in self.items:
            counts[item.status] = counts.get(item.status, 0) + 1
        return counts


@dataclass
class CohortRun:
    """One run of a store job; ``say`` writes a progress line (one per row)."""

    peer: Peer
    settings: Settings
    store: Store
    sink: CohortSink  # the store, or it pseudonymising
    job: Job
    options: CohortOptions
    node: str = ""
    pacer: Pacer = field(default_factory=Pacer)
    say: Callable[[str], None] = lambda text: None
    summary: CohortSummary = field(default_factory=CohortSummary)
    _stop: bool = field(default=False, init=False)
    _done: int = field(default=0, init=False)
    _total: int = field(default=0, init=False)
    _found: int = field(default=0, init=False)

    async def run(self) -> CohortSummary:
        jobs = self.store.jobs
        jobs.set_state(self.job.id, JobState.RUNNING)
        finished = False
        try:
            items = jobs.items(self.job.id)
            self._total = len(items)
            self._done = sum(1 for item in items if item.status.final)
            pending = [item for item in items if item.status is ItemStatus.PENDING]
            if pending:
                await self._look_up(pending)
                self.say(f"looked up {rows(len(pending))}: {self._found} found")
            if not self._stop:
                wanted = (ItemStatus.FOUND, ItemStatus.PARTIAL)
                await self._retrieve([i for i in jobs.items(self.job.id) if i.status in wanted])
            finished = not self._stop
        finally:
            # (no await: runs whole even when cancelled)
            self.summary.items = jobs.items(self.job.id)
            done = all(item.status.final for item in self.summary.items)
            state = JobState.FINISHED if finished and done else JobState.INTERRUPTED
            jobs.set_state(self.job.id, state)
        return self.summary

    # -- look-up --------------------------------------------------------------------------

    async def _look_up(self, items: Sequence[JobItem]) -> None:
        context = ContextRequest(Model.STUDY.find_sop_class)
        async with open_association(self.peer, [context], self.settings) as association:
            resolver = Resolver(association, cap=self.options.cap, split=self.options.split)
            for item in items:
                await self.pacer.in_window()
                try:
                    resolution = await resolver.resolve(item.keys)
                except (FailureStatus, DicomNetworkError) as exc:
                    if not association.is_open:
                        raise
                    self._update(_failed(item, f"the look-up failed: {exc}"))
                    continue
                self._update(_resolved(item, resolution))
                for note in resolver.notes:  # said as it happens (a split, a cap)
                    if note not in self.summary.notes:
                        self.summary.notes.append(note)
                        self.summary.told.add(note)
                        self.say(f"note: {note}")

    # -- retrieve -------------------------------------------------------------------------

    async def _retrieve(self, items: Sequence[JobItem]) -> None:
        if not items:
            return
        options = self.options
        to_us = options.destination in ("", self.settings.calling_ae)
        if options.method is Method.AUTO and to_us:
            # Decided once for the job: our listener only serves if C-MOVE it is.
            self.options = options = replace(options, method=await self._get_or_move())
        router = (
            MoveRouter(self.settings.calling_ae, self.sink)
            if options.method is not Method.GET and to_us
            else None
        )
        workers = min(options.parallel, len(items))
        each = max(1, options.parallel // workers)
        queue = iter(items)

        async def worker() -> None:
            for item in queue:
                if self._stop:
                    return
                await self._retrieve_item(item, router, each)

        async with (
            on_demand_listener(
                router, options.listen_host, options.listen_port, self.settings
            ) as listener,
            anyio.create_task_group() as group,
        ):
            for _ in range(workers):
                group.start_soon(worker)
        if listener is not None:
            outcome = RetrieveOutcome()
            note_refusals(outcome, listener.refusals)
            self.summary.refused_connections += outcome.refused_connections
            self.summary.notes.extend(outcome.notes)
            self.summary.errors.extend(outcome.refusals[:10])

    async def _get_or_move(self) -> Method:
        """C-GET where the PACS accepts it from us, else C-MOVE (as ``retrieve`` does)."""
        model = self.options.model
        contexts = [ContextRequest(model.get_sop_class), ContextRequest(model.move_sop_class)]
        try:
            async with open_association(self.peer, contexts, self.settings) as association:
                accepted = {c.abstract_syntax for c in association.contexts if c.accepted}
        except NoAcceptedContext:
            accepted = set()  # (the C-MOVEs will say what is wrong)
        if model.get_sop_class in accepted:
            return Method.GET
        self.summary.notes.append("the PACS does not accept C-GET from us: using C-MOVE")
        return Method.MOVE

    async def _retrieve_item(self, item: JobItem, router: MoveRouter | None, parallel: int) -> None:
        """The row's studies one by one (a study per request: a list of them could be
        cut short by the PACS's result cap when planned)."""
        total = RetrieveOutcome(planned=0)
        states: list[RetrieveState] = []
        try:
            for study in item.studies:
                if self._stop:
                    break
                await self.pacer.before_study()
                outcome = await self._retrieve_study(item, study, router, parallel)
                self.pacer.after_study(outcome.received_bytes)
                _add(total, outcome)
                if outcome.stopped is not None:
                    states.append(outcome.state)
                    self._stopped_by(outcome)
                    break
                states.append(await self._verified(item, study, outcome, total, router, parallel))
        finally:
            # Also when cancelled (Ctrl-C): what came is recorded (no await in here).
            complete = len(states) == len(item.studies)
            self._record(item, total, states if complete else None)

    async def _verified(
        self,
        item: JobItem,
        study: str,
        outcome: RetrieveOutcome,
        total: RetrieveOutcome,
        router: MoveRouter | None,
        parallel: int,
    ) -> RetrieveState:
        """The study's state once each series' count here is compared with the PACS's
        and what is missing asked for again (at most RETRIES times)."""
        state = outcome.state
        if not self.options.verify or outcome.destination or state is RetrieveState.NOT_FOUND:
            return state
        for attempt in range(RETRIES + 1):
            try:
                counts = await self._compare(study)
            except DicomNetworkError as exc:
                total.errors.append(f"could not verify study {study} against the PACS: {exc}")
                return RetrieveState.PARTIAL
            if not short(counts):
                return state if attempt == 0 else RetrieveState.COMPLETE
            if attempt == RETRIES:
                break
            again = await self._retrieve_study(item, study, router, parallel)
            _add(total, again, planned=False)
            if again.stopped is not None:
                self._stopped_by(again)
                break
        total.errors.insert(0, f"short after {RETRIES} retries: {describe(counts)}")
        return RetrieveState.PARTIAL

    async def _compare(self, study: str) -> list[SeriesCount]:
        context = ContextRequest(Model.STUDY.find_sop_class)
        async with open_association(self.peer, [context], self.settings) as association:
            return await compare(association, self.sink, (study,))

    async def _retrieve_study(
        self, item: JobItem, study: str, router: MoveRouter | None, parallel: int
    ) -> RetrieveOutcome:
        options = self.options
        keys: list[Key] = [parse_key(f"StudyInstanceUID={study}")]
        if options.model is Model.PATIENT:
            patient = item.keys.get("PatientID", "")
            if not patient:
                return RetrieveOutcome(
                    planned=None, errors=["the patient root model needs a PatientID per row"]
                )
            keys.insert(0, parse_key(f"PatientID={patient}"))
        request = RetrieveRequest(Level.STUDY, options.model, tuple(keys))
        retrieve = RetrieveJob.into_store(
            self.peer,
            request,
            self.sink,
            self.settings,
            parallel=parallel,
            method=options.method,
            destination=options.destination or None,
            router=router,
            move_from=options.move_from,
            node=self.node,
        )
        try:
            return await retrieve.run()
        finally:
            self._received(retrieve.outcome)

    def _received(self, outcome: RetrieveOutcome) -> None:
        summary = self.summary
        summary.received += outcome.received
        summary.received_bytes += outcome.received_bytes
        summary.skipped += outcome.skipped
        for note in outcome.notes:
            if note not in summary.notes:
                summary.notes.append(note)

    def _stopped_by(self, outcome: RetrieveOutcome) -> None:
        if self._stop:
            return
        self._stop = True
        self.summary.stopped = outcome.stopped
        self.summary.stopped_by_status = bool(outcome.status_failures)
        self.summary.errors.extend(outcome.errors[-1:])

    def _record(
        self, item: JobItem, total: RetrieveOutcome, states: list[RetrieveState] | None
    ) -> None:
        """The row's status from its studies' outcomes (None: not all were tried)."""
        got = total.received + total.skipped + total.completed
        if states is None:
            if not got:
                return  # stopped before anything came: the row stays as it was
            status = ItemStatus.PARTIAL
        elif all(state is RetrieveState.COMPLETE for state in states):
            status = ItemStatus.RETRIEVED
        elif all(state is RetrieveState.NOT_FOUND for state in states):
            status = ItemStatus.NOT_FOUND
        elif got:
            status = ItemStatus.PARTIAL
        else:
            status = ItemStatus.FAILED
        detail = total.errors[0] if total.errors and status is not ItemStatus.RETRIEVED else ""
        if not detail and item.detail == CAPPED:
            detail = CAPPED  # still true of the row
        if status is ItemStatus.NOT_FOUND:
            detail = "listed by the PACS's C-FIND, but it has no instances of it"
        elif states and not detail and RetrieveState.NOT_FOUND in states:
            detail = "a study listed by the PACS's C-FIND has no instances"
        self._update(
            JobItem(
                item.job_id,
                item.row,
                item.keys,
                status,
                item.studies,
                total.planned,
                total.received,  # by this run: an earlier run's are "already here"
                total.skipped,
                total.failed,
                detail,
            )
        )

    def _update(self, item: JobItem) -> None:
        self.store.jobs.update(item)
        if item.status.final:
            self._done += 1
        if item.status is ItemStatus.FOUND:
            self._found += 1  # said once the look-up is over (one line, not one per row)
        else:
            self.say(_progress_line(item, self._done, self._total))


def rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _add(total: RetrieveOutcome, outcome: RetrieveOutcome, *, planned: bool = True) -> None:
    """Sum a study's outcome into its row's (``planned``: its plan counts, not a retry's)."""
    if planned and total.planned is not None:
        total.planned = None if outcome.planned is None else total.planned + outcome.planned
    total.received += outcome.received
    total.skipped += outcome.skipped
    total.completed += outcome.completed if outcome.destination else 0
    total.failed += outcome.failed
    total.errors += outcome.errors


def _resolved(item: JobItem, resolution: Resolution) -> JobItem:
    uids = tuple(study.uid for study in resolution.studies)
    counts = [study.instances for study in resolution.studies]
    planned = None if None in counts else sum(c for c in counts if c is not None)
    detail = ""
    if resolution.incomplete:
        detail = CAPPED
    if not uids:
        return JobItem(item.job_id, item.row, item.keys, ItemStatus.NOT_FOUND, detail=detail)
    status = ItemStatus.FOUND
    if len(uids) > 1 and item.keys.get("AccessionNumber") and not item.keys.get("StudyInstanceUID"):
        status = ItemStatus.AMBIGUOUS
        detail = (
            f"{len(uids)} studies have this accession number: not retrieved; add a "
            "StudyDate, PatientID or StudyInstanceUID column to pick one"
        )
    return JobItem(item.job_id, item.row, item.keys, status, uids, planned, detail=detail)


def _failed(item: JobItem, why: str) -> JobItem:
    return JobItem(
        item.job_id, item.row, item.keys, ItemStatus.FAILED, item.studies, item.planned, detail=why
    )


def _progress_line(item: JobItem, done: int, total: int) -> str:
    # The row's number, never its keys: accession numbers and patient IDs identify.
    line = f"[{done}/{total}] row {item.row}: {item.status.value}"
    if item.studies and item.status is not ItemStatus.FOUND:
        line += f", {len(item.studies)} {'study' if len(item.studies) == 1 else 'studies'}"
    if item.status in (ItemStatus.RETRIEVED, ItemStatus.PARTIAL):
        line += f", {item.received} instances received ({item.skipped} already here)"
    if item.detail:
        line += f": {item.detail}"
    return line

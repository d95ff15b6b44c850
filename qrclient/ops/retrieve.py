"""Retrieve jobs: plan with C-FIND, skip what the store has, fetch the rest in parallel.

1. Plan. Studies the store holds nothing of take the cheap path: a STUDY-level C-FIND
   for SOPClassesInStudy (so the C-GET proposes exactly the storage contexts the data
   needs) and, to share work between associations, a SERIES-level one. Everything else
   (series or instance requests, partly present studies) is planned with an IMAGE-level
   C-FIND listing every instance with its SOP class; on Orthanc that costs about 15x
   more for a big study, so it is only paid where resume needs it.
2. Resume and de-duplicate: instances the store already holds are dropped.
3. Fetch: the rest is split into units (a whole series when all of it is missing, else
   batches of SOP Instance UIDs) run over up to ``parallel`` concurrent associations.

A peer that cannot answer the planning C-FIND is still retrieved from, in one unit with
a broad default set of storage contexts, without resume.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import anyio

from qrclient.net.association import Association, Peer, Settings, open_association
from qrclient.net.dictionary import COMMON
from qrclient.net.errors import DicomNetworkError
from qrclient.net.identifier import Attribute, Identifier
from qrclient.net.listener import StorageListener
from qrclient.net.presentation import ContextRequest
from qrclient.net.status import FailureStatus
from qrclient.net.storage_classes import (
    COMMON_STORAGE_CLASSES,
    MAX_CONTEXTS,
    contexts_per_association,
    storage_contexts,
)
from qrclient.ops.find import find_values
from qrclient.ops.get import SubOperations, c_get
from qrclient.ops.move import MoveRouter, c_move
from qrclient.ops.progress import Progress
from qrclient.ops.query import QUERY_RETRIEVE_LEVEL, Key, Level, Model, build_query, parse_key
from qrclient.ops.storing import InstanceSink

PATIENT_ID = COMMON["PatientID"][0]
STUDY_INSTANCE_UID = COMMON["StudyInstanceUID"][0]
SERIES_INSTANCE_UID = COMMON["SeriesInstanceUID"][0]
SOP_INSTANCE_UID = COMMON["SOPInstanceUID"][0]
BATCH = 500  # SOP Instance UIDs per IMAGE-level request: small identifiers, few requests


class StoreIndex(Protocol):
    """What the retrieve needs to know about the local store."""

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]: ...

    def instances_in_study(self, study_instance_uid: str) -> int: ...


class RetrieveStore(InstanceSink, StoreIndex, Protocol):
    """A store that takes the instances and knows what it holds (qrclient.store.Store)."""


@dataclass(frozen=True, slots=True)
class PlannedInstance:
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str = ""


@dataclass(frozen=True, slots=True)
class Unit:
    """One C-GET request: a whole series, or a batch of instances of one study."""

    level: Level
    study_uid: str
    series_uid: str = ""
    sop_instance_uids: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()
    patient_id: str = ""


class Method(Enum):
    GET = "get"
    MOVE = "move"
    AUTO = "auto"  # C-GET where the peer accepts it, else C-MOVE


class RetrieveState(Enum):
    COMPLETE = "complete"  # everything asked for is in the store
    PARTIAL = "partial"  # some instances failed, warned, or the job was cancelled
    FAILED = "failed"  # nothing could be retrieved
    NOT_FOUND = "not found"  # the peer has nothing matching the request


@dataclass(slots=True)
class RetrieveOutcome:
    planned: int | None = None  # instances the C-FIND found (None: no plan)
    skipped: int = 0
    received: int = 0
    received_bytes: int = 0
    failed: int = 0
    warning: int = 0
    errors: list[str] = field(default_factory=list)  # instances or requests that failed
    notes: list[str] = field(default_factory=list)  # worth saying, not a failure
    network_failures: int = 0  # requests lost to connection, rejection, abort, timeout
    status_failures: int = 0  # requests the peer answered with a failure status
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def state(self) -> RetrieveState:
        if self.cancelled or self.failed or self.warning or self.errors:
            return RetrieveState.PARTIAL if self.received or self.skipped else RetrieveState.FAILED
        if self.planned == 0:
            return RetrieveState.NOT_FOUND
        return RetrieveState.COMPLETE


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    """What to retrieve: unique keys at one level (lists allowed), as on the command line."""

    level: Level
    model: Model
    keys: tuple[Key, ...]

    @classmethod
    def parse(cls, level: Level, model: Model, keys: Sequence[str | Key]) -> RetrieveRequest:
        parsed = tuple(k if isinstance(k, Key) else parse_key(k) for k in keys)
        return cls(level, model, parsed)

    def identifier(self) -> Identifier:
        return build_query(self.level, self.model, self.keys, default_keys=False).as_identifier()


async def plan(association: Association, request: RetrieveRequest) -> list[PlannedInstance]:
    """Every instance the request covers, by an IMAGE-level C-FIND with its keys."""
    returned = ["SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID"]
    if request.model is Model.PATIENT:
        returned.append("PatientID")
    given = {k.keyword for k in request.keys}
    keys = [*request.keys, *(parse_key(k) for k in returned if k not in given)]
    query = build_query(Level.IMAGE, request.model, keys, default_keys=False)
    planned = [
        PlannedInstance(
            match["SOPInstanceUID"],
            match["SOPClassUID"],
            match["SeriesInstanceUID"],
            match["StudyInstanceUID"],
            match.get("PatientID", ""),
        )
        for match in await find_values(association, query)
    ]
    return [p for p in planned if p.sop_instance_uid]


def split(
    missing: Sequence[PlannedInstance],
    everything: Sequence[PlannedInstance],
    parallel: int,
    *,
    whole_series: bool = True,
) -> list[Unit]:
    """Units of work: whole series where all of it is missing, else batches of instances.

    ``whole_series`` says the plan covers entire series (false for IMAGE-level requests,
    where "all planned instances missing" says nothing about the rest of the series).
    A unit never needs more storage contexts than fit in one association next to the
    C-GET context; a series with more SOP classes is split by class.
    """
    room = contexts_per_association(MAX_CONTEXTS - 1, compressed=True)
    total_by_series: dict[str, int] = {}
    for item in everything:
        series = item.series_instance_uid
        total_by_series[series] = total_by_series.get(series, 0) + 1
    by_series: dict[str, list[PlannedInstance]] = {}
    for item in missing:
        by_series.setdefault(item.series_instance_uid, []).append(item)
    # A lone big series is split too, so parallel associations have something to share.
    batch = BATCH
    if len(by_series) < parallel and missing:
        batch = max(1, min(BATCH, -(-len(missing) // parallel)))
    units: list[Unit] = []
    for series_uid, items in by_series.items():
        first = items[0]
        classes = tuple(dict.fromkeys(i.sop_class_uid for i in items if i.sop_class_uid))
        whole = whole_series and len(items) == total_by_series[series_uid]
        if whole and len(items) <= batch and len(classes) <= room:
            units.append(
                Unit(
                    Level.SERIES,
                    first.study_instance_uid,
                    series_uid,
                    (),
                    classes,
                    first.patient_id,
                )
            )
            continue
        chunk: list[PlannedInstance] = []
        for item in sorted(items, key=lambda i: i.sop_class_uid):
            chunk_classes = {i.sop_class_uid for i in chunk} | {item.sop_class_uid}
            if chunk and (len(chunk) >= batch or len(chunk_classes) > room):
                units.append(_image_unit(chunk))
                chunk = []
            chunk.append(item)
        units.append(_image_unit(chunk))
    return units


def _image_unit(items: Sequence[PlannedInstance]) -> Unit:
    first = items[0]
    return Unit(
        Level.IMAGE,
        first.study_instance_uid,
        first.series_instance_uid,
        tuple(i.sop_instance_uid for i in items),
        tuple(dict.fromkeys(i.sop_class_uid for i in items if i.sop_class_uid)),
        first.patient_id,
    )


def unit_identifier(unit: Unit, model: Model) -> Identifier:
    attributes = [Attribute(QUERY_RETRIEVE_LEVEL, "CS", unit.level.value)]
    if model is Model.PATIENT:
        attributes.append(Attribute(PATIENT_ID, "LO", unit.patient_id))
    attributes.append(Attribute(STUDY_INSTANCE_UID, "UI", unit.study_uid))
    if unit.level is not Level.STUDY:
        attributes.append(Attribute(SERIES_INSTANCE_UID, "UI", unit.series_uid))
    if unit.level is Level.IMAGE:
        attributes.append(Attribute(SOP_INSTANCE_UID, "UI", "\\".join(unit.sop_instance_uids)))
    return Identifier.of(attributes)


@dataclass
class RetrieveJob:
    """A retrieve of one request from one peer into one store, by C-GET or C-MOVE.

    For C-MOVE to us, ``router`` is the handler of our running storage listener and
    ``destination`` our AE title; for C-MOVE to another AE, ``router`` is None and only
    the peer's sub-operation counts are reported.
    """

    peer: Peer
    request: RetrieveRequest
    sink: InstanceSink
    index: StoreIndex
    settings: Settings = field(default_factory=Settings)
    parallel: int = 2
    method: Method = Method.GET
    destination: str = ""
    router: MoveRouter | None = None
    progress: Progress = field(default_factory=Progress)
    outcome: RetrieveOutcome = field(default_factory=RetrieveOutcome)

    @classmethod
    def into_store(
        cls,
        peer: Peer,
        request: RetrieveRequest,
        store: RetrieveStore,
        settings: Settings,
        *,
        parallel: int = 2,
        method: Method = Method.AUTO,
        destination: str | None = None,
        router: MoveRouter | None = None,
    ) -> RetrieveJob:
        """A job into ``store``; C-MOVEs go to us unless ``destination`` names another AE.

        Moves to us are routed by ``router`` when given (a listener shared by several
        jobs), else by a router of the job's own, served by :func:`run_with_listener`.
        """
        destination = destination or settings.calling_ae
        if method is not Method.GET and destination == settings.calling_ae:
            router = router or MoveRouter(settings.calling_ae, store)
        else:
            router = None
        return cls(peer, request, store, store, settings, parallel, method, destination, router)

    async def run(self) -> RetrieveOutcome:
        try:
            await self._run()
        except anyio.get_cancelled_exc_class():
            self.outcome.cancelled = True
            raise
        finally:
            self._settle()
        return self.outcome

    async def _run(self) -> None:
        model = self.request.model
        contexts = [ContextRequest(model.find_sop_class)]
        if self.method is Method.AUTO:
            contexts += [ContextRequest(model.get_sop_class), ContextRequest(model.move_sop_class)]
        async with open_association(self.peer, contexts, self.settings) as association:
            if self.method is Method.AUTO:
                self.method = self._choose(association)
            try:
                units = await self._plan_fresh(association)
                planned = None if units is not None else await plan(association, self.request)
            except (FailureStatus, DicomNetworkError) as exc:
                if not association.is_open:
                    raise
                self.outcome.notes.append(f"planning C-FIND failed ({exc}); no resume")
                units, planned = None, None
        if units is not None:
            if self.outcome.planned is not None:
                self.progress.expect(self.outcome.planned)
            await self._fetch_units(units)
            return
        if planned is None:
            await self._fetch_units([None])
            return
        self.outcome.planned = len(planned)
        present = self.index.present(p.sop_instance_uid for p in planned)
        missing = [p for p in planned if p.sop_instance_uid not in present]
        self.outcome.skipped = len(planned) - len(missing)
        self.progress.add(skipped=self.outcome.skipped)
        self.progress.expect(len(missing))
        if not missing:
            return
        whole_series = self.request.level is not Level.IMAGE
        units = split(missing, planned, self.parallel, whole_series=whole_series)
        await self._fetch_units(units)

    async def _fetch_units(self, units: Sequence[Unit | None]) -> None:
        """Up to ``parallel`` workers take units from one shared queue until it is empty."""
        queue = iter(units)  # one event loop: next() never interleaves between workers

        async def worker() -> None:
            for unit in queue:
                await self._fetch(unit)

        async with anyio.create_task_group() as group:
            for _ in range(min(self.parallel, len(units))):
                group.start_soon(worker)

    async def _plan_fresh(self, association: Association) -> list[Unit] | None:
        """Units for STUDY requests the store holds nothing of; None where that fails."""
        request = self.request
        if request.level is not Level.STUDY:
            return None
        keys = [*request.keys]
        given = {k.keyword for k in keys}
        wanted = ["StudyInstanceUID", "SOPClassesInStudy", "NumberOfStudyRelatedInstances"]
        if request.model is Model.PATIENT:
            wanted.append("PatientID")
        keys += [parse_key(k) for k in wanted if k not in given]
        query = build_query(Level.STUDY, request.model, keys, default_keys=False)
        units: list[Unit] = []
        total = 0
        for match in await find_values(association, query):
            study_uid = match["StudyInstanceUID"]
            classes = match["SOPClassesInStudy"]
            count = match["NumberOfStudyRelatedInstances"]
            if not study_uid or not classes or not count:
                return None  # the peer does not compute them: plan per instance instead
            if self.index.instances_in_study(study_uid):
                return None  # partly here: resume needs the per-instance plan
            try:
                total += int(count)
            except ValueError:
                return None  # not a count: plan per instance instead
            sop_classes = tuple(c.strip() for c in classes.split("\\") if c.strip())
            patient = match.get("PatientID", "")
            units.append(Unit(Level.STUDY, study_uid, "", (), sop_classes, patient))
        if len(units) < self.parallel:
            units = [u for study in units for u in await self._series_units(association, study)]
        # A lone series is not split for parallel associations here: that needs the
        # per-instance plan, and measured on 2 cores against Orthanc, splitting a
        # 500-image series over 2 associations was slower (1.55x getscu) than one (1.36x).
        self.outcome.planned = total
        return units

    async def _series_units(self, association: Association, study: Unit) -> list[Unit]:
        """Split a study by series (a cheap SERIES-level C-FIND) to share it out."""
        keys = [f"StudyInstanceUID={study.study_uid}", "SeriesInstanceUID"]
        if self.request.model is Model.PATIENT:
            keys.append(f"PatientID={study.patient_id}")
        query = build_query(Level.SERIES, self.request.model, keys, default_keys=False)
        series = [m["SeriesInstanceUID"] for m in await find_values(association, query)]
        if len(series) < 2 or not all(series):
            return [study]
        return [
            Unit(Level.SERIES, study.study_uid, uid, (), study.sop_classes, study.patient_id)
            for uid in series
        ]

    def _choose(self, association: Association) -> Method:
        accepted = {c.abstract_syntax for c in association.contexts if c.accepted}
        if self.request.model.get_sop_class in accepted:
            return Method.GET
        self.outcome.notes.append("the peer does not accept C-GET from us: using C-MOVE")
        return Method.MOVE

    async def _fetch(self, unit: Unit | None) -> None:
        """One association for one unit; a failure is recorded, not fatal to the job."""
        if self.method is Method.MOVE:
            await self._move(unit)
            return
        get_class = self.request.model.get_sop_class
        if unit is None:
            identifier = self.request.identifier()
            storage = storage_contexts(COMMON_STORAGE_CLASSES, compressed=False)
        else:
            identifier = unit_identifier(unit, self.request.model)
            storage = storage_contexts(unit.sop_classes or COMMON_STORAGE_CLASSES)
        contexts = [ContextRequest(get_class), *storage]
        try:
            async with open_association(self.peer, contexts, self.settings) as association:
                result = await c_get(association, identifier, get_class, self.sink, self.progress)
        except DicomNetworkError as exc:
            self._lost(exc)
            return
        self._add(result)

    async def _move(self, unit: Unit | None) -> None:
        move_class = self.request.model.move_sop_class
        if unit is None:
            identifier, expected = self.request.identifier(), None
        else:
            identifier = unit_identifier(unit, self.request.model)
            expected = set(unit.sop_instance_uids) or None
        try:
            async with open_association(
                self.peer, [ContextRequest(move_class)], self.settings
            ) as association:
                message_id = association.next_message_id()
                routed = (
                    self.router.expect(self.peer.ae_title, message_id, expected, self.progress)
                    if self.router is not None
                    else nullcontext(None)
                )
                with routed as move:
                    result = await c_move(
                        association,
                        identifier,
                        move_class,
                        self.destination,
                        self.progress,
                        message_id=message_id,
                    )
                if move is not None:
                    result.store_errors.extend(move.errors)
        except DicomNetworkError as exc:
            self._lost(exc)
            return
        self._add(result)

    def _lost(self, error: DicomNetworkError) -> None:
        self.outcome.errors.append(str(error))
        if isinstance(error, FailureStatus):
            self.outcome.status_failures += 1
        else:
            self.outcome.network_failures += 1

    def _add(self, result: SubOperations) -> None:
        self.outcome.failed += result.failed
        self.outcome.warning += result.warning
        self.outcome.errors.extend(result.store_errors)
        if result.status is not None and result.status.is_failure:
            status = result.status
            self.outcome.errors.append(f"{status.service.value} ended with {status}: {status.hint}")
            self.outcome.status_failures += 1
        self.outcome.cancelled = self.outcome.cancelled or result.cancelled

    def _settle(self) -> None:
        snapshot = self.progress.snapshot()
        self.outcome.received = snapshot.received
        self.outcome.received_bytes = snapshot.received_bytes
        self.outcome.failed += snapshot.lost  # the peer counted those as completed
        self.outcome.seconds = snapshot.elapsed
        self.progress.finish()


@asynccontextmanager
async def move_listener(
    router: MoveRouter | None, host: str, port: int, settings: Settings
) -> AsyncIterator[StorageListener | None]:
    """Serve our storage listener for ``router`` while the block runs (None: no listener)."""
    if router is None:
        yield None
        return
    listener = StorageListener(router.our_ae, router, host=host, port=port, settings=settings)
    async with anyio.create_task_group() as group:
        await group.start(listener.serve)
        try:
            yield listener
        finally:
            group.cancel_scope.cancel()


async def run_with_listener(
    job: RetrieveJob, host: str = "0.0.0.0", port: int = 11113
) -> RetrieveOutcome:
    """Run ``job`` with a listener of its own for moves to us; refusals become errors."""
    async with move_listener(job.router, host, port, job.settings) as listener:
        outcome = await job.run()
    for refusal in listener.refusals if listener is not None else ():
        outcome.errors.append(f"our listener refused an association: {refusal.reason}")
    return outcome

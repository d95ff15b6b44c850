"""A retrieve job: plan, skip what the store holds, fetch the rest in parallel, ask again.

1. Plan (``plan.Planner``) over one association: studies, series, instances.
2. Resume: planned instances the store holds are skipped (not for a C-MOVE to another
   AE, whose holdings we cannot know).
3. Fetch: whole studies and series, or batches of SOP Instance UIDs, over up to
   ``parallel`` associations. Each unit's request carries its ``Scope``: an instance
   outside it is refused, never stored (``ops.storing``).
4. Ask again (C-GET): instances the peer could not send for lack of a presentation
   context (failed sub-operations not of our making: 0xA702, or 0xB000 with a Failed
   SOP Instance UID List) are asked for with the next pack of storage contexts, until
   they are here or the packs run out (``storage_classes.unknown_class_packs``). A
   whole study or series is first listed per instance to know which.

Optional behaviour is detected, not assumed. A request with a list of SOP Instance
UIDs that fails, or does nothing, on a peer not yet seen to take lists is asked again
one UID per request on the same association, and the job keeps to single values from
then on (a note says so). A failure that holds for every request (the peer cannot be
reached or refuses the association; 0xA801 move destination unknown; not authorised;
0xCxxx with nothing done, Orthanc's answer for an unknown or unreachable destination;
0xA702 of a C-MOVE with nothing done) stops the job at the first one, before any
request has worked: one error names the peer and points to ``qrclient doctor``, and
no more associations are opened.

A C-MOVE to us is accepted only from the PACS: its AE title, from an address its host
resolves to or one ``move_from`` lists (``ops.move.Senders``), while the move runs.
A C-MOVE to another AE reports the peer's sub-operation counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import anyio

from qrclient.jobs.retrieve.model import (
    PlannedInstance,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveStore,
    StoreIndex,
    Unit,
    unit_identifier,
)
from qrclient.jobs.retrieve.plan import Abilities, Plan, Planner, split, units_from_keys
from qrclient.net.association import Association, open_association
from qrclient.net.errors import AssociationRejected, DicomNetworkError, NoAcceptedContext
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest
from qrclient.net.settings import Settings
from qrclient.net.status import Category, FailureStatus, Status
from qrclient.ops.get import SubOperations, c_get
from qrclient.ops.move import MoveRouter, Senders, c_move, resolve_senders
from qrclient.ops.progress import Progress
from qrclient.ops.storing import InstanceSink
from qrclient.vocabulary import Level, Method

OUT_OF_RESOURCES_FOR_SUB_OPERATIONS = 0xA702
# Failures no other request of the job would escape (with nothing done, before any worked).
_EVERY_REQUEST = frozenset({0xA801, 0x0122, 0x0124, 0xA900})


@dataclass(slots=True)
class _AskAgain:
    """A request whose instances the peer partly could not send, for the next pack."""

    unit: Unit
    pack: int
    failed: int  # the peer's count, which stands if they cannot be asked for again


@dataclass
class RetrieveJob:
    """A retrieve of one request from one peer into one store, by C-GET or C-MOVE.

    For C-MOVE to us, ``router`` is the handler of our running storage listener and
    ``destination`` our AE title; for C-MOVE to another AE, ``router`` is None and only
    the peer's sub-operation counts are reported. ``move_from`` lists addresses (or
    networks, host names) besides the peer's own from which it may deliver a C-MOVE;
    ``node`` is how the user named the peer, for hints.
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
    move_from: tuple[str, ...] = ()
    node: str = ""
    abilities: Abilities = field(default_factory=Abilities)
    _stopped: bool = field(default=False, init=False)
    _worked: bool = field(default=False, init=False)  # a request delivered something
    _ask_again: list[_AskAgain] = field(default_factory=list, init=False)
    _refused: set[str] = field(default_factory=set, init=False)
    _senders: Senders | None = field(default=None, init=False)

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
        move_from: Sequence[str] = (),
        node: str = "",
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
        return cls(
            peer,
            request,
            store,
            store,
            settings,
            parallel,
            method,
            destination,
            router,
            move_from=tuple(move_from),
            node=node,
        )

    @property
    def to_another_ae(self) -> bool:
        """A C-MOVE whose instances go elsewhere: nothing comes to our store."""
        return self.method is Method.MOVE and not self._to_us()

    def _to_us(self) -> bool:
        return self.destination in ("", self.settings.calling_ae)

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
        plan = await self._plan()
        if plan is None:
            return
        units = self._units(plan)
        if units and self.method is Method.MOVE and self.router is not None:
            if self.router.start_listening is not None:
                await self.router.start_listening()
            self._senders, notes = await resolve_senders(
                self.peer.ae_title, self.peer.host, self.move_from
            )
            self.outcome.notes.extend(notes)
        while units and not self._stopped:
            await self._fetch_units(units)
            units = await self._units_to_ask_again() if not self._stopped else []

    # -- planning -----------------------------------------------------------------------

    async def _plan(self) -> Plan | None:
        model = self.request.model
        contexts = [ContextRequest(model.find_sop_class)]
        if self.method is Method.AUTO:
            if self._to_us():
                contexts.append(ContextRequest(model.get_sop_class))
            contexts.append(ContextRequest(model.move_sop_class))
        async with open_association(self.peer, contexts, self.settings) as association:
            if self.method is Method.AUTO:
                self.method = self._choose(association)
            if self.to_another_ae:
                self.outcome.destination = self.destination
            try:
                return await self._planner(association).plan()
            except DicomNetworkError as exc:
                if not association.is_open:
                    raise
                return self._unplanned(exc)

    def _planner(self, association: Association) -> Planner:
        return Planner(
            association,
            self.request,
            self.abilities,
            self.outcome.notes,
            index=None if self.to_another_ae else self.index,
            classes=self.method is Method.GET,
            parallel=self.parallel,
        )

    def _unplanned(self, error: DicomNetworkError) -> Plan | None:
        """Without a C-FIND: units from the request's UIDs, without resume, if it has some."""
        units = units_from_keys(self.request)
        if units is None:
            self.outcome.errors.append(
                f"the planning C-FIND failed ({error}), and without it the studies these "
                "keys select cannot be known: retrieve by StudyInstanceUID"
            )
            self.outcome.status_failures += isinstance(error, FailureStatus)
            self.outcome.network_failures += not isinstance(error, FailureStatus)
            return None
        self.outcome.notes.append(
            f"planning C-FIND failed ({error}): retrieving by the UIDs given, without resume"
        )
        return Plan(units=units, count=None)

    def _choose(self, association: Association) -> Method:
        if not self._to_us():
            return Method.MOVE  # the instances go to another AE: only C-MOVE does that
        accepted = {c.abstract_syntax for c in association.contexts if c.accepted}
        if self.request.model.get_sop_class in accepted:
            return Method.GET
        self.outcome.notes.append("the peer does not accept C-GET from us: using C-MOVE")
        return Method.MOVE

    def _units(self, plan: Plan) -> list[Unit]:
        """The plan's units, and its instances not in the store as units."""
        self.outcome.planned = plan.count
        missing: Sequence[PlannedInstance] = plan.instances
        if plan.instances and not self.to_another_ae:
            present = self.index.present(p.sop_instance_uid for p in plan.instances)
            missing = [p for p in plan.instances if p.sop_instance_uid not in present]
            self.outcome.skipped = len(plan.instances) - len(missing)
            self.progress.add(skipped=self.outcome.skipped)
        if plan.count is not None:
            self.progress.expect(plan.count - self.outcome.skipped)
        whole_series = self.request.level is not Level.IMAGE
        return [
            *plan.units,
            *split(missing, plan.instances, self.parallel, whole_series=whole_series),
        ]

    # -- fetching -----------------------------------------------------------------------

    async def _fetch_units(self, units: Sequence[Unit]) -> None:
        """Up to ``parallel`` workers take units from one shared queue until it is empty."""
        queue = iter(units)  # one event loop: next() never interleaves between workers

        async def worker() -> None:
            for unit in queue:
                if self._stopped:
                    return
                await self._fetch(unit)

        async with anyio.create_task_group() as group:
            for _ in range(min(self.parallel, len(units))):
                group.start_soon(worker)

    async def _fetch(self, unit: Unit) -> None:
        """One association for one unit; a failure is recorded, not fatal to the job."""
        model = self.request.model
        if self.method is Method.GET:
            contexts = [ContextRequest(model.get_sop_class), *unit.storage_contexts()]
        else:
            contexts = [ContextRequest(model.move_sop_class)]
        opened = False
        try:
            async with open_association(self.peer, contexts, self.settings) as association:
                opened = True
                await self._requests(association, unit)
        except DicomNetworkError as exc:
            # Not connected, refused for good, or the C-GET / C-MOVE context rejected:
            # the same for every unit. A transient rejection (too many associations) not.
            transient = isinstance(exc, AssociationRejected) and exc.result != 1
            if (not opened and not transient) or isinstance(exc, NoAcceptedContext):
                self._stop(exc.message, exc.hint, status=False)
            else:
                self._lost(exc)

    async def _requests(self, association: Association, unit: Unit) -> None:
        """The unit's request, or one per instance where the peer takes no lists."""
        uids = unit.sop_instance_uids
        if len(uids) > 1 and self.abilities.retrieve_lists is False:
            await self._one_by_one(association, unit)
            return
        result = await self._request(association, unit, None)
        if len(uids) > 1 and self.abilities.retrieve_lists is not True:
            if self._list_not_understood(result):
                if self.abilities.retrieve_lists is None:  # (another worker may know)
                    self.abilities.retrieve_lists = False
                    self.outcome.notes.append(
                        "the peer does not take lists of SOP Instance UIDs in "
                        f"{self._service()}: one request per instance"
                    )
                await self._one_by_one(association, unit)
                return
            if _delivered(result):
                self.abilities.retrieve_lists = True
        self._settle_request(unit, None, result)

    async def _one_by_one(self, association: Association, unit: Unit) -> None:
        for uid in unit.sop_instance_uids:
            if self._stopped:
                return
            result = await self._request(association, unit, (uid,))
            self._settle_request(unit, (uid,), result)

    async def _request(
        self, association: Association, unit: Unit, uids: Sequence[str] | None
    ) -> SubOperations:
        model = self.request.model
        identifier = unit_identifier(unit, model, uids)
        scope = unit.scope(uids)
        if self.method is Method.GET:
            return await c_get(
                association, identifier, model.get_sop_class, self.sink, self.progress, scope=scope
            )
        router = None if self.to_another_ae else self.router
        message_id = router.message_id() if router else association.next_message_id()
        senders = self._senders or Senders(self.peer.ae_title, frozenset())
        routed = (
            router.expect(senders, message_id, scope, self.progress)
            if router is not None
            else nullcontext(None)
        )
        with routed as move:
            result = await c_move(
                association,
                identifier,
                model.move_sop_class,
                self.destination or self.settings.calling_ae,
                self.progress,
                message_id=message_id,
            )
        if move is not None:
            result.store_errors.extend(move.errors)
            result.refusals = move.refusals
            result.arrived = move.arrived
        return result

    def _service(self) -> str:
        return "C-GET" if self.method is Method.GET else "C-MOVE"

    def _list_not_understood(self, result: SubOperations) -> bool:
        """A list request that failed, or did nothing at all, on a peer new to lists.

        A failure may come with the whole request counted as failed sub-operations
        (pynetdicom does that), but 0xA702 with failures is a lack of contexts.
        """
        status = result.status
        if status is None or result.cancelled or _delivered(result):
            return False
        if status.is_failure:
            return status.code != OUT_OF_RESOURCES_FOR_SUB_OPERATIONS
        return status.category is Category.SUCCESS and not result.failed

    def _settle_request(
        self, unit: Unit, uids: Sequence[str] | None, result: SubOperations
    ) -> None:
        """Add one request's result to the outcome; queue what to ask for again."""
        outcome = self.outcome
        outcome.warning += result.warning
        outcome.completed += result.completed
        outcome.errors.extend(result.store_errors)
        outcome.refuse(result.refusals.reasons)
        self._refused |= result.refusals.uids
        outcome.cancelled = outcome.cancelled or result.cancelled
        status = result.status
        if status is None:
            return  # cancelled before the final response
        if self._fails_every_request(status, result):
            service = status.service.value
            if self.method is Method.MOVE:
                service += f" to {self.destination or self.settings.calling_ae}"
            self._stop(f"{service} failed with {status}", status.hint, status=True)
            return
        if _delivered(result):
            self._worked = True
        again = self._next_pack(unit, uids, result)
        if again is not None:
            self._ask_again.append(again)
            self.progress.update(result.message_id, failed=0)  # they are not lost yet
            return
        # Our refusals are counted apart: the peer counts them as failed sub-operations.
        outcome.failed += max(0, result.failed - result.refusals.count)
        if status.is_failure:
            outcome.errors.append(f"{status.service.value} ended with {status}: {status.hint}")
            outcome.status_failures += 1

    def _fails_every_request(self, status: Status, result: SubOperations) -> bool:
        """A failure no other request of this job would escape (module docstring)."""
        if self._worked or not status.is_failure:
            return False
        if result.completed or result.warning or result.arrived:
            return False
        code = status.code
        if code in _EVERY_REQUEST or 0xC000 <= code <= 0xCFFF:
            return True
        return code == OUT_OF_RESOURCES_FOR_SUB_OPERATIONS and self.method is Method.MOVE

    def _next_pack(
        self, unit: Unit, uids: Sequence[str] | None, result: SubOperations
    ) -> _AskAgain | None:
        """What to ask for again with more storage contexts, if the failures allow it."""
        status = result.status
        if self.method is not Method.GET or status is None or result.cancelled:
            return None
        ours = result.refusals.count + len(result.store_errors)
        if result.failed <= ours:
            return None  # the failures are our refusals and our store's
        if status.is_failure and status.code != OUT_OF_RESOURCES_FOR_SUB_OPERATIONS:
            return None  # not for lack of contexts
        pack = unit.next_pack()
        if pack is None:
            return None
        asked = unit if uids is None else replace(unit, sop_instance_uids=tuple(uids))
        return _AskAgain(asked, pack, result.failed)

    async def _units_to_ask_again(self) -> list[Unit]:
        """Units for the instances still missing of the requests that had failures."""
        if not self._ask_again:
            return []
        entries, self._ask_again = self._ask_again, []
        listed: list[tuple[_AskAgain, list[PlannedInstance]]] = []
        for entry in entries:
            unit = entry.unit
            listed.append(
                (
                    entry,
                    [
                        PlannedInstance(uid, "", unit.series_uid, unit.study_uid, unit.patient_id)
                        for uid in unit.sop_instance_uids
                    ],
                )
            )
        whole = [i for i, (entry, _) in enumerate(listed) if not entry.unit.sop_instance_uids]
        if whole:
            try:
                await self._list_instances(listed, whole)
            except DicomNetworkError as exc:
                self.outcome.errors.append(
                    f"could not list the instances to ask for again ({exc}): not asked again"
                )
                listed = [item for i, item in enumerate(listed) if i not in whole]
                self.outcome.failed += sum(entries[i].failed for i in whole)
        units: list[Unit] = []
        for entry, instances in listed:
            present = self.index.present(i.sop_instance_uid for i in instances)
            missing = [
                i
                for i in instances
                if i.sop_instance_uid not in present and i.sop_instance_uid not in self._refused
            ]
            units += split(missing, missing, self.parallel, whole_series=False, pack=entry.pack)
        if units:
            count = sum(len(u.sop_instance_uids) for u in units)
            self.outcome.notes.append(
                f"asked again for {count} instances the peer could not send, with storage "
                "contexts for more SOP classes and transfer syntaxes"
            )
        return units

    async def _list_instances(
        self, listed: list[tuple[_AskAgain, list[PlannedInstance]]], whole: list[int]
    ) -> None:
        """Fill in the instances of whole studies and series (one C-FIND association)."""
        contexts = [ContextRequest(self.request.model.find_sop_class)]
        async with open_association(self.peer, contexts, self.settings) as association:
            planner = self._planner(association)
            for i in whole:
                entry, _ = listed[i]
                listed[i] = (entry, await planner.instances_of(entry.unit))

    # -- failures and the end -----------------------------------------------------------

    def _stop(self, what: str, hint: str, *, status: bool) -> None:
        """One error for a failure every request would meet; no further requests."""
        if self._stopped:
            return
        self._stopped = True
        self.outcome.stopped = (what, hint)
        peer = self.peer
        self.outcome.errors.append(
            f"{peer.ae_title} at {peer.host}:{peer.port}: {what}: {hint}; every other "
            "request would fail the same way, so the retrieve stopped: check the node with "
            f"'qrclient doctor {self.node or peer}'"
        )
        if status:
            self.outcome.status_failures += 1
        else:
            self.outcome.network_failures += 1

    def _lost(self, error: DicomNetworkError) -> None:
        self.outcome.errors.append(str(error))
        if isinstance(error, FailureStatus):
            self.outcome.status_failures += 1
        else:
            self.outcome.network_failures += 1

    def _settle(self) -> None:
        snapshot = self.progress.snapshot()
        outcome = self.outcome
        outcome.received = snapshot.received
        outcome.received_bytes = snapshot.received_bytes
        outcome.refused_instances = snapshot.refused
        outcome.failed += snapshot.lost  # the peer counted those as completed
        outcome.seconds = snapshot.elapsed
        self.progress.finish()
        if outcome.planned is None or self.to_another_ae or outcome.cancelled or self._stopped:
            return
        # A peer may send something else in place of what was planned (refused), and
        # count it as done: what the plan expects and is not here is not complete.
        short = outcome.planned - outcome.received - outcome.skipped - outcome.failed
        if short > 0 and not outcome.errors:
            outcome.errors.append(
                f"{short} of the {outcome.planned} instances planned did not arrive, "
                "though the peer reported no failure for them"
            )


def _delivered(result: SubOperations) -> bool:
    """Whether a request delivered anything (a failed count alone does not say so)."""
    return bool(
        result.arrived
        or result.completed
        or result.warning
        or result.refusals.count
        or result.store_errors
    )

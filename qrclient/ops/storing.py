"""Receiving one C-STORE into the sink: shared by C-GET and the C-MOVE listener.

Fragments go straight from the receive buffer into the sink (a file in the local
store) and are never decoded. A store failure refuses that instance (status 0xA700)
but its fragments are still read off the association, so the association stays usable.
An instance cut off mid-way is discarded, never committed.

Storing is split around the C-STORE response, because the peer sends nothing more
until it has our answer. Before it, the data set is received and checked (``seal``);
after it, while the peer prepares its next instance, the file is written, renamed into
place and indexed (``Arrival.settle``). A failure in that second half (the disk or the
store vanished) cannot change the answer already sent: it counts as a store error of
the retrieve, which then ends partial.

Only instances that belong to the request are stored: a :class:`Scope` names the
studies, series and (when planned per instance) SOP Instances a request covers. An
announced SOP Instance UID outside it is refused before anything is written; the data
set's own Study and Series Instance UIDs, which ``seal`` reads for the store anyway,
are checked before the answer. A refused instance is drained off the association,
answered 0x0124 and recorded, never stored. 0x0124 is PS3.7's general "Refused: Not
Authorized": the sender may not store this instance here. The C-STORE statuses of
PS3.4 B.2.3 would mislead: 0xA7xx says we ran out of resources (a PACS may retry
later), 0xA9xx and 0xCxxx that the data set is wrong, which it need not be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from qrclient.net.association import Association
from qrclient.net.dimse import Command
from qrclient.net.errors import DataSetTooLarge
from qrclient.ops.progress import Progress

STORE_SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700
TOO_LARGE = "instance larger than we accept (max_instance)"  # an Error Comment: 64 at most
STORE_NOT_AUTHORIZED = 0x0124
REASONS_KEPT = 100
UIDS_KEPT = 10_000


class Incoming(Protocol):
    """One instance being received (implemented by the local store).

    ``write`` may keep the fragment it is given: callers pass immutable buffers.
    """

    def write(self, fragment: bytes | memoryview) -> None: ...

    def seal(self) -> None: ...

    def place(self) -> object: ...

    def discard(self) -> None: ...


class InstanceSink(Protocol):
    """Where received instances go (the local store)."""

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
    ) -> Incoming: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """The instances one request may deliver; an empty set does not constrain.

    ``studies`` for a STUDY request, with ``series`` for a SERIES one, and with
    ``instances`` when the request was planned per instance.
    """

    studies: frozenset[str] = frozenset()
    series: frozenset[str] = frozenset()
    instances: frozenset[str] = frozenset()

    def refuses_announced(self, sop_instance_uid: str) -> str | None:
        """Why an instance announced by its C-STORE is refused, or None."""
        if self.instances and sop_instance_uid not in self.instances:
            return "not an instance this request asked for"
        return None

    def refuses_sealed(self, identifiers: Mapping[str, str] | None) -> str | None:
        """Why an instance is refused given the UIDs its data set holds, or None."""
        if not self.studies and not self.series:
            return None
        if identifiers is None:
            return "its study and series could not be checked"
        study = identifiers.get("StudyInstanceUID", "")
        if self.studies and study not in self.studies:
            return f"its study {study or '(none)'} is not one this request asked for"
        series = identifiers.get("SeriesInstanceUID", "")
        if self.series and series not in self.series:
            return f"its series {series or '(none)'} is not one this request asked for"
        return None


@dataclass(slots=True)
class Refusals:
    """Instances refused as outside their request: how many, why, and which.

    Bounded, since a hostile peer may send without end: the first reasons and UIDs are
    kept, every one is counted.
    """

    count: int = 0
    reasons: list[str] = field(default_factory=list)
    uids: set[str] = field(default_factory=set)

    def add(self, sop_instance_uid: str, why: str) -> None:
        self.count += 1
        if len(self.reasons) < REASONS_KEPT:
            self.reasons.append(f"refused {sop_instance_uid or '(no UID)'}: {why}")
        if len(self.uids) < UIDS_KEPT:
            self.uids.add(sop_instance_uid)


@dataclass(slots=True)
class Arrival:
    """A received C-STORE: the status to answer, then ``settle`` once the answer is sent."""

    status: int
    sealed: Incoming | None
    size: int
    progress: Progress
    errors: list[str]
    sop_instance_uid: str
    comment: str | None = None  # the response's Error Comment, if any

    def settle(self) -> None:
        """Place the sealed instance; a failure is recorded, never raised."""
        if self.sealed is None:
            return
        incoming, self.sealed = self.sealed, None
        try:
            incoming.place()
        except Exception as exc:
            self.errors.append(f"{self.sop_instance_uid}: {exc}")
            self.progress.add(lost=1)
        else:
            self.progress.add(received=1, received_bytes=self.size)


class _Writer:
    """Passes fragments to the incoming file until a write fails, then drops the rest."""

    def __init__(self) -> None:
        self.target: Incoming | None = None
        self.error: Exception | None = None

    def write(self, fragment: bytes | memoryview) -> None:
        if self.target is None or self.error is not None:
            return
        try:
            self.target.write(fragment)
        except Exception as exc:
            self.error = exc


async def receive_instance(
    association: Association,
    context_id: int,
    command: Command,
    sink: InstanceSink | None,
    progress: Progress,
    errors: list[str],
    *,
    scope: Scope | None = None,
    refusals: Refusals | None = None,
    refuse: str | None = None,
) -> Arrival:
    """Receive and check the data set following ``command``; returns what to answer.

    ``sink`` None drains and refuses the instance (0xA700). Failures are appended to
    ``errors``. An instance outside ``scope``, or any with ``refuse`` given (the reason),
    is refused with 0x0124 and recorded in ``refusals``. The caller sends the response,
    then calls ``settle`` on the result (also if sending failed: the instance arrived
    whole).
    """
    sop_instance = command.affected_sop_instance_uid or ""
    if refuse is None and scope is not None:
        refuse = scope.refuses_announced(sop_instance)
    if refuse is not None:
        try:
            size = await association.receive_dataset_into(
                context_id, _drop, association.settings.max_instance, instance=True
            )
        except DataSetTooLarge as exc:
            if not exc.whole:  # still streaming far beyond: the association ends
                raise
            size = exc.size
        return _refused(sop_instance, refuse, size, progress, errors, refusals)
    writer = _Writer()
    if sink is not None:
        try:
            writer.target = sink.begin(
                command.affected_sop_class_uid or "",
                sop_instance,
                str(association.context(context_id).transfer_syntax),
                association.peer.ae_title,
            )
        except Exception as exc:
            writer.error = exc
    incoming = writer.target
    try:
        size = await association.receive_dataset_into(
            context_id, writer.write, association.settings.max_instance, instance=True
        )
    except BaseException as exc:
        if incoming is not None:
            incoming.discard()
        if isinstance(exc, DataSetTooLarge):  # refused, nothing kept of it
            errors.append(f"{sop_instance}: not stored: {exc.message}")
            if exc.whole:  # read to its end: the association goes on
                return Arrival(
                    STORE_OUT_OF_RESOURCES,
                    None,
                    exc.size,
                    progress,
                    errors,
                    sop_instance,
                    TOO_LARGE,
                )
        raise
    arrival = Arrival(STORE_OUT_OF_RESOURCES, None, size, progress, errors, sop_instance)
    if incoming is not None and writer.error is None:
        try:
            incoming.seal()
        except Exception as exc:
            writer.error = exc
        else:
            refuse = scope.refuses_sealed(_identifiers(incoming)) if scope is not None else None
            if refuse is not None:
                incoming.discard()
                return _refused(sop_instance, refuse, size, progress, errors, refusals)
            arrival.status, arrival.sealed = STORE_SUCCESS, incoming
            return arrival
    elif incoming is not None:
        incoming.discard()
    errors.append(f"{sop_instance}: {writer.error or 'not expected by any retrieve'}")
    return arrival


def _drop(fragment: bytes | memoryview) -> None:
    """Where the fragments of a refused instance go."""


def _identifiers(incoming: Incoming) -> Mapping[str, str] | None:
    """The UIDs ``seal`` read (the store's Incoming has them; other sinks may not)."""
    identifiers: Mapping[str, str] | None = getattr(incoming, "identifiers", None)
    return identifiers


def _refused(
    sop_instance: str,
    why: str,
    size: int,
    progress: Progress,
    errors: list[str],
    refusals: Refusals | None,
) -> Arrival:
    if refusals is None:
        errors.append(f"refused {sop_instance}: {why}")
    else:
        refusals.add(sop_instance, why)
    progress.add(refused=1)
    return Arrival(STORE_NOT_AUTHORIZED, None, size, progress, errors, sop_instance)

"""What a retrieve asks for, the units it is fetched in, and how it ended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from qrclient.net.dictionary import COMMON
from qrclient.net.identifier import Attribute, Identifier
from qrclient.net.presentation import ContextRequest
from qrclient.net.storage_classes import storage_contexts, unknown_class_packs
from qrclient.ops.query import QUERY_RETRIEVE_LEVEL, Key, build_query, parse_key
from qrclient.ops.storing import InstanceSink, Scope
from qrclient.vocabulary import Level, Model

PATIENT_ID = COMMON["PatientID"][0]
STUDY_INSTANCE_UID = COMMON["StudyInstanceUID"][0]
SERIES_INSTANCE_UID = COMMON["SeriesInstanceUID"][0]
SOP_INSTANCE_UID = COMMON["SOPInstanceUID"][0]
REFUSALS_KEPT = 100  # reasons kept for the summary; every refusal is counted


class StoreIndex(Protocol):
    """What the retrieve needs to know about the local store."""

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]: ...

    def instances_in_study(self, study_instance_uid: str) -> int: ...


class RetrieveStore(InstanceSink, StoreIndex, Protocol):
    """A store that takes the instances and knows what it holds (qrclient.store.Store)."""


class RetrieveState(Enum):
    COMPLETE = "complete"  # everything asked for is in the store (or at the destination)
    PARTIAL = "partial"  # some instances failed, warned, or the job was cancelled
    FAILED = "failed"  # nothing could be retrieved
    NOT_FOUND = "not found"  # the peer has nothing matching the request


@dataclass(slots=True)
class RetrieveOutcome:
    planned: int | None = None  # instances the plan covers (None: the peer does not say)
    skipped: int = 0
    received: int = 0
    received_bytes: int = 0
    completed: int = 0  # sub-operations the peer reports completed
    failed: int = 0
    warning: int = 0
    destination: str = ""  # a C-MOVE to another AE: its AE title (nothing comes here)
    refused_instances: int = 0  # outside the request: refused, never stored
    refused_connections: int = 0  # associations our listener refused meanwhile
    refusals: list[str] = field(default_factory=list)  # why (the first REFUSALS_KEPT)
    errors: list[str] = field(default_factory=list)  # instances or requests that failed
    # A failure every request would meet, which stopped the job: (what, hint).
    stopped: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)  # worth saying, not a failure
    network_failures: int = 0  # requests lost to connection, rejection, abort, timeout
    status_failures: int = 0  # requests the peer answered with a failure status
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def state(self) -> RetrieveState:
        done = self.received + self.skipped + (self.completed if self.destination else 0)
        if self.cancelled or self.failed or self.warning or self.errors:
            return RetrieveState.PARTIAL if done else RetrieveState.FAILED
        if self.planned == 0:
            return RetrieveState.NOT_FOUND
        return RetrieveState.COMPLETE

    def refuse(self, reasons: Iterable[str]) -> None:
        """Keep the first reasons for the summary (the counts are kept elsewhere)."""
        room = REFUSALS_KEPT - len(self.refusals)
        if room > 0:
            self.refusals.extend(list(reasons)[:room])


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

    def values(self, keyword: str) -> tuple[str, ...]:
        """The values given for ``keyword`` (a ``\\``-list is several), in order."""
        found: dict[str, None] = {}
        for key in self.keys:
            if key.keyword == keyword and key.value:
                found.update(dict.fromkeys(v.strip() for v in key.value.split("\\") if v.strip()))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class PlannedInstance:
    sop_instance_uid: str
    sop_class_uid: str  # "" when the peer does not say
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str = ""


@dataclass(frozen=True, slots=True)
class Unit:
    """One C-GET or C-MOVE request: a whole study or series, or a batch of its instances.

    ``sop_classes`` empty: unknown. ``pack`` names the storage contexts a C-GET proposes
    for instances of unknown classes (None: those of ``sop_classes``, else the first pack).
    """

    level: Level
    study_uid: str
    series_uid: str = ""
    sop_instance_uids: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()
    patient_id: str = ""
    pack: int | None = None

    def scope(self, sop_instance_uids: Sequence[str] | None = None) -> Scope:
        """What this unit (or these of its instances) may deliver."""
        uids = self.sop_instance_uids if sop_instance_uids is None else sop_instance_uids
        return Scope(
            frozenset((self.study_uid,)) if self.study_uid else frozenset(),
            frozenset((self.series_uid,))
            if self.series_uid and self.level is not Level.STUDY
            else frozenset(),
            frozenset(uids) if self.level is Level.IMAGE else frozenset(),
        )

    def storage_contexts(self) -> Sequence[ContextRequest]:
        """The storage contexts a C-GET of this unit proposes (at most 127)."""
        if self.pack is not None:
            return unknown_class_packs()[self.pack]
        if self.sop_classes:
            return storage_contexts(self.sop_classes)
        return unknown_class_packs()[0]

    def next_pack(self) -> int | None:
        """The pack to ask again with for instances the peer could not send, if any."""
        # A unit of known classes tried them; one of unknown classes tried the first pack.
        first = 0 if self.sop_classes else 1
        following = first if self.pack is None else self.pack + 1
        return following if following < len(unknown_class_packs()) else None


def unit_identifier(
    unit: Unit, model: Model, sop_instance_uids: Sequence[str] | None = None
) -> Identifier:
    """The C-GET / C-MOVE identifier of ``unit`` (or of these of its instances)."""
    attributes = [Attribute(QUERY_RETRIEVE_LEVEL, "CS", unit.level.value)]
    if model is Model.PATIENT:
        attributes.append(Attribute(PATIENT_ID, "LO", unit.patient_id))
    attributes.append(Attribute(STUDY_INSTANCE_UID, "UI", unit.study_uid))
    if unit.level is not Level.STUDY:
        attributes.append(Attribute(SERIES_INSTANCE_UID, "UI", unit.series_uid))
    if unit.level is Level.IMAGE:
        uids = unit.sop_instance_uids if sop_instance_uids is None else sop_instance_uids
        attributes.append(Attribute(SOP_INSTANCE_UID, "UI", "\\".join(uids)))
    return Identifier.of(attributes)

"""What the network core tells its observer (``Settings.observer``), one class per event.

The association and the listener report each step: connecting, the A-ASSOCIATE
exchange, every DIMSE message, release and abort, errors. The -v log, the UI's log
pane and traces read them with ``match``. ``record(event)`` gives an event's fields
as a trace writes them, under the names of ``Event.name`` and in a fixed order.

Observers with a true ``pdu_level`` attribute (traces) also get the PDU-level events
(``PDU_LEVEL``), and each event tagged with its association's number and role, so
interleaved associations untangle (``tagging``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Tag:
    """Which association an event belongs to: numbered in this process, and our role."""

    association: int
    role: str  # "requestor" or "listener"


@dataclass(frozen=True, slots=True)
class _Event:
    name: ClassVar[str]
    tag: Tag | None = field(default=None, kw_only=True)

    def details(self) -> dict[str, object]:
        """The fields a trace writes, without the tag."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tag"}


# -- as requestor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected(_Event):
    name = "connected"
    peer: str
    seconds: float  # TCP connect (and TLS handshake)


@dataclass(frozen=True, slots=True)
class ProposedContextInfo:
    id: int
    abstract_syntax: str  # named when pydicom knows it
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AssociateRequested(_Event):
    name = "associate-rq"
    calling_ae: str
    called_ae: str
    max_pdu: int
    size: int  # bytes of the PDU
    contexts: tuple[ProposedContextInfo, ...]

    def details(self) -> dict[str, object]:
        return {
            "calling_ae": self.calling_ae,
            "called_ae": self.called_ae,
            "max_pdu": self.max_pdu,
            "bytes": self.size,
            "contexts": [
                {
                    "id": c.id,
                    "abstract_syntax": c.abstract_syntax,
                    "transfer_syntaxes": list(c.transfer_syntaxes),
                }
                for c in self.contexts
            ],
        }


@dataclass(frozen=True, slots=True)
class AssociateRejected(_Event):
    name = "associate-rj"
    result: int
    source: int
    reason: int
    error: str  # what it means


@dataclass(frozen=True, slots=True)
class SettledContextInfo:
    id: int
    abstract_syntax: str  # named when pydicom knows it
    result: str  # "accepted" or why not
    transfer_syntax: str  # "" when rejected without one


@dataclass(frozen=True, slots=True)
class AssociateAccepted(_Event):
    name = "associate-ac"
    size: int  # bytes of the PDU
    peer_implementation_class_uid: str
    peer_implementation_version_name: str | None
    peer_max_pdu: int  # 0: unlimited
    contexts: tuple[SettledContextInfo, ...]

    def details(self) -> dict[str, object]:
        return {
            "bytes": self.size,
            "peer_implementation_class_uid": self.peer_implementation_class_uid,
            "peer_implementation_version_name": self.peer_implementation_version_name,
            "peer_max_pdu": self.peer_max_pdu,
            "contexts": [
                {
                    "id": c.id,
                    "abstract_syntax": c.abstract_syntax,
                    "result": c.result,
                    "transfer_syntax": c.transfer_syntax,
                }
                for c in self.contexts
            ],
        }


@dataclass(frozen=True, slots=True)
class Failed(_Event):
    name = "error"
    error: str


# -- DIMSE -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dimse(_Event):
    # The command's non-empty attributes (dimse.Command.summary), "command" first.
    summary: Mapping[str, object]

    @property
    def command(self) -> str:
        return str(self.summary.get("command", "?"))

    def details(self) -> dict[str, object]:
        return dict(self.summary)


@dataclass(frozen=True, slots=True)
class DimseSent(_Dimse):
    name = "dimse-sent"


@dataclass(frozen=True, slots=True)
class DimseReceived(_Dimse):
    name = "dimse-received"


# -- PDU level (traces only) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PduSent(_Event):
    name = "pdu-sent"
    pdu_type: str
    pdus: int
    size: int  # bytes of the PDUs
    dataset_bytes: int

    def details(self) -> dict[str, object]:
        return {
            "pdu_type": self.pdu_type,
            "pdus": self.pdus,
            "bytes": self.size,
            "dataset_bytes": self.dataset_bytes,
        }


@dataclass(frozen=True, slots=True)
class PduReceived(_Event):
    name = "pdu-received"
    pdu_type: str
    size: int  # bytes of the PDU

    def details(self) -> dict[str, object]:
        return {"pdu_type": self.pdu_type, "bytes": self.size}


@dataclass(frozen=True, slots=True)
class DatasetReceived(_Event):
    name = "dataset-received"
    size: int  # bytes of the data set

    def details(self) -> dict[str, object]:
        return {"bytes": self.size}


# -- ending ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReleaseRequested(_Event):
    name = "release-rq"


@dataclass(frozen=True, slots=True)
class Released(_Event):
    name = "released"


@dataclass(frozen=True, slots=True)
class ReleasedByPeer(_Event):
    name = "peer-released"  # on our listener, the normal end


@dataclass(frozen=True, slots=True)
class AbortSent(_Event):
    name = "abort-sent"


# -- our listener ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenerAssociateRequested(_Event):
    name = "listener-associate-rq"
    calling_ae: str
    called_ae: str
    address: str
    contexts: int  # how many proposed


@dataclass(frozen=True, slots=True)
class ListenerAssociateRejected(_Event):
    name = "listener-associate-rj"
    reason: str


@dataclass(frozen=True, slots=True)
class ListenerAssociateAccepted(_Event):
    name = "listener-associate-ac"
    accepted_contexts: int


Event = (
    Connected
    | AssociateRequested
    | AssociateRejected
    | AssociateAccepted
    | Failed
    | DimseSent
    | DimseReceived
    | PduSent
    | PduReceived
    | DatasetReceived
    | ReleaseRequested
    | Released
    | ReleasedByPeer
    | AbortSent
    | ListenerAssociateRequested
    | ListenerAssociateRejected
    | ListenerAssociateAccepted
)
# Sent only to observers with a true ``pdu_level``; a trace keeps them from the -v log.
PDU_LEVEL = (PduSent, PduReceived, DatasetReceived)

# Receives each event; kept off the hot path unless set.
Observer = Callable[[Event], None]


def record(event: Event) -> dict[str, object]:
    """The event's fields as a trace writes them: its tag first, if it has one."""
    if event.tag is None:
        return event.details()
    return {"association": event.tag.association, "role": event.tag.role, **event.details()}


def wants_pdu_level(observer: Observer | None) -> bool:
    return bool(getattr(observer, "pdu_level", False))


_ASSOCIATION_NUMBERS = itertools.count(1)


class _Tagging:
    """Tags each event with its association's number, so interleaved traces untangle."""

    pdu_level = True

    def __init__(self, observer: Observer, tag: Tag) -> None:
        self._observer = observer
        self._tag = tag

    def __call__(self, event: Event) -> None:
        self._observer(replace(event, tag=self._tag))


def tagging(observer: Observer | None, role: str) -> Observer | None:
    """The observer for one new association: PDU-level observers get its events tagged
    (with a new number), any other as it is."""
    if observer is None or not wants_pdu_level(observer):
        return observer
    return _Tagging(observer, Tag(next(_ASSOCIATION_NUMBERS), role))

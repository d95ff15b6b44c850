"""Name resolution, TCP, association, C-ECHO and the Q/R contexts the peer accepts.

One association proposes Verification and each Q/R SOP class once per transfer syntax
probed (25 contexts, well within the 128 allowed), with relational queries asked for by
extended negotiation: its answer fills most of the report in one round trip.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field, replace

import anyio
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from qrclient.jobs.doctor.report import Check, Report, State, Stopwatch
from qrclient.net.association import Association
from qrclient.net.errors import (
    AssociationRejected,
    ConnectFailed,
    DicomNetworkError,
    NoAcceptedContext,
)
from qrclient.net.events import Connected, Event, Observer
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest, NegotiatedContext, QueryOptions
from qrclient.net.settings import Settings
from qrclient.net.uids import VERIFICATION
from qrclient.ops.echo import echo
from qrclient.vocabulary import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)

PROBED_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
# (check name, SOP class, service) in report order.
QR_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("Patient Root C-FIND", PATIENT_ROOT_FIND, "C-FIND"),
    ("Patient Root C-MOVE", PATIENT_ROOT_MOVE, "C-MOVE"),
    ("Patient Root C-GET", PATIENT_ROOT_GET, "C-GET"),
    ("Study Root C-FIND", STUDY_ROOT_FIND, "C-FIND"),
    ("Study Root C-MOVE", STUDY_ROOT_MOVE, "C-MOVE"),
    ("Study Root C-GET", STUDY_ROOT_GET, "C-GET"),
)
_RELATIONAL = QueryOptions(relational=True)


@dataclass(slots=True)
class Negotiation:
    """What the probing association found out, for the checks that follow."""

    accepted: dict[str, list[str]] = field(default_factory=dict)  # SOP class -> syntaxes
    relational: dict[str, bool] = field(default_factory=dict)  # FIND SOP class -> granted
    refusals: dict[str, set[str]] = field(default_factory=dict)  # SOP class -> the reasons

    def accepts(self, sop_class: str) -> bool:
        return bool(self.accepted.get(sop_class))


async def check_resolution(peer: Peer, report: Report) -> bool:
    """Name resolution of the peer's host; True when it resolved."""
    watch = Stopwatch()
    try:
        ipaddress.ip_address(peer.host)
    except ValueError:
        pass
    else:
        report.add(Check("name resolution", State.OK, f"{peer.host} is an address", "", 0.0))
        return True
    try:
        found = await anyio.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        report.add(
            Check(
                "name resolution",
                State.FAILED,
                f"cannot resolve host name {peer.host!r} ({exc})",
                "check the spelling and this machine's DNS, or use the PACS's IP address",
                watch.seconds,
            )
        )
        return False
    addresses = sorted({str(item[4][0]) for item in found})
    report.add(
        Check(
            "name resolution",
            State.OK,
            f"{peer.host} is {', '.join(addresses)}",
            "",
            watch.seconds,
        )
    )
    return True


def _probe_contexts() -> list[ContextRequest]:
    contexts = [ContextRequest(VERIFICATION)]
    for _, sop_class, service in QR_CLASSES:
        options = _RELATIONAL if service == "C-FIND" else None
        contexts.extend(
            ContextRequest(sop_class, (syntax,), query_options=options)
            for syntax in PROBED_SYNTAXES
        )
    return contexts


class _ConnectTimer:
    """Observer that notes when TCP connected, passing every event on."""

    def __init__(self, inner: Observer | None) -> None:
        self._inner = inner
        self.pdu_level = bool(getattr(inner, "pdu_level", False))
        self.connect_seconds: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Connected):
            self.connect_seconds = event.seconds
        if self._inner is not None:
            self._inner(event)


async def check_association(peer: Peer, settings: Settings, report: Report) -> Negotiation | None:
    """TCP, association, C-ECHO and the contexts; None when no association was made."""
    timer = _ConnectTimer(settings.observer)
    watch = Stopwatch()
    try:
        association = await Association.connect(
            peer, _probe_contexts(), replace(settings, observer=timer)
        )
    except ConnectFailed as exc:
        report.add(Check("TCP connection", State.FAILED, exc.message, exc.hint, watch.seconds))
        return None
    except DicomNetworkError as exc:
        _tcp_ok(peer, timer, report)
        report.add(Check("association", State.FAILED, _rejection(exc), exc.hint, watch.seconds))
        return None
    try:
        seconds = watch.seconds
        _tcp_ok(peer, timer, report)
        ours = settings.max_pdu
        theirs = association.peer_max_pdu or "unlimited"
        version = association.peer_implementation_version_name or "no version name"
        report.add(
            Check(
                "association",
                State.OK,
                f"accepted for {settings.calling_ae} -> {peer.ae_title}; peer {version} "
                f"({association.peer_implementation_class_uid or 'no class UID'}); max PDU: "
                f"peer {theirs}, ours {ours}",
                "",
                seconds,
            )
        )
        report.add(await _check_echo(association))
        negotiation = _negotiation(association.contexts, association)
    except BaseException:
        await association.abort()
        raise
    with anyio.CancelScope(shield=True):
        await association.release()
    _add_context_checks(negotiation, settings.calling_ae, report)
    return negotiation


def _tcp_ok(peer: Peer, timer: _ConnectTimer, report: Report) -> None:
    report.add(
        Check(
            "TCP connection",
            State.OK,
            f"{peer.host}:{peer.port} accepts connections",
            "",
            timer.connect_seconds,
        )
    )


def _rejection(error: DicomNetworkError) -> str:
    if isinstance(error, AssociationRejected):
        return (
            f"{error.message} (result {error.result}, source {error.source}, reason {error.reason})"
        )
    if isinstance(error, NoAcceptedContext):
        return f"accepted, but {error.message.removeprefix('the peer ')}"
    return error.message


async def _check_echo(association: Association) -> Check:
    if not any(c.accepted for c in association.contexts if c.abstract_syntax == VERIFICATION):
        return Check(
            "C-ECHO",
            State.WARNING,
            "the peer does not accept Verification (C-ECHO)",
            "nothing to fix for queries; 'qrclient echo' will not work with this peer",
        )
    watch = Stopwatch()
    try:
        seconds = await echo(association)
    except DicomNetworkError as exc:  # a failure status, a timeout, a dropped association
        return Check("C-ECHO", State.FAILED, exc.message, exc.hint, watch.seconds)
    return Check("C-ECHO", State.OK, "answered Success; the time is the round trip", "", seconds)


def _negotiation(contexts: list[NegotiatedContext], association: Association) -> Negotiation:
    negotiation = Negotiation()
    for context in contexts:
        syntaxes = negotiation.accepted.setdefault(str(context.abstract_syntax), [])
        if context.accepted and context.transfer_syntax is not None:
            syntaxes.append(str(context.transfer_syntax))
        elif not context.accepted:
            reasons = negotiation.refusals.setdefault(str(context.abstract_syntax), set())
            reasons.add(context.reason)
    for sop_class in (PATIENT_ROOT_FIND, STUDY_ROOT_FIND):
        granted = association.query_options.get(sop_class)
        negotiation.relational[sop_class] = bool(granted and granted.relational)
    return negotiation


_NOT_ACCEPTED_FIX = {
    "C-FIND": "allow queries (C-FIND) for AE title {aet} on the PACS",
    "C-MOVE": "allow C-MOVE for AE title {aet} on the PACS, or retrieve with 'qrclient get'",
    "C-GET": "nothing to do if C-MOVE works ('qrclient retrieve' falls back to it); "
    "or allow C-GET for AE title {aet} on the PACS (it needs no firewall opening)",
}


def _add_context_checks(negotiation: Negotiation, calling_ae: str, report: Report) -> None:
    services = {"C-FIND": False, "C-MOVE": False, "C-GET": False}
    for _, sop_class, service in QR_CLASSES:
        services[service] = services[service] or negotiation.accepts(sop_class)
    retrieves = services["C-MOVE"] or services["C-GET"]
    for name, sop_class, service in QR_CLASSES:
        syntaxes = negotiation.accepted.get(sop_class, [])
        if syntaxes:
            names = ", ".join(UID(s).name for s in syntaxes)
            refused = [UID(s).name for s in PROBED_SYNTAXES if s not in syntaxes]
            but = f"; not with {', '.join(refused)}" if refused else ""
            report.add(Check(name, State.OK, f"accepted with {names}{but}"))
            continue
        # Not offered at all by the peer is a failure; one of two models missing is not.
        essential = not services[service] and (service == "C-FIND" or not retrieves)
        report.add(
            Check(
                name,
                State.FAILED if essential else State.WARNING,
                f"not accepted ({'; '.join(sorted(negotiation.refusals.get(sop_class, ())))}) "
                f"with any of {', '.join(UID(s).name for s in PROBED_SYNTAXES)}",
                _NOT_ACCEPTED_FIX[service].format(aet=calling_ae),
            )
        )

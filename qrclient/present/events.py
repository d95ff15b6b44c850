"""Association and DIMSE events (``Settings.observer``) as lines a person can read.

Statuses are decoded from PS3.4 with their likely fix, so a log pane or trace shows
"Unable to Process (0xC000): check ..." instead of a bare number. What the peer wrote
is shown inert (``qrclient.present.printable``): a log line never carries an escape sequence.
"""

from __future__ import annotations

from qrclient.net.events import (
    AssociateAccepted,
    AssociateRequested,
    Connected,
    DimseReceived,
    DimseSent,
    Event,
    Failed,
    record,
)
from qrclient.net.status import Status
from qrclient.present.printable import printable

# Command attributes worth a log line; UIDs and the rest stay out of the way.
_SHOWN = {
    "message_id": "id",
    "message_id_being_responded_to": "for",
    "move_destination": "destination",
    "remaining": "remaining",
    "completed": "completed",
    "failed": "failed",
    "warning": "warning",
    "error_comment": "comment",
}


def describe_event(event: Event) -> list[str]:
    """One headline and indented detail lines for an observer event, safe to print:
    the peer's text in them (version name, error comments, UIDs) is made printable."""
    return [printable(line) for line in _describe(event)]


def _describe(event: Event) -> list[str]:
    match event:
        case AssociateRequested():
            lines = [
                f"A-ASSOCIATE-RQ {event.calling_ae} -> {event.called_ae}, max PDU {event.max_pdu}"
            ]
            for proposed in event.contexts:
                syntaxes = ", ".join(_uid_name(s) for s in proposed.transfer_syntaxes)
                lines.append(f"  proposed [{proposed.id}] {proposed.abstract_syntax}")
                lines.append(f"      transfer syntaxes: {syntaxes}")
            return lines
        case AssociateAccepted():
            version = event.peer_implementation_version_name or "?"
            lines = [
                f"A-ASSOCIATE-AC peer {version} ({event.peer_implementation_class_uid}), "
                f"max PDU {event.peer_max_pdu or 'unlimited'}"
            ]
            for settled in event.contexts:
                syntax = _uid_name(settled.transfer_syntax or "-")
                lines.append(
                    f"  [{settled.id}] {settled.abstract_syntax}: {settled.result} {syntax}"
                )
            return lines
        case DimseSent() | DimseReceived():
            return [_dimse(event)]
        case Failed():
            return [f"error: {event.error}"]
        case Connected():
            return [f"connected to {event.peer} in {_ms(event.seconds)}"]
    extra = "".join(f" {name}={value}" for name, value in record(event).items())
    return [f"{_HEADLINES.get(event.name, event.name)}{extra}"]


_HEADLINES = {
    "release-rq": "A-RELEASE-RQ",
    "released": "released",
    "abort-sent": "A-ABORT sent",
    "peer-released": "A-RELEASE-RQ from the peer: released",
}


def _dimse(event: DimseSent | DimseReceived) -> str:
    details = event.summary
    command = event.command
    arrow = "->" if isinstance(event, DimseSent) else "<-"
    parts = [f"{arrow} {command}"]
    hint = ""
    status = details.get("status")
    if isinstance(status, int):
        decoded = Status.of_command(command, status)
        if decoded is not None:
            parts.append(str(decoded))
            hint = decoded.hint if decoded.is_failure else ""
        else:
            parts.append(f"status 0x{status:04X}")
    for name, label in _SHOWN.items():
        value = details.get(name)
        if value is not None:
            parts.append(f"{label}={value}")
    if hint:
        parts.append(f"(hint: {hint})")
    return " ".join(parts)


def _uid_name(value: object) -> str:
    """A transfer syntax by name (pydicom's dictionary), else as given."""
    from pydicom.uid import UID  # here: only -v and the log pane name them; slow import

    name = UID(str(value)).name
    return name or str(value)


def _ms(value: object) -> str:
    return f"{float(value) * 1000:.1f} ms" if isinstance(value, int | float) else "?"

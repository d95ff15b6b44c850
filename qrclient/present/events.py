"""Association and DIMSE events (``Settings.observer``) as lines a person can read.

Statuses are decoded from PS3.4 with their likely fix, so a log pane or trace shows
"Unable to Process (0xC000): check ..." instead of a bare number. What the peer wrote
is shown inert (``qrclient.present.printable``): a log line never carries an escape sequence.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def describe_event(event: str, details: Mapping[str, object]) -> list[str]:
    """One headline and indented detail lines for an observer event, safe to print:
    the peer's text in them (version name, error comments, UIDs) is made printable."""
    return [printable(line) for line in _describe(event, details)]


def _describe(event: str, details: Mapping[str, object]) -> list[str]:
    if event == "associate-rq":
        lines = [
            f"A-ASSOCIATE-RQ {details.get('calling_ae')} -> {details.get('called_ae')}, "
            f"max PDU {details.get('max_pdu')}"
        ]
        for context in _contexts(details):
            syntaxes = ", ".join(_uid_name(s) for s in _list(context.get("transfer_syntaxes")))
            lines.append(f"  proposed [{context.get('id')}] {context.get('abstract_syntax')}")
            lines.append(f"      transfer syntaxes: {syntaxes}")
        return lines
    if event == "associate-ac":
        version = details.get("peer_implementation_version_name") or "?"
        lines = [
            f"A-ASSOCIATE-AC peer {version} ({details.get('peer_implementation_class_uid')}), "
            f"max PDU {details.get('peer_max_pdu') or 'unlimited'}"
        ]
        for context in _contexts(details):
            syntax = _uid_name(context.get("transfer_syntax") or "-")
            lines.append(
                f"  [{context.get('id')}] {context.get('abstract_syntax')}: "
                f"{context.get('result')} {syntax}"
            )
        return lines
    if event in ("dimse-sent", "dimse-received"):
        return [_dimse(event, details)]
    if event == "error":
        return [f"error: {details.get('error')}"]
    if event == "connected":
        return [f"connected to {details.get('peer')} in {_ms(details.get('seconds'))}"]
    names = {
        "release-rq": "A-RELEASE-RQ",
        "released": "released",
        "abort-sent": "A-ABORT sent",
        "peer-released": "A-RELEASE-RQ from the peer: released",
    }
    extra = "".join(f" {name}={value}" for name, value in details.items())
    return [f"{names.get(event, event)}{extra}"]


def _dimse(event: str, details: Mapping[str, object]) -> str:
    command = str(details.get("command", "?"))
    arrow = "->" if event == "dimse-sent" else "<-"
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


def _contexts(details: Mapping[str, object]) -> list[Mapping[str, object]]:
    return [c for c in _list(details.get("contexts")) if isinstance(c, Mapping)]


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _uid_name(value: object) -> str:
    """A transfer syntax by name (pydicom's dictionary), else as given."""
    from pydicom.uid import UID  # here: only -v and the log pane name them; slow import

    name = UID(str(value)).name
    return name or str(value)


def _ms(value: object) -> str:
    return f"{float(value) * 1000:.1f} ms" if isinstance(value, int | float) else "?"

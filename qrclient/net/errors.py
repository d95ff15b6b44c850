"""Typed failures of the network core, each naming the cause and the likely fix.

Every error carries a one-line ``message`` (what happened) and a ``hint`` (what to
change); ``str(error)`` joins them so a face can print a single clear line.
"""

from __future__ import annotations


class DicomNetworkError(Exception):
    """Base of every failure raised by the network core."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class ConnectFailed(DicomNetworkError):
    """TCP connection could not be made: name not resolved, refused, unreachable."""


class TlsFailed(DicomNetworkError):
    """The TLS handshake failed: certificate not trusted or refused, no TLS on the port."""


class ListenFailed(DicomNetworkError):
    """Our storage listener could not bind its address (port in use, no permission)."""


class AssociationRejected(DicomNetworkError):
    """The peer answered A-ASSOCIATE-RJ."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        self.result = result
        self.source = source
        self.reason = reason
        text, hint = describe_rejection(result, source, reason)
        super().__init__(text, hint)


class NoAcceptedContext(DicomNetworkError):
    """The association was accepted but none of the contexts we need were."""


class AssociationAborted(DicomNetworkError):
    """The peer (or its network provider) sent A-ABORT, or the connection dropped."""

    def __init__(self, message: str, hint: str = "", source: int = 0, reason: int = 0) -> None:
        super().__init__(message, hint)
        self.source = source
        self.reason = reason


class ProtocolError(DicomNetworkError):
    """The peer sent something the upper-layer or DIMSE protocol does not allow."""


class DataSetTooLarge(ProtocolError):
    """A data set went beyond what we accept for it (``limit`` bytes).

    ``whole``: the rest of it was read and discarded, so the association can go on
    (an instance beyond --max-instance, refused); else it must be aborted.
    """

    def __init__(self, message: str, hint: str, *, size: int, limit: int, whole: bool) -> None:
        super().__init__(message, hint)
        self.size = size
        self.limit = limit
        self.whole = whole


class DicomTimeout(DicomNetworkError):
    """One of the configured timeouts expired; ``which`` names it (as the option does)."""

    def __init__(self, which: str, seconds: float, waiting_for: str, since: str = "") -> None:
        self.which = which
        self.seconds = seconds
        since = f" {since}" if since else ""
        super().__init__(
            f"{which} timeout: no {waiting_for} within {seconds:g} s{since}",
            f"the peer may be overloaded or stalled; raise --{which}-timeout if it is just slow",
        )


_SOURCES = {
    1: "the peer's DICOM application (service user)",
    2: "the peer's DICOM network layer (ACSE)",
    3: "the peer's DICOM network layer (presentation)",
}

# (source, reason) -> (what it means, what to do about it)
_REJECT_REASONS: dict[tuple[int, int], tuple[str, str]] = {
    (1, 1): ("no reason given", "check the peer's log; it may refuse unknown calling AE titles"),
    (1, 2): ("application context name not supported", "the peer does not speak DICOM 3.0"),
    (1, 3): (
        "calling AE title not recognised",
        "register our AE title (and this host's address) on the PACS, or pass --aet "
        "with an AE title it already knows",
    ),
    (1, 7): (
        "called AE title not recognised",
        "the AE title after NODE's '@' must be the PACS's own AE title "
        "(case-sensitive); check its configuration",
    ),
    (2, 1): ("no reason given", "check the peer's log"),
    (2, 2): ("protocol version not supported", "the peer does not speak DICOM upper layer v1"),
    (3, 1): ("temporary congestion", "the peer is busy; retry later or use fewer associations"),
    (3, 2): (
        "local limit exceeded",
        "the peer has too many associations open; retry later or use fewer associations",
    ),
}


def describe_rejection(result: int, source: int, reason: int) -> tuple[str, str]:
    """Decode an A-ASSOCIATE-RJ into (message, hint) per PS3.8 9.3.4."""
    kind = {1: "permanently", 2: "transiently"}.get(result, f"(result {result})")
    who = _SOURCES.get(source, f"source {source}")
    meaning, hint = _REJECT_REASONS.get(
        (source, reason), (f"reason {reason}", "check the peer's log for why it refused")
    )
    return f"association rejected {kind} by {who}: {meaning}", hint


_ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognised PDU",
    2: "unexpected PDU",
    4: "unrecognised PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


def describe_abort(source: int, reason: int) -> tuple[str, str]:
    """Decode an A-ABORT's source and reason (PS3.8 9.3.8) into (message, hint)."""
    if source == 2:
        why = _ABORT_REASONS.get(reason, f"reason {reason}")
        return (
            f"association aborted by the peer's network layer: {why}",
            "the peer did not understand what we sent; the log of -v helps its vendor",
        )
    return (
        "association aborted by the peer",
        "the peer gave up on the association; its log says why (a timeout or a limit is common)",
    )


class ConnectionDropped(AssociationAborted):
    """The TCP connection closed without A-RELEASE or A-ABORT (the cause is chained)."""

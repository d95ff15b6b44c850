"""DIMSE status codes decoded (PS3.4 and PS3.7 annex C) with the likely fix.

The categories and meanings are tabled below from PS3.7 annex C (the statuses of every
DIMSE service) and PS3.4 (each service class's own); the hints say what a PACS
administrator would check first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from qrclient.net.errors import DicomNetworkError


class Service(Enum):
    ECHO = "C-ECHO"
    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"
    STORE = "C-STORE"


_SERVICES = {service.value: service for service in Service}


class Category(Enum):
    SUCCESS = "success"
    PENDING = "pending"
    WARNING = "warning"
    CANCEL = "cancelled"
    FAILURE = "failure"
    UNKNOWN = "unknown"


# PS3.7 annex C: statuses any DIMSE service may answer with (most come from DIMSE-N).
_GENERAL: dict[int, tuple[Category, str]] = {
    0x0000: (Category.SUCCESS, "Success"),
    0x0105: (Category.FAILURE, "No Such Attribute"),
    0x0106: (Category.FAILURE, "Invalid Attribute Value"),
    0x0107: (Category.WARNING, "Attribute List Error"),
    0x0110: (Category.FAILURE, "Processing Failure"),
    0x0111: (Category.FAILURE, "Duplication SOP Instance"),
    0x0112: (Category.FAILURE, "No Such SOP Instance"),
    0x0113: (Category.FAILURE, "No Such Event Type"),
    0x0114: (Category.FAILURE, "No Such Argument"),
    0x0115: (Category.FAILURE, "Invalid Argument Value"),
    0x0116: (Category.WARNING, "Attribute Value Out of Range"),
    0x0117: (Category.FAILURE, "Invalid Object Instance"),
    0x0118: (Category.FAILURE, "No Such SOP Class"),
    0x0119: (Category.FAILURE, "Class-Instance Conflict"),
    0x0120: (Category.FAILURE, "Missing Attribute"),
    0x0121: (Category.FAILURE, "Missing Attribute Value"),
    0x0122: (Category.FAILURE, "Refused: SOP Class Not Supported"),
    0x0123: (Category.FAILURE, "No Such Action"),
    0x0124: (Category.FAILURE, "Refused: Not Authorised"),
    0x0210: (Category.FAILURE, "Duplicate Invocation"),
    0x0211: (Category.FAILURE, "Unrecognised Operation"),
    0x0212: (Category.FAILURE, "Mistyped Argument"),
    0x0213: (Category.FAILURE, "Resource Limitation"),
}

# PS3.4: each service's own statuses as (first code, last code, meaning); their category
# follows from the code (_category). C-ECHO (annex A) has none beyond the general ones.
_RETRIEVE = (
    (0xA701, 0xA701, "Refused: Out of resources, unable to calculate number of matches"),
    (0xA702, 0xA702, "Refused: Out of resources, unable to perform sub-operations"),
    (0xA900, 0xA900, "Identifier does not match SOP class"),
    # Frame-level retrieve (composite instance root retrieve, PS3.4 annex Y).
    (0xAA00, 0xAA00, "None of the frames requested were found in the SOP instance"),
    (0xAA01, 0xAA01, "Unable to create new object for this SOP class"),
    (0xAA02, 0xAA02, "Unable to extract frames"),
    (0xAA03, 0xAA03, "Time-based request received for a non-time-based original SOP Instance"),
    (0xAA04, 0xAA04, "Invalid request"),
    (0xC000, 0xCFFF, "Unable to Process"),
    (0xFF00, 0xFF00, "Sub-operations are continuing"),
)
_MEANINGS: dict[Service, tuple[tuple[int, int, str], ...]] = {
    Service.ECHO: (),
    Service.FIND: (  # PS3.4 C.4.1
        (0xA700, 0xA700, "Refused: Out of Resources"),
        (0xA710, 0xA710, "Invalid Prior Record Key"),
        (0xA900, 0xA900, "Identifier Does Not Match SOP Class"),
        (
            0xB001,
            0xB001,
            "Matching reached response limit, subsequent request may return additional matches",
        ),
        (0xC000, 0xCFFF, "Unable to Process"),
        (0xFF00, 0xFF00, "Matches are continuing, current match supplied"),
        (0xFF01, 0xFF01, "Matches are continuing, warning"),
    ),
    Service.MOVE: (  # PS3.4 C.4.2
        *_RETRIEVE,
        (0xA801, 0xA801, "Move destination unknown"),
        (0xB000, 0xB000, "Sub-operations completed, one or more failures"),
    ),
    Service.GET: (  # PS3.4 C.4.3
        *_RETRIEVE,
        (0xB000, 0xB000, "Sub-operations complete, one or more failures or warnings"),
    ),
    Service.STORE: (  # PS3.4 B.2.3
        (0xA700, 0xA7FF, "Refused: Out of Resources"),
        (0xA900, 0xA9FF, "Data Set Does Not Match SOP Class"),
        (0xB000, 0xB000, "Coercion of Data Elements"),
        (0xB006, 0xB006, "Element Discarded"),
        (0xB007, 0xB007, "Data Set Does Not Match SOP Class"),
        (0xC000, 0xCFFF, "Cannot Understand"),
    ),
}


def _category(code: int) -> Category:
    """The class a code belongs to (PS3.7 C.1 to C.5)."""
    general = _GENERAL.get(code)
    if general is not None:
        return general[0]
    if code == 0x0001 or 0xB000 <= code <= 0xBFFF:
        return Category.WARNING
    if 0xA000 <= code <= 0xAFFF or 0xC000 <= code <= 0xCFFF:
        return Category.FAILURE
    if code == 0xFE00:
        return Category.CANCEL
    if code in (0xFF00, 0xFF01):
        return Category.PENDING
    return Category.UNKNOWN


# (service or None for any, code) -> hint
_HINTS: dict[tuple[Service | None, int], str] = {
    (None, 0xA700): "the peer is out of resources: retry later, or narrow the query",
    (None, 0xA900): (
        "the identifier does not match the SOP class: check the level and that the "
        "keys belong to the query model (e.g. PATIENT level needs --model patient)"
    ),
    (None, 0xC000): "the peer could not process the request: check its log",
    (Service.FIND, 0xC000): (
        "the peer could not process the query: check its log; strict PACSs refuse a query "
        "without the unique keys of the levels above the one asked (e.g. -k "
        "SeriesInstanceUID at IMAGE level) or with a \\-separated list"
    ),
    (Service.MOVE, 0xC000): (
        "the peer could not process the request: check its log; the destination AE "
        "title must be registered on the PACS"
    ),
    (None, 0x0122): "the peer does not support this SOP class on this association",
    (None, 0x0124): "the peer refused: our AE title is not authorised for this service",
    (Service.MOVE, 0xA801): (
        "the PACS does not know the move destination, or (on some PACSs) cannot connect "
        "to it: register its AE title, host and port on the PACS (e.g. Orthanc's "
        "DicomModalities), and check that the PACS can reach that host and port"
    ),
    (Service.FIND, 0xFE00): (
        "the peer stopped early: it was cancelled, or it truncated the results at its "
        "configured limit (e.g. Orthanc's LimitFindResults); narrow the query"
    ),
    (Service.MOVE, 0xA702): (
        "the PACS could not deliver the instances: it cannot connect to the host and port "
        "it has for the destination (check them, and firewalls), or the destination "
        "refused or could not store them"
    ),
    (Service.GET, 0xA702): "we could not store all instances (check free disk space)",
}


@dataclass(frozen=True, slots=True)
class Status:
    """A decoded DIMSE status."""

    code: int
    service: Service

    @classmethod
    def of_command(cls, command_name: str, code: int) -> Status | None:
        """The status of a response named like ``C-FIND-RSP``; None for other commands."""
        service = _SERVICES.get(command_name.rsplit("-", 1)[0])
        return None if service is None else cls(code, service)

    @property
    def category(self) -> Category:
        return _category(self.code)

    @property
    def description(self) -> str:
        for first, last, meaning in _MEANINGS[self.service]:
            if first <= self.code <= last:
                return meaning
        general = _GENERAL.get(self.code)
        return general[1] if general else self.category.value.capitalize()

    @property
    def hint(self) -> str:
        # PS3.4 reserves the whole 0xCxxx range for "unable to process".
        code = 0xC000 if 0xC000 <= self.code <= 0xCFFF else self.code
        return (
            _HINTS.get((self.service, self.code))
            or _HINTS.get((self.service, code))
            or _HINTS.get((None, code), "")
        )

    @property
    def is_pending(self) -> bool:
        return self.category is Category.PENDING

    @property
    def is_failure(self) -> bool:
        return self.category in (Category.FAILURE, Category.UNKNOWN)

    def __str__(self) -> str:
        return f"{self.description} (0x{self.code:04X})"


class FailureStatus(DicomNetworkError):
    """The peer answered a request with a failure status."""

    def __init__(self, status: Status, error_comment: str | None = None) -> None:
        self.status = status
        self.error_comment = error_comment
        detail = f": {error_comment}" if error_comment else ""
        super().__init__(f"{status.service.value} failed with {status}{detail}", status.hint)

"""DIMSE status codes decoded (PS3.4 and PS3.7 annex C) with the likely fix.

The category and PS3.4 wording come from pynetdicom's status tables; the hints are ours:
they say what a PACS administrator would check first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pynetdicom import status as pnd_status

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


_TABLES = {
    Service.ECHO: pnd_status.VERIFICATION_SERVICE_CLASS_STATUS,
    Service.FIND: pnd_status.QR_FIND_SERVICE_CLASS_STATUS,
    Service.MOVE: pnd_status.QR_MOVE_SERVICE_CLASS_STATUS,
    Service.GET: pnd_status.QR_GET_SERVICE_CLASS_STATUS,
    Service.STORE: pnd_status.STORAGE_SERVICE_CLASS_STATUS,
}

_CATEGORIES = {
    pnd_status.STATUS_SUCCESS: Category.SUCCESS,
    pnd_status.STATUS_PENDING: Category.PENDING,
    pnd_status.STATUS_WARNING: Category.WARNING,
    pnd_status.STATUS_CANCEL: Category.CANCEL,
    pnd_status.STATUS_FAILURE: Category.FAILURE,
}

# (service or None for any, code) -> hint
_HINTS: dict[tuple[Service | None, int], str] = {
    (None, 0xA700): "the peer is out of resources: retry later, or narrow the query",
    (None, 0xA900): (
        "the identifier does not match the SOP class: check the level and that the "
        "keys belong to the query model (e.g. PATIENT level needs --model patient)"
    ),
    (None, 0xC000): (
        "the peer could not process the request: check its log; for C-MOVE, the "
        "destination AE title must be registered on the PACS"
    ),
    (None, 0x0122): "the peer does not support this SOP class on this association",
    (None, 0x0124): "the peer refused: our AE title is not authorised for this service",
    (Service.MOVE, 0xA801): (
        "the PACS does not know the move destination: register its AE title, host and "
        "port on the PACS (e.g. Orthanc's DicomModalities)"
    ),
    (Service.FIND, 0xFE00): (
        "the peer stopped early: it was cancelled, or it truncated the results at its "
        "configured limit (e.g. Orthanc's LimitFindResults); narrow the query"
    ),
    (Service.MOVE, 0xA702): "the destination ran out of resources to store the instances",
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
        entry = _TABLES[self.service].get(self.code)
        name = entry[0] if entry else pnd_status.code_to_category(self.code)
        return _CATEGORIES.get(name, Category.UNKNOWN)

    @property
    def description(self) -> str:
        entry = _TABLES[self.service].get(self.code)
        if entry and entry[1]:
            return entry[1]
        return self.category.value.capitalize()

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

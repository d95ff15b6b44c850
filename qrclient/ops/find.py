"""C-FIND as a stream of matches with a final outcome, cancellable by scope.

    async with find(association, query) as matches:
        async for dataset in matches:
            ...
    matches.outcome  # final status, count, cancelled / truncated, warnings

Leaving the block early, or cancelling the caller's scope, sends C-CANCEL and waits a
short grace period for the peer's final response; a peer that keeps sending (Orthanc
ignores C-CANCEL for C-FIND) gets the association aborted instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

import anyio
import anyio.lowlevel

from qrclient.net.association import Association
from qrclient.net.datasets import decode_dataset, encode_dataset
from qrclient.net.dictionary import COMMON
from qrclient.net.dimse import Command, CommandField, Priority, expect_response
from qrclient.net.errors import DicomNetworkError, ProtocolError
from qrclient.net.presentation import QueryOptions
from qrclient.net.status import Category, FailureStatus, Service, Status
from qrclient.net.text import SPECIFIC_CHARACTER_SET, decode_value
from qrclient.net.walk import scan_values
from qrclient.ops.cancel import cancel_request
from qrclient.ops.matching import AnswerCheck
from qrclient.ops.query import UNIQUE_KEY, Query
from qrclient.vocabulary import Level

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from qrclient.net.identifier import Identifier

CANCEL_GRACE = 2.0


class FindRequest(Protocol):
    """What a C-FIND sends: a query/retrieve Query, or a worklist query (ops.worklist)."""

    @property
    def sop_class(self) -> str: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    def as_identifier(self) -> Dataset | Identifier: ...


class FindState(Enum):
    RUNNING = "running"
    SUCCESS = "success"
    WARNING = "warning"
    CANCELLED = "cancelled"  # we cancelled (C-CANCEL honoured, or the association aborted)
    TRUNCATED = "truncated"  # the peer stopped early with Cancel status on its own
    FAILURE = "failure"


@dataclass(slots=True)
class FindOutcome:
    state: FindState = FindState.RUNNING
    status: Status | None = None
    count: int = 0
    warnings: list[str] = field(default_factory=list)
    aborted: bool = False  # the peer ignored C-CANCEL and the association was aborted
    error_comment: str | None = None
    duplicates: int = 0  # matches find_distinct dropped: their unique key came before
    unmatched: int = 0  # matches find_distinct dropped: they contradict a key of the query

    @property
    def done(self) -> bool:
        return self.state is not FindState.RUNNING

    @property
    def distinct(self) -> int:
        """Matches handed over: ``count`` less those find_distinct dropped."""
        return self.count - self.duplicates - self.unmatched


class FindResults:
    """The matches of one C-FIND; iterate inside ``async with``."""

    def __init__(self, association: Association, query: FindRequest, grace: float) -> None:
        self._association = association
        self._query = query
        self._grace = grace
        self._context = association.accepted_context(query.sop_class)
        self._message_id = 0
        self._started = False
        self.outcome = FindOutcome(warnings=list(query.warnings))

    async def __aenter__(self) -> Self:
        transfer_syntax = str(self._context.transfer_syntax)
        identifier = encode_dataset(self._query.as_identifier(), transfer_syntax)
        self._message_id = self._association.next_message_id()
        request = Command(
            command_field=CommandField.C_FIND_RQ,
            message_id=self._message_id,
            affected_sop_class_uid=self._query.sop_class,
            priority=Priority.MEDIUM,
        )
        await self._association.send(self._context.context_id, request, identifier)
        self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._started or self.outcome.done or not self._association.is_open:
            return
        if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
            await self._cancel()
        else:
            # Something broke mid-stream: nothing to drain, just tell the peer.
            self.outcome.state = FindState.FAILURE
            await self._association.abort()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Dataset:
        identifier = await self.next_identifier()
        if identifier is None:
            raise StopAsyncIteration
        return decode_dataset(identifier, self.transfer_syntax)

    @property
    def transfer_syntax(self) -> str:
        """The transfer syntax of the matches' identifiers."""
        return str(self._context.transfer_syntax)

    async def next_identifier(self) -> bytes | None:
        """The next match's identifier as received (not decoded); None after the last."""
        if self.outcome.done:
            return None
        try:
            # Matches may come from a buffer without any await: checkpoint so a cancelled
            # scope is honoured at the next match, not when the buffer runs dry.
            await anyio.lowlevel.checkpoint_if_cancelled()
            command, dataset = await self._receive()
        except anyio.get_cancelled_exc_class():
            await self._cancel()
            raise
        status = Status(command.status or 0, Service.FIND)
        if status.is_pending:
            if dataset is None:
                raise ProtocolError(
                    "a pending C-FIND response carried no identifier",
                    "the peer's DICOM stack is broken",
                )
            self.outcome.count += 1
            if status.code == 0xFF01:
                self._warn("the peer could not match some optional keys (0xFF01)")
            return dataset
        self._finish(status, command)
        return None

    async def _receive(self) -> tuple[Command, bytes | None]:
        message = await self._association.receive_message("C-FIND response")
        expect_response(message.command, CommandField.C_FIND_RSP, self._message_id)
        return message.command, message.dataset

    def _finish(self, status: Status, command: Command) -> None:
        self.outcome.status = status
        self.outcome.error_comment = command.error_comment
        category = status.category
        if category is Category.SUCCESS:
            self.outcome.state = FindState.SUCCESS
        elif category is Category.WARNING:
            self.outcome.state = FindState.WARNING
            self._warn(f"the peer finished with a warning: {status}")
        elif category is Category.CANCEL:
            # Cancel status we did not ask for means the peer cut the results short.
            self.outcome.state = FindState.TRUNCATED
            self._warn(f"results truncated by the peer after {self.outcome.count} matches")
        else:
            self.outcome.state = FindState.FAILURE
            raise FailureStatus(status, command.error_comment)

    def _warn(self, text: str) -> None:
        self.outcome.warnings.append(text)

    async def _cancel(self) -> None:
        """C-CANCEL, drain to the final response within the grace period, else abort."""
        self.outcome.state = FindState.CANCELLED

        async def handle_response() -> bool:
            command, _ = await self._receive()
            status = Status(command.status or 0, Service.FIND)
            if status.is_pending:
                return False
            self.outcome.status = status
            return True

        self.outcome.aborted = await cancel_request(
            self._association,
            self._context.context_id,
            self._message_id,
            self._grace,
            handle_response,
        )


def find(
    association: Association, query: FindRequest, *, grace: float = CANCEL_GRACE
) -> FindResults:
    """Start a C-FIND on an open association; see the module docstring."""
    return FindResults(association, query, grace)


MAX_DISTINCT = 1_000_000  # unique keys remembered: a peer that never stops cannot fill memory
_NOUNS = {Level.PATIENT: "patient", Level.STUDY: "study", Level.SERIES: "series"}


class DistinctResults(FindResults):
    """``FindResults`` handing over each match of the query once.

    Some PACSs answer a STUDY-level query with one response per instance. A later match
    with a unique key (StudyInstanceUID for STUDY...) seen before is dropped and counted
    in ``outcome.duplicates``; the first one adds a warning. A match without the key
    (not asked for, or left out by the peer) is always handed over.

    Matching on keys above the level asked, or on optional keys, is optional: a PACS
    may ignore them (dcmqrscp does, silently). A match whose returned values contradict
    a matching key is dropped and counted in ``outcome.unmatched``; see AnswerCheck.
    """

    def __init__(self, association: Association, query: Query, grace: float) -> None:
        super().__init__(association, query, grace)
        self._keyword = UNIQUE_KEY[query.level]
        self._noun = _NOUNS.get(query.level, "instance")
        self._tag = COMMON[self._keyword][0]
        granted = association.query_options.get(query.sop_class, QueryOptions())
        self._check = AnswerCheck(
            query,
            self._warn,
            fuzzy=granted.fuzzy_matching,
            combined_datetime=granted.datetime_matching,
        )
        self._wanted = self._check.tags | {self._tag}
        self._seen: set[bytes] = set()

    async def next_identifier(self) -> bytes | None:
        while (identifier := await super().next_identifier()) is not None:
            raw = _match_values(identifier, self.transfer_syntax, self._wanted)
            if not self._check.accepts(raw):
                self.outcome.unmatched += 1
                continue
            key = raw.get(self._tag, b"").rstrip(b" \x00")
            if not key or key not in self._seen:
                self._remember(key)
                return identifier
            self.outcome.duplicates += 1
            if self.outcome.duplicates == 1:
                self._warn(
                    f"the peer sent the same {self._noun} more than once (same "
                    f"{self._keyword}): each is shown once"
                )
        return None

    def _remember(self, key: bytes) -> None:
        if not key or len(self._seen) > MAX_DISTINCT:
            return
        if len(self._seen) == MAX_DISTINCT:  # once: the set stops growing after this one
            self._warn(f"more than {MAX_DISTINCT:,} matches: later duplicates are not merged")
        self._seen.add(key)


def find_distinct(
    association: Association, query: Query, *, grace: float = CANCEL_GRACE
) -> DistinctResults:
    """``find`` with each match handed over once; see :class:`DistinctResults`."""
    return DistinctResults(association, query, grace)


class ResultsTruncated(DicomNetworkError):
    """The peer stopped a C-FIND at its result cap (final status Cancel, 0xFE00)."""


async def find_values(association: Association, query: Query) -> list[dict[str, str]]:
    """Every match of ``query`` as keyword to text, for the query's text attributes.

    For callers that read a few UIDs and counts from each match (a retrieve's plan):
    values are read from the identifier's bytes directly, with no pydicom Dataset.
    Multiple values stay ``\\``-separated; an absent or empty attribute is ``""``.
    A match that does not parse is a ProtocolError, as with ``find``; answers cut
    short at the peer's result cap are ResultsTruncated (a plan must not take part of
    the matches for all of them).
    """
    keywords = {k.tag: k.keyword for k in query.keys if k.keyword}
    wanted = frozenset((*keywords, SPECIFIC_CHARACTER_SET))
    found: list[dict[str, str]] = []
    async with find(association, query) as results:
        while (identifier := await results.next_identifier()) is not None:
            raw = _match_values(identifier, results.transfer_syntax, wanted)
            charset = raw.get(SPECIFIC_CHARACTER_SET, b"")
            found.append(
                {kw: decode_value(raw.get(tag, b""), charset) for tag, kw in keywords.items()}
            )
    if results.outcome.state is FindState.TRUNCATED:
        raise ResultsTruncated(
            f"the peer cut a {query.level.value}-level C-FIND short at its result cap "
            f"({len(found)} matches)",
            "raise the PACS's limit (Orthanc: LimitFindResults), or retrieve smaller parts",
        )
    return found


def _match_values(identifier: bytes, syntax: str, wanted: frozenset[int]) -> dict[int, bytes]:
    try:
        return scan_values(identifier, 0, syntax, wanted)
    except ValueError as exc:
        raise ProtocolError(
            f"the peer sent a data set that does not decode ({exc})",
            "the peer's DICOM stack is broken; the log of -v helps its vendor",
        ) from exc

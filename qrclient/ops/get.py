"""C-GET on one association: C-STORE sub-operations arrive on it and are stored as they come.

Each instance's fragments go straight from the receive buffer into the sink (a file in
the local store) and are never decoded; the C-STORE response is sent once the sink
committed the file. Cancelling sends C-CANCEL (Orthanc honours it for C-GET), keeps
storing what is already on its way for a grace period, then aborts; an instance cut
off mid-way is discarded, never committed.

With a ``scope``, instances outside the request are refused (see ``ops.storing``).
The final response's Failed SOP Instance UID List is read from its bytes, without
pydicom: the retrieve asks for those again with contexts for more SOP classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from qrclient.net.association import MAX_DATASET_IN_MEMORY, Association
from qrclient.net.datasets import encode_dataset
from qrclient.net.dictionary import COMMON
from qrclient.net.dimse import Command, CommandField, Priority, expect_response, response_to
from qrclient.net.identifier import Identifier
from qrclient.net.status import Category, Service, Status
from qrclient.net.walk import scan_values
from qrclient.ops.cancel import cancel_request
from qrclient.ops.progress import Progress
from qrclient.ops.storing import InstanceSink, Refusals, Scope, receive_instance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

CANCEL_GRACE = 2.0
FAILED_SOP_INSTANCE_UID_LIST = COMMON["FailedSOPInstanceUIDList"][0]


@dataclass(slots=True)
class SubOperations:
    """The outcome of one C-GET or C-MOVE request as the peer reported it."""

    status: Status | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    arrived: int = 0  # C-STORE sub-operations that reached us (stored or not)
    store_errors: list[str] = field(default_factory=list)  # instances we could not store
    refusals: Refusals = field(default_factory=Refusals)  # instances outside the request
    cancelled: bool = False
    aborted: bool = False
    message_id: int = 0  # of the request, which names its counts in the progress

    def note(self, command: Command, service: Service, progress: Progress) -> bool:
        """Record a C-GET/C-MOVE response's counts; True when it is the final one."""
        status = Status(command.status or 0, service)
        self.completed = command.completed or self.completed
        self.failed = command.failed or self.failed
        self.warning = command.warning or self.warning
        progress.update(
            command.message_id_being_responded_to or 0,
            remaining=command.remaining,
            completed=self.completed,
            failed=self.failed,
            warning=self.warning,
        )
        if status.is_pending:
            return False
        self.status = status
        self.cancelled = self.cancelled or status.category is Category.CANCEL
        return True


class _Retrieval:
    """State of one C-GET request on an association."""

    def __init__(
        self,
        association: Association,
        sop_class: str,
        sink: InstanceSink,
        progress: Progress,
        grace: float,
        scope: Scope | None,
    ) -> None:
        self.association = association
        self.sop_class = sop_class
        self.sink = sink
        self.progress = progress
        self.grace = grace
        self.scope = scope
        self.message_id = 0
        self.result = SubOperations()

    async def run(self, identifier: Dataset | Identifier) -> SubOperations:
        context = self.association.accepted_context(self.sop_class)
        self.message_id = self.result.message_id = self.association.next_message_id()
        request = Command(
            command_field=CommandField.C_GET_RQ,
            message_id=self.message_id,
            affected_sop_class_uid=self.sop_class,
            priority=Priority.MEDIUM,
        )
        data = encode_dataset(identifier, str(context.transfer_syntax))
        await self.association.send(context.context_id, request, data)
        try:
            while not await self._step():
                pass
        except anyio.get_cancelled_exc_class():
            await self._cancel(context.context_id)
            raise
        return self.result

    async def _step(self) -> bool:
        """Handle one incoming message; True once the final C-GET response arrived."""
        context_id, command = await self.association.receive_command("C-GET response")
        if command.command_field == CommandField.C_STORE_RQ:
            await self._store(context_id, command)
            return False
        expect_response(command, CommandField.C_GET_RSP, self.message_id)
        if command.has_dataset:
            message_data = bytearray()
            await self.association.receive_dataset_into(
                context_id, message_data.extend, MAX_DATASET_IN_MEMORY
            )
            self._note_failed_uids(bytes(message_data), context_id)
        final = self.result.note(command, Service.GET, self.progress)
        # Messages may come from a buffer without any await: check for cancellation
        # after each one, whole (a C-STORE's check is in sending its response).
        await anyio.lowlevel.checkpoint_if_cancelled()
        return final

    def _note_failed_uids(self, data: bytes, context_id: int) -> None:
        syntax = str(self.association.context(context_id).transfer_syntax)
        try:
            raw = scan_values(data, 0, syntax, {FAILED_SOP_INSTANCE_UID_LIST})
        except ValueError:
            return  # a list we cannot read: the counts still say how many failed
        listed = raw.get(FAILED_SOP_INSTANCE_UID_LIST, b"").decode("ascii", "replace")
        uids = (uid.strip(" \x00") for uid in listed.split("\\"))
        self.result.failed_uids = [uid for uid in uids if uid]

    async def _store(self, context_id: int, command: Command) -> None:
        """Receive one C-STORE sub-operation into the sink and answer it."""
        self.result.arrived += 1
        arrival = await receive_instance(
            self.association,
            context_id,
            command,
            self.sink,
            self.progress,
            self.result.store_errors,
            scope=self.scope,
            refusals=self.result.refusals,
        )
        response = response_to(command, CommandField.C_STORE_RSP, arrival.status, arrival.comment)
        try:
            await self.association.send(context_id, response)
        finally:
            arrival.settle()  # while the peer prepares its next instance

    async def _cancel(self, context_id: int) -> None:
        """C-CANCEL, keep answering until the final response or the grace period, else abort."""
        self.result.cancelled = True
        self.result.aborted = await cancel_request(
            self.association, context_id, self.message_id, self.grace, self._step
        )


async def c_get(
    association: Association,
    identifier: Dataset | Identifier,
    sop_class: str,
    sink: InstanceSink,
    progress: Progress | None = None,
    *,
    grace: float = CANCEL_GRACE,
    scope: Scope | None = None,
) -> SubOperations:
    """Send one C-GET and store every instance it delivers (those in ``scope``, when
    given); returns the peer's counts."""
    retrieval = _Retrieval(association, sop_class, sink, progress or Progress(), grace, scope)
    return await retrieval.run(identifier)

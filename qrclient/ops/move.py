"""C-MOVE: the peer sends the instances to a destination AE over its own associations.

When the destination is us, :class:`MoveRouter` is the handler of our storage listener:
it accepts associations only from peers we asked to move to us, and routes each
incoming C-STORE to the move that caused it (by the Move Originator Message ID the
peer copies onto its sub-operations, else by the expected SOP Instance UIDs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from qrclient.net.association import Association
from qrclient.net.datasets import encode_dataset
from qrclient.net.dimse import Command, CommandField, Priority, expect_response
from qrclient.net.identifier import Identifier
from qrclient.net.status import Service
from qrclient.ops.cancel import cancel_request
from qrclient.ops.get import CANCEL_GRACE, SubOperations
from qrclient.ops.progress import Progress
from qrclient.ops.storing import Arrival, InstanceSink, receive_instance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(slots=True)
class _Move:
    peer_ae: str
    expected: set[str] | None
    progress: Progress
    errors: list[str] = field(default_factory=list)


class MoveRouter:
    """Storage handler for moves to us: who may connect, and where each instance goes."""

    def __init__(self, our_ae: str, sink: InstanceSink) -> None:
        self.our_ae = our_ae
        self.sink = sink
        self._moves: dict[int, _Move] = {}
        self.unexpected: list[str] = []

    @contextmanager
    def expect(
        self, peer_ae: str, message_id: int, expected: set[str] | None, progress: Progress
    ) -> Iterator[_Move]:
        move = _Move(peer_ae, expected, progress)
        self._moves[message_id] = move
        try:
            yield move
        finally:
            del self._moves[message_id]

    def allows(self, calling_ae: str, address: str) -> bool:
        return any(move.peer_ae == calling_ae for move in self._moves.values())

    def route(self, calling_ae: str, command: Command) -> _Move | None:
        """The move an incoming C-STORE belongs to, or None (then it is refused)."""
        # The originator should be us; pynetdicom-based PACSs put their own AE title
        # there. Either way the message ID and the calling AE must match a move of ours.
        if command.move_originator_ae_title in (None, self.our_ae, calling_ae):
            move = self._moves.get(command.move_originator_message_id or -1)
            if move is not None and move.peer_ae == calling_ae:
                return move
        uid = command.affected_sop_instance_uid or ""
        for move in self._moves.values():
            if move.peer_ae == calling_ae and move.expected and uid in move.expected:
                return move
        return None

    async def store(self, association: Association, context_id: int, command: Command) -> Arrival:
        move = self.route(association.peer.ae_title, command)
        if move is None:
            self.unexpected.append(command.affected_sop_instance_uid or "")
            return await receive_instance(
                association, context_id, command, None, Progress(), self.unexpected
            )
        return await receive_instance(
            association, context_id, command, self.sink, move.progress, move.errors
        )


async def c_move(
    association: Association,
    identifier: Dataset | Identifier,
    sop_class: str,
    destination: str,
    progress: Progress | None = None,
    *,
    message_id: int | None = None,
    grace: float = CANCEL_GRACE,
) -> SubOperations:
    """Send one C-MOVE and follow its responses.

    Pass ``message_id`` (from ``association.next_message_id()``) when the listener must
    be told about the move before its first instance can arrive.
    """
    progress = progress or Progress()
    context = association.accepted_context(sop_class)
    message_id = message_id or association.next_message_id()
    request = Command(
        command_field=CommandField.C_MOVE_RQ,
        message_id=message_id,
        affected_sop_class_uid=sop_class,
        priority=Priority.MEDIUM,
        move_destination=destination,
    )
    await association.send(
        context.context_id, request, encode_dataset(identifier, str(context.transfer_syntax))
    )
    result = SubOperations()

    async def handle_response() -> bool:
        message = await association.receive_message("C-MOVE response")
        return _note(message.command, message_id, result, progress)

    try:
        while True:
            await anyio.lowlevel.checkpoint_if_cancelled()
            if await handle_response():
                return result
    except anyio.get_cancelled_exc_class():
        result.cancelled = True
        result.aborted = await cancel_request(
            association, context.context_id, message_id, grace, handle_response
        )
        raise


def _note(command: Command, message_id: int, result: SubOperations, progress: Progress) -> bool:
    """Record one C-MOVE response; True when it is the final one."""
    expect_response(command, CommandField.C_MOVE_RSP, message_id)
    return result.note(command, Service.MOVE, progress)

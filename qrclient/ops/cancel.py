"""Cancelling a running C-FIND, C-GET or C-MOVE: the same steps for each.

Send C-CANCEL, keep handling the peer's responses (a C-GET may still deliver instances
that must be answered) until the final one, for at most a grace period; a peer that
keeps going (Orthanc ignores C-CANCEL for C-FIND and C-MOVE) gets the association
aborted instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from qrclient.net.association import Association
from qrclient.net.dimse import Command, CommandField


async def cancel_request(
    association: Association,
    context_id: int,
    message_id: int,
    grace: float,
    handle_response: Callable[[], Awaitable[bool]],
) -> bool:
    """C-CANCEL ``message_id``; ``handle_response`` handles one message and returns True
    on the final response. Returns True if the association had to be aborted.

    Shielded: it runs to the end even when called from a cancelled scope.
    """
    with anyio.CancelScope(shield=True):
        if not association.is_open:
            return False
        try:
            cancel = Command(
                command_field=CommandField.C_CANCEL_RQ, message_id_being_responded_to=message_id
            )
            await association.send(context_id, cancel)
            with anyio.move_on_after(grace):
                while not await handle_response():
                    pass
                return False
        except Exception:  # the peer misbehaves: the abort below ends it
            pass
        await association.abort()
    return True

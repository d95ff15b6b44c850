"""C-ECHO: is the peer there, and how long does a DIMSE round trip take."""

from __future__ import annotations

import time

from qrclient.net.association import Association
from qrclient.net.dimse import Command, CommandField
from qrclient.net.errors import ProtocolError
from qrclient.net.status import FailureStatus, Service, Status
from qrclient.net.uids import VERIFICATION


async def echo(association: Association) -> float:
    """Send one C-ECHO and return the round-trip time in seconds."""
    context = association.accepted_context(VERIFICATION)
    message_id = association.next_message_id()
    request = Command(
        command_field=CommandField.C_ECHO_RQ,
        message_id=message_id,
        affected_sop_class_uid=VERIFICATION,
    )
    started = time.perf_counter()
    await association.send(context.context_id, request)
    response = (await association.receive_message("C-ECHO response")).command
    elapsed = time.perf_counter() - started
    if (
        response.command_field != CommandField.C_ECHO_RSP
        or response.message_id_being_responded_to != message_id
    ):
        raise ProtocolError(
            f"the peer answered C-ECHO {message_id} with {response.name} "
            f"for message {response.message_id_being_responded_to}",
            "the peer's DICOM stack is broken",
        )
    status = Status(response.status or 0, Service.ECHO)
    if status.is_failure:
        raise FailureStatus(status, response.error_comment)
    return elapsed

"""Receiving one C-STORE into the sink: shared by C-GET and the C-MOVE listener.

Fragments go straight from the receive buffer into the sink (a file in the local
store) and are never decoded. A store failure refuses that instance (status 0xA700)
but its fragments are still read off the association, so the association stays usable.
An instance cut off mid-way is discarded, never committed.
"""

from __future__ import annotations

from typing import Protocol

from qrclient.net.association import Association
from qrclient.net.dimse import Command
from qrclient.ops.progress import Progress

STORE_SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700


class Incoming(Protocol):
    """One instance being received (implemented by the local store)."""

    def write(self, fragment: bytes) -> None: ...

    def commit(self) -> object: ...

    def discard(self) -> None: ...


class InstanceSink(Protocol):
    """Where received instances go (the local store)."""

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
    ) -> Incoming: ...


class _Writer:
    """Passes fragments to the incoming file until a write fails, then drops the rest."""

    def __init__(self) -> None:
        self.target: Incoming | None = None
        self.error: Exception | None = None

    def write(self, fragment: bytes) -> None:
        if self.target is None or self.error is not None:
            return
        try:
            self.target.write(fragment)
        except Exception as exc:
            self.error = exc


async def receive_instance(
    association: Association,
    context_id: int,
    command: Command,
    sink: InstanceSink | None,
    progress: Progress,
    errors: list[str],
) -> int:
    """Store the data set following ``command``; returns the C-STORE status to answer.

    ``sink`` None drains and refuses the instance. Failures are appended to ``errors``.
    """
    sop_instance = command.affected_sop_instance_uid or ""
    writer = _Writer()
    if sink is not None:
        try:
            writer.target = sink.begin(
                command.affected_sop_class_uid or "",
                sop_instance,
                str(association.context(context_id).transfer_syntax),
                association.peer.ae_title,
            )
        except Exception as exc:
            writer.error = exc
    incoming = writer.target
    try:
        size = await association.receive_dataset_into(context_id, writer.write)
    except BaseException:
        if incoming is not None:
            incoming.discard()
        raise
    if incoming is not None and writer.error is None:
        try:
            incoming.commit()
        except Exception as exc:
            writer.error = exc
        else:
            progress.add(received=1, received_bytes=size)
            return STORE_SUCCESS
    elif incoming is not None:
        incoming.discard()
    errors.append(f"{sop_instance}: {writer.error or 'not expected by any retrieve'}")
    return STORE_OUT_OF_RESOURCES

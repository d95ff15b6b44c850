"""Receiving one C-STORE into the sink: shared by C-GET and the C-MOVE listener.

Fragments go straight from the receive buffer into the sink (a file in the local
store) and are never decoded. A store failure refuses that instance (status 0xA700)
but its fragments are still read off the association, so the association stays usable.
An instance cut off mid-way is discarded, never committed.

Storing is split around the C-STORE response, because the peer sends nothing more
until it has our answer. Before it, the data set is received and checked (``seal``);
after it, while the peer prepares its next instance, the file is written, renamed into
place and indexed (``Arrival.settle``). A failure in that second half (the disk or the
store vanished) cannot change the answer already sent: it counts as a store error of
the retrieve, which then ends partial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from qrclient.net.association import Association
from qrclient.net.dimse import Command
from qrclient.net.errors import DataSetTooLarge
from qrclient.ops.progress import Progress

STORE_SUCCESS = 0x0000
STORE_OUT_OF_RESOURCES = 0xA700
TOO_LARGE = "instance larger than we accept (max_instance)"  # an Error Comment: 64 at most


class Incoming(Protocol):
    """One instance being received (implemented by the local store).

    ``write`` may keep the fragment it is given: callers pass immutable buffers.
    """

    def write(self, fragment: bytes | memoryview) -> None: ...

    def seal(self) -> None: ...

    def place(self) -> object: ...

    def discard(self) -> None: ...


class InstanceSink(Protocol):
    """Where received instances go (the local store)."""

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
    ) -> Incoming: ...


@dataclass(slots=True)
class Arrival:
    """A received C-STORE: the status to answer, then ``settle`` once the answer is sent."""

    status: int
    sealed: Incoming | None
    size: int
    progress: Progress
    errors: list[str]
    sop_instance_uid: str
    comment: str | None = None  # the response's Error Comment, if any

    def settle(self) -> None:
        """Place the sealed instance; a failure is recorded, never raised."""
        if self.sealed is None:
            return
        incoming, self.sealed = self.sealed, None
        try:
            incoming.place()
        except Exception as exc:
            self.errors.append(f"{self.sop_instance_uid}: {exc}")
            self.progress.add(lost=1)
        else:
            self.progress.add(received=1, received_bytes=self.size)


class _Writer:
    """Passes fragments to the incoming file until a write fails, then drops the rest."""

    def __init__(self) -> None:
        self.target: Incoming | None = None
        self.error: Exception | None = None

    def write(self, fragment: bytes | memoryview) -> None:
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
) -> Arrival:
    """Receive and check the data set following ``command``; returns what to answer.

    ``sink`` None drains and refuses the instance. Failures are appended to ``errors``.
    The caller sends the response, then calls ``settle`` on the result (also if sending
    failed: the instance arrived whole).
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
        size = await association.receive_dataset_into(
            context_id, writer.write, association.settings.max_instance, instance=True
        )
    except BaseException as exc:
        if incoming is not None:
            incoming.discard()
        if isinstance(exc, DataSetTooLarge):  # refused, nothing kept of it
            errors.append(f"{sop_instance}: not stored: {exc.message}")
            if exc.whole:  # read to its end: the association goes on
                return Arrival(
                    STORE_OUT_OF_RESOURCES,
                    None,
                    exc.size,
                    progress,
                    errors,
                    sop_instance,
                    TOO_LARGE,
                )
        raise
    arrival = Arrival(STORE_OUT_OF_RESOURCES, None, size, progress, errors, sop_instance)
    if incoming is not None and writer.error is None:
        try:
            incoming.seal()
        except Exception as exc:
            writer.error = exc
        else:
            arrival.status, arrival.sealed = STORE_SUCCESS, incoming
            return arrival
    elif incoming is not None:
        incoming.discard()
    errors.append(f"{sop_instance}: {writer.error or 'not expected by any retrieve'}")
    return arrival

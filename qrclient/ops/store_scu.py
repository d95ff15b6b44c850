"""C-STORE as an SCU on one association: an instance's data set sent from its file.

The mirror of C-GET's receive path: where the peer accepted the file's own transfer
syntax, the data set is sent as the file holds it (the bytes after the file meta
group), a piece at a time, never decoded. Only where the peer refused that syntax is the
file decoded, by pydicom in a worker thread, and sent in an uncompressed syntax the
peer accepted; what pydicom cannot convert (a codec it lacks, big endian pixel data)
is not sent, and the reason says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio.to_thread

from qrclient.net.association import MAX_DATASET_IN_MEMORY, Association
from qrclient.net.datasets import encode_dataset
from qrclient.net.dimse import Command, CommandField, Priority, expect_response
from qrclient.net.errors import ProtocolError
from qrclient.net.presentation import NegotiatedContext, sop_class_name
from qrclient.net.status import Service, Status
from qrclient.net.uids import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE

# What a refused syntax is converted to, in this order of preference.
CONVERSION_TARGETS = (EXPLICIT_LE, IMPLICIT_LE)
# Syntaxes whose data set pydicom re-encodes faithfully without decoding pixel data.
_PLAIN = frozenset((EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE))


@dataclass(frozen=True, slots=True)
class Instance:
    """A Part-10 file to send, as its file meta group describes it."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    data_offset: int  # where the data set starts in the file
    size: int  # the data set's bytes
    # The file as it was read (device, inode, size, modification time): one that
    # differs when it is sent has been changed or replaced meanwhile.
    identity: tuple[int, int, int, int] = (0, 0, 0, 0)


def file_identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


@dataclass(frozen=True, slots=True)
class Stored:
    """The peer's answer to one C-STORE, and what was sent."""

    status: Status
    error_comment: str | None
    transfer_syntax: str  # as sent
    sent_bytes: int


class NotSent(Exception):
    """The instance was not sent (nothing of it went out): ``reason`` says why.

    ``refused``: because of what the peer accepted (its SOP class or transfer syntax),
    not because of the file.
    """

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused


def choose_context(association: Association, instance: Instance) -> NegotiatedContext:
    """The accepted context to send ``instance`` on: its own syntax's, else an
    uncompressed one to convert it to; NotSent (refused) when there is none."""
    accepted = [
        c
        for c in association.contexts
        if c.abstract_syntax == instance.sop_class_uid and c.accepted and c.transfer_syntax
    ]
    for context in accepted:
        if context.transfer_syntax == instance.transfer_syntax:
            return context
    for target in CONVERSION_TARGETS:
        for context in accepted:
            if context.transfer_syntax == target:
                return context
    name = sop_class_name(instance.sop_class_uid)
    if not accepted:
        proposed = [c for c in association.contexts if c.abstract_syntax == instance.sop_class_uid]
        why = proposed[0].reason if proposed else "not proposed"
        raise NotSent(f"the peer does not accept {name} ({why})", refused=True)
    syntaxes = ", ".join(sorted({sop_class_name(str(c.transfer_syntax)) for c in accepted}))
    raise NotSent(
        f"the peer accepts {name} only in {syntaxes}, not in "
        f"{sop_class_name(instance.transfer_syntax)}",
        refused=True,
    )


async def c_store(association: Association, instance: Instance) -> Stored:
    """Send ``instance`` with C-STORE and return the peer's status.

    NotSent if it could not be sent (the file changed or cannot be read, the peer
    accepts neither its syntax nor one it converts to); network errors propagate.
    """
    context = choose_context(association, instance)
    syntax = str(context.transfer_syntax)
    message_id = association.next_message_id()
    command = Command(
        CommandField.C_STORE_RQ,
        message_id=message_id,
        affected_sop_class_uid=instance.sop_class_uid,
        affected_sop_instance_uid=instance.sop_instance_uid,
        priority=Priority.MEDIUM,
    )
    if syntax == instance.transfer_syntax:
        with _data_set_of(instance) as read:
            await association.send_streamed(context.context_id, command, read, instance.size)
        size = instance.size
    else:
        data = await anyio.to_thread.run_sync(convert, instance, syntax)
        await association.send(context.context_id, command, data)
        size = len(data)
    _, response = await association.receive_command("C-STORE response")
    expect_response(response, CommandField.C_STORE_RSP, message_id)
    if response.has_dataset:  # none is defined for C-STORE-RSP: read past it
        await association.receive_dataset_into(
            context.context_id, lambda fragment: None, MAX_DATASET_IN_MEMORY
        )
    if response.status is None:
        raise ProtocolError(
            "the peer answered C-STORE without a status", "the peer's DICOM stack is broken"
        )
    return Stored(Status(response.status, Service.STORE), response.error_comment, syntax, size)


@contextmanager
def _data_set_of(instance: Instance) -> Iterator[Callable[[int], bytes]]:
    """A reader of the file's data set, the file checked to be the one scanned (it may
    have been changed or replaced since); NotSent if not. Plain system calls: opening a
    Python file object costs more than the small instance it holds."""
    try:
        file = os.open(instance.path, os.O_RDONLY)
    except OSError as exc:
        raise NotSent(f"cannot read it: {exc.strerror or exc}") from None
    try:
        if file_identity(os.fstat(file)) != instance.identity:
            raise NotSent("the file changed after it was read; send it again")
        offset = instance.data_offset

        def read(size: int) -> bytes:
            nonlocal offset
            data = os.pread(file, size, offset)
            offset += len(data)
            return data

        yield read
    finally:
        os.close(file)


def convert(instance: Instance, target: str) -> bytes:
    """The instance's data set in ``target`` (uncompressed), decoded by pydicom;
    NotSent (refused: the peer refused its own syntax) where that cannot be done."""
    import pydicom  # only here: a refused syntax is the exception, and pydicom is slow

    source = instance.transfer_syntax
    name = sop_class_name(source)
    if source == EXPLICIT_BE:
        raise NotSent(
            f"the peer refused {name} and its pixel data cannot be converted to little "
            "endian faithfully",
            refused=True,
        )
    try:
        if file_identity(os.stat(instance.path)) != instance.identity:
            raise NotSent("the file changed after it was read; send it again")
    except OSError as exc:
        raise NotSent(f"cannot read it: {exc.strerror or exc}") from None
    try:
        dataset = pydicom.dcmread(instance.path)
        if source not in _PLAIN:
            dataset.decompress(generate_instance_uid=False)  # same instance, same UID
        return encode_dataset(dataset, target)
    except Exception as exc:  # pydicom's errors: a missing codec, a damaged file
        detail = " ".join(str(exc).split())
        raise NotSent(
            f"the peer refused {name} and pydicom cannot convert it: {detail}", refused=True
        ) from None

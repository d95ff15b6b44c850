"""One instance being received: a temporary file that becomes a stored file or nothing.

Fragments are appended through a buffer, never decoded: ``write`` is the hot path of
a retrieve. The data set is checked (element headers only) and read for the few
attributes the store needs once, at ``commit``: from memory for an instance that fit in
the buffer (most C-FIND-sized and small images: no temp file until commit, written in
one go), from the page cache for larger ones.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from pathlib import Path
from typing import BinaryIO, NoReturn, Protocol

from qrclient.store.errors import StoreError, describe_os_error
from qrclient.store.index import StoredInstance
from qrclient.store.part10 import dataset_values, read_dataset_values

BUFFER_SIZE = 256 * 1024  # a few 16 KB fragments per write(2); a 1 MB one goes straight
TEMP_SUFFIX = ".part"
_NUMBERS = itertools.count()


def open_temp(directory: Path) -> tuple[Path, BinaryIO]:
    """A new file in ``directory`` that is ours alone (O_EXCL), opened for writing."""
    name = f"{os.getpid()}-{next(_NUMBERS)}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    path = directory / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags, 0o666)
    return path, open(descriptor, "wb", buffering=BUFFER_SIZE)  # kept open until finished


class Owner(Protocol):
    """The store, as an incoming instance sees it."""

    wanted_tags: frozenset[int]

    def place(
        self, incoming: Incoming, values: dict[int, bytes], status: os.stat_result
    ) -> StoredInstance: ...

    def forget(self, incoming: Incoming) -> None: ...


class Incoming:
    """Receive with ``write``, then ``commit`` (or ``discard``); then it is finished."""

    __slots__ = (
        "_data_offset",
        "_directory",
        "_file",
        "_finished",
        "_memory",
        "_owner",
        "path",
        "sop_class_uid",
        "sop_instance_uid",
        "source",
        "transfer_syntax",
    )

    def __init__(
        self,
        owner: Owner,
        directory: Path,
        header: bytes,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        source: str,
    ) -> None:
        self._owner = owner
        self._directory = directory
        self.path: Path | None = None  # the temporary file, once there is one
        self._file: BinaryIO | None = None
        self._memory: bytearray | None = bytearray(header)
        self._data_offset = len(header)
        self._finished = False
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax = transfer_syntax
        self.source = source

    def write(self, fragment: bytes) -> None:
        """Append the next bytes of the data set, exactly as received."""
        if self._finished:
            raise StoreError(f"{self.sop_instance_uid}: written after it was finished")
        memory = self._memory
        if memory is not None:
            memory += fragment
            if len(memory) >= BUFFER_SIZE:
                self._spill()
            return
        assert self._file is not None
        try:
            self._file.write(fragment)
        except OSError as exc:
            self._fail(exc)

    def _spill(self) -> BinaryIO:
        """Move what is in memory to a new temporary file and continue there."""
        try:
            self.path, self._file = open_temp(self._directory)
            assert self._memory is not None
            self._file.write(self._memory)
        except OSError as exc:
            self._fail(exc)
        self._memory = None
        return self._file

    def commit(self) -> StoredInstance:
        """Check the data set is complete, move the file into place and index it.

        No fsync per file: the file is closed before it is renamed, so a file in its
        final place is complete whenever the process is killed, and its index row is
        written after the rename. Only a power failure could lose recent files, which
        ``Store.verify`` then reports; guarding against that would cost an fsync each.
        """
        if self._finished:
            raise StoreError(f"{self.sop_instance_uid}: already committed or discarded")
        wanted = self._owner.wanted_tags
        try:
            if self._memory is not None:
                # Check before writing anything: a bad data set never touches the disk.
                # (bytes: the walker compares slices by hash; this copy is < 256 KB.)
                whole = bytes(self._memory)
                values = dataset_values(whole, self._data_offset, self.transfer_syntax, wanted)
                file = self._spill()
                file.flush()
                status = os.fstat(file.fileno())
                file.close()
            else:
                assert self._file is not None
                assert self.path is not None
                self._file.close()
                values = read_dataset_values(
                    self.path, self._data_offset, self.transfer_syntax, wanted
                )
                status = os.stat(self.path)
        except OSError as exc:
            self._fail(exc)
        except ValueError as exc:
            self.discard()
            raise StoreError(
                f"{self.sop_instance_uid} was not stored: the data set is truncated or "
                f"does not parse ({exc})"
            ) from None
        try:
            stored = self._owner.place(self, values, status)
        except BaseException:
            self.discard()
            raise
        self._finished = True
        self._owner.forget(self)
        return stored

    def discard(self) -> None:
        """Drop the instance and its temporary file; harmless once finished."""
        if self._finished:
            return
        self._finished = True
        self._owner.forget(self)
        self._memory = None
        if self._file is not None:
            with contextlib.suppress(OSError):  # a failed flush: the file goes anyway
                self._file.close()
        if self.path is not None:
            with contextlib.suppress(OSError):  # if it stays, the next open removes it
                self.path.unlink()

    def _fail(self, exc: OSError) -> NoReturn:
        self.discard()
        raise StoreError(f"cannot store {self.sop_instance_uid}: {describe_os_error(exc)}") from exc

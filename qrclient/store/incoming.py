"""One instance being received: a temporary file that becomes a stored file or nothing.

Fragments are kept as received, never decoded: ``write`` is the hot path of a retrieve.
An instance up to ``MEMORY_LIMIT`` stays in memory until it is complete; ``seal`` then
checks its data set (element headers only) and reads the few attributes the store
needs, and ``place`` writes it in one go, renames it into place and indexes it. The
split lets the C-STORE response go out between the two, so the disk work overlaps the
peer preparing its next instance. A larger instance streams to its temporary file from
the start of its overflow and is checked from the page cache.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, NoReturn, Protocol

from qrclient.store.errors import StoreError, os_failure
from qrclient.store.index import StoredInstance
from qrclient.store.part10 import dataset_values, read_dataset_values

BUFFER_SIZE = 256 * 1024  # a few 16 KB fragments per write(2); a 1 MB one goes straight
MEMORY_LIMIT = 8 * 1024 * 1024  # held in memory up to this; a bigger instance streams to disk
TEMP_SUFFIX = ".part"
_NUMBERS = itertools.count()
# Read and write: a streamed instance is checked through a map of this descriptor.
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# One random token per process, not per file: O_EXCL already makes every name ours.
_PREFIX = f"{os.getpid()}-{secrets.token_hex(4)}-"


def open_temp(directory: int, *, buffered: bool = True) -> tuple[str, BinaryIO]:
    """A new file in the directory ``directory`` (a descriptor) that is ours alone
    (O_EXCL), opened for writing; returns its name in that directory and the file.

    Unbuffered for one write of a whole instance: a buffer would only be allocated
    and copied through.
    """
    name = f"{_PREFIX}{next(_NUMBERS)}{TEMP_SUFFIX}"
    descriptor = os.open(name, _FLAGS, 0o666, dir_fd=directory)
    if buffered:
        return name, open(descriptor, "wb", buffering=BUFFER_SIZE)  # kept open until finished
    return name, open(descriptor, "wb", buffering=0)


def _write_all(file: BinaryIO, data: bytes) -> None:
    """``file.write`` until all of ``data`` is written (an unbuffered write may be short)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:  # None: would block; 0: nothing written. Neither happens on a disk.
            raise OSError(errno.EIO, "the file accepted no more bytes")
        view = view[written:]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the store will put a sealed instance, decided before it is acknowledged."""

    text: dict[str, str]  # the attributes the store keeps, decoded
    relative: str  # path under the store's root, "/"-separated
    kept: StoredInstance | None = None  # the same instance, stored already: nothing to do


class Owner(Protocol):
    """The store, as an incoming instance sees it."""

    wanted_tags: frozenset[int]

    def check(self, incoming: Incoming, values: dict[int, bytes]) -> Placement: ...

    def place(
        self, incoming: Incoming, placement: Placement, status: os.stat_result
    ) -> StoredInstance: ...

    def forget(self, incoming: Incoming) -> None: ...


class Incoming:
    """Receive with ``write``, then ``seal`` and ``place`` (or ``discard``); then it is finished."""

    __slots__ = (
        "_data_offset",
        "_directory",
        "_file",
        "_finished",
        "_fragments",
        "_owner",
        "_sealed",
        "_size",
        "path",
        "placement",
        "sop_class_uid",
        "sop_instance_uid",
        "source",
        "transfer_syntax",
    )

    def __init__(
        self,
        owner: Owner,
        directory: int,
        header: bytes,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        source: str,
    ) -> None:
        self._owner = owner
        self._directory = directory  # a descriptor of the store's incoming/
        self.path: str | None = None  # the temporary file's name there, once there is one
        self._file: BinaryIO | None = None
        # Header and data fragments while in memory; None once streaming to the file.
        self._fragments: list[bytes | memoryview] | None = [header]
        self._size = len(header)
        self._data_offset = len(header)
        self._sealed: bytes | None = None  # the whole file, once sealed in memory
        self.placement: Placement | None = None  # set by seal
        self._finished = False
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax = transfer_syntax
        self.source = source

    def write(self, fragment: bytes | memoryview) -> None:
        """Append the next bytes of the data set, exactly as received (kept, not copied)."""
        if self._finished or self.placement is not None:
            raise StoreError(f"{self.sop_instance_uid}: written after it was sealed or finished")
        fragments = self._fragments
        if fragments is not None:
            fragments.append(fragment)
            self._size += len(fragment)
            if self._size > MEMORY_LIMIT:
                self._spill(fragments)
            return
        assert self._file is not None
        try:
            self._file.write(fragment)
        except OSError as exc:
            self._fail(exc)

    def _spill(self, fragments: list[bytes | memoryview]) -> None:
        """Too big to hold: write what is in memory to a temporary file, continue there."""
        self._fragments = None
        try:
            self.path, self._file = open_temp(self._directory)
            self._file.writelines(fragments)
        except OSError as exc:
            self._fail(exc)

    def seal(self) -> None:
        """Check the data set is complete and parses, and read the store's attributes.

        After it the instance can be acknowledged; StoreError (and nothing kept) if not.
        """
        if self._finished or self.placement is not None:
            raise StoreError(f"{self.sop_instance_uid}: already sealed or finished")
        wanted = self._owner.wanted_tags
        try:
            if self._fragments is not None:
                whole = b"".join(self._fragments)
                self._fragments = None
                values = dataset_values(whole, self._data_offset, self.transfer_syntax, wanted)
                self._sealed = whole
            else:
                assert self._file is not None
                self._file.flush()
                values = read_dataset_values(
                    self._file.fileno(), self._data_offset, self.transfer_syntax, wanted
                )
        except OSError as exc:
            self._fail(exc)
        except ValueError as exc:
            self.discard()
            raise StoreError(
                f"{self.sop_instance_uid} was not stored: the data set is truncated or "
                f"does not parse ({exc})"
            ) from None
        try:
            self.placement = self._owner.check(self, values)
        except BaseException:
            self.discard()
            raise

    @property
    def identifiers(self) -> Mapping[str, str] | None:
        """The attributes ``seal`` read from the data set (None before): a retrieve
        checks the instance's Study and Series Instance UIDs against its request."""
        return None if self.placement is None else self.placement.text

    def place(self) -> StoredInstance:
        """Write the sealed instance out, move the file into place and index it.

        No fsync per file: the file is closed before it is renamed, so a file in its
        final place is complete whenever the process is killed, and its index row is
        written after the rename. Only a power failure could lose recent files, which
        ``Store.verify`` then reports; guarding against that would cost an fsync each.
        """
        placement = self.placement
        if self._finished or placement is None:
            raise StoreError(f"{self.sop_instance_uid}: placed before it was sealed")
        if placement.kept is not None:
            self.discard()
            return placement.kept
        try:
            if self._sealed is not None:
                self.path, self._file = open_temp(self._directory, buffered=False)
                _write_all(self._file, self._sealed)
                self._sealed = None
            assert self._file is not None
            self._file.flush()
            status = os.fstat(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self._fail(exc)
        try:
            stored = self._owner.place(self, placement, status)
        except BaseException:
            self.discard()
            raise
        self._finished = True
        self._owner.forget(self)
        return stored

    def commit(self) -> StoredInstance:
        """``seal`` and ``place`` in one step, for callers with no response in between."""
        self.seal()
        return self.place()

    def discard(self) -> None:
        """Drop the instance and its temporary file; harmless once finished."""
        if self._finished:
            return
        self._finished = True
        self._owner.forget(self)
        self._fragments = None
        self._sealed = None
        if self._file is not None:
            with contextlib.suppress(OSError):  # a failed flush: the file goes anyway
                self._file.close()
        if self.path is not None:
            with contextlib.suppress(OSError):  # if it stays, the next open removes it
                os.unlink(self.path, dir_fd=self._directory)

    def same_data(self, other: int, other_offset: int) -> bool:
        """Whether the data set is byte for byte that of the file open as ``other`` (a
        descriptor) from ``other_offset``. Sizes first; the bytes only if they match.
        Only between ``seal`` and ``place``."""
        sealed, file = self._sealed, self._file
        if sealed is not None:
            whole = len(sealed)
        else:
            assert file is not None  # streamed: all of it in the file (flushed by seal)
            whole = os.fstat(file.fileno()).st_size
        size = whole - self._data_offset
        if os.fstat(other).st_size - other_offset != size:
            return False
        with contextlib.ExitStack() as files:
            theirs = files.enter_context(open(other, "rb", closefd=False, buffering=0))
            if sealed is not None:
                ours: BinaryIO = io.BytesIO(sealed)  # shares the bytes, no copy
            else:
                assert file is not None
                ours = files.enter_context(open(file.fileno(), "rb", closefd=False, buffering=0))
            theirs.seek(other_offset)
            ours.seek(self._data_offset)
            return _same_bytes(ours, theirs, size)

    def _fail(self, exc: OSError) -> NoReturn:
        self.discard()
        raise os_failure(f"cannot store {self.sop_instance_uid}", exc) from exc


_COMPARED = 1 << 20  # bytes compared at a time


def _same_bytes(ours: BinaryIO, theirs: BinaryIO, size: int) -> bool:
    while size > 0:
        chunk = ours.read(_COMPARED)
        if not chunk or theirs.read(len(chunk)) != chunk:
            return False
        size -= len(chunk)
    return True

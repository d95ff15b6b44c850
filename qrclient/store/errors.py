"""Failures of the local store: one line each, naming what failed and why, and a hint.

Faces tell the kinds apart by class, never by text: a store that cannot be written
(``StoreUnwritable``, ``StoreFull``), whose index is damaged (``StoreDamaged``), that
another qrclient holds (``StoreBusy``), or an instance refused because a different one
with its SOP Instance UID is kept (``StoreConflict``). Everything else is a plain
``StoreError``: bad input such as a layout, or one instance that cannot be stored.
"""

from __future__ import annotations

import errno
import shlex
import sqlite3
from pathlib import Path


class StoreError(Exception):
    """The store could not be opened, or an instance could not be stored or read."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class StoreUnwritable(StoreError):
    """The store's disk refuses writes: read-only, permission, an I/O error."""


class StoreFull(StoreUnwritable):
    """The store's disk (or the user's quota on it) is full."""


class StoreDamaged(StoreError):
    """The store's index (or its own folder) is damaged; the files are what counts."""


class StoreBusy(StoreError):
    """Another qrclient holds the store's lock."""


class StoreConflict(StoreError):
    """An instance was refused: a different one with its SOP Instance UID is stored."""


def rebuild_command(root: Path) -> str:
    """The command that indexes the store at ``root`` anew, ready to paste."""
    return f"qrclient store rebuild --out {shlex.quote(str(root))}"


_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the store is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a directory should be",
    errno.ELOOP: "a symbolic link stands where the store needs a real folder or file",
}
_FULL = frozenset((errno.ENOSPC, errno.EDQUOT))
_UNWRITABLE = frozenset((errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO))


def describe_os_error(exc: OSError, filename: str | None = None) -> str:
    """A short reason for ``exc``, with the file it concerns when known (``filename``
    if given: "" when the message names it already)."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    name = exc.filename if filename is None else filename
    return f"{reason} ({name})" if name else reason


def os_failure(message: str, exc: OSError, *, filename: str | None = None) -> StoreError:
    """``message``, then why: a StoreFull / StoreUnwritable where the disk is at fault."""
    text = f"{message}: {describe_os_error(exc, filename)}"
    if exc.errno in _FULL:
        return StoreFull(text, "free some space on that disk, or use another store (--out)")
    if exc.errno in _UNWRITABLE:
        return StoreUnwritable(text, "make the store writable, or use another store (--out)")
    return StoreError(text)


# SQLite's primary result codes (the low byte of an extended one).
_SQLITE_FULL = frozenset((sqlite3.SQLITE_FULL,))
_SQLITE_UNWRITABLE = frozenset(
    (
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_AUTH,
    )
)
_SQLITE_BUSY = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))


def index_failure(what: str, index: Path, root: Path, exc: sqlite3.Error) -> StoreError:
    """The store error for an SQLite failure of ``what`` (e.g. "cannot open the store")
    on the index at ``index``, classed by SQLite's result code: a full disk is not a
    damaged index."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    rebuild = rebuild_command(root)
    if code in _SQLITE_FULL:
        return StoreFull(
            f"{what}: the disk holding {index} is full",
            f"free some space, then index the files received: {rebuild}",
        )
    if code in _SQLITE_UNWRITABLE:
        return StoreUnwritable(
            f"{what}: cannot write {index} ({exc})",
            "check that disk and the store's permissions, then try again",
        )
    if code in _SQLITE_BUSY:
        return StoreBusy(
            f"{what}: {index} is locked by another program ({exc})",
            "close the program that holds it open (e.g. an SQLite browser), then try again",
        )
    if code == sqlite3.SQLITE_CONSTRAINT:  # this row only (a trigger, a path taken)
        return StoreError(f"{what}: {exc}")
    return StoreDamaged(
        f"{what}: the store index {index} is damaged ({exc})",
        f"rebuild it from the files: {rebuild}",
    )

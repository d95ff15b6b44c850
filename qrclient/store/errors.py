"""Failures of the local store: one line each, naming what failed and why."""

from __future__ import annotations

import errno


class StoreError(Exception):
    """The store could not be opened, or an instance could not be stored or read."""


_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the store is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a directory should be",
}


def describe_os_error(exc: OSError) -> str:
    """A short reason for ``exc``, with the file it concerns when known."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason

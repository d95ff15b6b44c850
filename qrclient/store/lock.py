"""One qrclient at a time per store: an exclusive lock on ``.qrclient/lock``.

Opening a store deletes what a killed run left in ``incoming/``, which would be
another live run's files, hence the lock. The holder writes its process id into the
file, so the one refused can say who has it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from qrclient.store.errors import StoreBusy
from qrclient.store.tree import META_DIR

if sys.platform != "win32":
    import fcntl

LOCK_NAME = "lock"
_POLL = 0.1  # seconds between attempts while waiting


def lock(meta: int, root: Path, wait: float = 0.0) -> int:
    """Hold the store's lock (in the directory ``meta``, a descriptor) until the
    returned descriptor is closed; wait up to ``wait`` seconds for another holder.

    StoreBusy if it is still held then; OSError if the file cannot be opened (ELOOP
    when it is a symbolic link).
    """
    descriptor = os.open(
        LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=meta
    )
    try:
        _take(descriptor, root, time.monotonic() + wait)
        with contextlib.suppress(OSError):  # only to name us to the next one
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _take(descriptor: int, root: Path, deadline: float) -> None:
    if sys.platform == "win32":
        return
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreBusy(
                    f"the store {root} is in use by another qrclient{_holder(descriptor)}",
                    "wait for it to finish (--wait SECONDS waits for it), or use another "
                    "store (--out DIR)",
                ) from None
            time.sleep(min(_POLL, left))
        else:
            return


def _holder(descriptor: int) -> str:
    """ " (process N)" from what the holder wrote, or ""."""
    try:
        text = os.pread(descriptor, 24, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {text})" if text.isdigit() else ""


def in_use(root: Path) -> bool:
    """Whether a qrclient holds the lock of the store at ``root`` now (a probe: taken
    shared and let go at once; a store without a lock file is not in use)."""
    if sys.platform == "win32":
        return False
    try:
        descriptor = os.open(
            root / META_DIR / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # (releases the shared lock if it was taken)
    return False

"""The linkage file: original identifiers to pseudonyms, one CSV row per stored instance.

It is the only way back from a pseudonym to the patient, so it never goes into the
store (the command line refuses a path inside it) and is created readable by its
owner only. Rows are appended as each instance is placed, before its file is: a
stored instance always has its row. Each row is one ``write`` to a file opened for
appending, so rows never interleave; a crash mid-row leaves a last line without its
newline, which the next run cuts off before it appends (that instance was not placed,
so the run fetches it again and writes its row anew). Appending to a file whose first
line is not this header is refused: it is someone else's file.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import stat
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from qrclient.deid.errors import DeidError

_TAIL = 4096  # bytes read back to find the last complete row


@dataclass(frozen=True, slots=True)
class LinkageRow:
    original_patient_id: str
    original_patient_name: str
    original_accession_number: str
    original_study_instance_uid: str
    original_series_instance_uid: str
    original_sop_instance_uid: str
    patient_pseudonym: str  # the new Patient ID and Patient's Name
    accession_number: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    date_shift_days: int  # back; 0: dates kept


COLUMNS = tuple(f.name for f in fields(LinkageRow))
HEADER = (",".join(COLUMNS) + "\r\n").encode("utf-8")  # csv's own line ending


def check_linkage_path(path: Path, store_root: Path) -> Path:
    """The linkage path, absolute; DeidError if it is inside the store, or cannot be
    written. Creates nothing."""
    resolved = path.expanduser().resolve()
    root = store_root.expanduser().resolve()
    if resolved == root or resolved.is_relative_to(root):
        raise DeidError(
            f"--linkage {path}: it is inside the store {root}, which must hold no way "
            "back to the patients",
            "keep the linkage file outside the store",
        )
    if resolved.is_dir():
        raise DeidError(f"--linkage {path}: it is a folder", "name a CSV file")
    if resolved.exists():
        if not os.access(resolved, os.W_OK):
            raise DeidError(f"--linkage {path}: cannot write it", "name a file you can write")
    elif not resolved.parent.is_dir() or not os.access(resolved.parent, os.W_OK):
        raise DeidError(
            f"--linkage {path}: cannot write in {resolved.parent}",
            "name a file in a folder that exists and you can write",
        )
    return resolved


class LinkageWriter:
    """Appends rows to the linkage file; ``close`` flushes it to disk."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor = descriptor
        self.rows = 0

    @classmethod
    def open(cls, path: Path) -> LinkageWriter:
        """Open (creating it, 0600) ``path`` for appending; DeidError if it cannot be, or
        is not a linkage file."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            descriptor = os.open(path, flags, 0o600)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise DeidError(f"--linkage {path}: not a regular file", "name a CSV file")
            if status.st_size == 0:
                _write_all(descriptor, HEADER)
            else:
                _check_and_repair(path, descriptor, status.st_size)
        except OSError as exc:
            os.close(descriptor)
            raise _unwritable(path, exc) from None
        except BaseException:
            os.close(descriptor)
            raise
        return cls(path, descriptor)

    def add(self, row: LinkageRow) -> None:
        """Append one row (one write). OSError if it cannot be written."""
        buffer = io.StringIO()
        csv.writer(buffer).writerow(astuple(row))
        _write_all(self._descriptor, buffer.getvalue().encode("utf-8", "surrogateescape"))
        self.rows += 1

    def close(self) -> None:
        if self._descriptor < 0:
            return
        descriptor, self._descriptor = self._descriptor, -1
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _check_and_repair(path: Path, descriptor: int, size: int) -> None:
    """Refuse a file that is not ours; cut off a last row a crash left incomplete."""
    first = os.pread(descriptor, len(HEADER), 0)
    if first != HEADER:
        raise DeidError(
            f"--linkage {path}: not a qrclient linkage file (its first line is not "
            "the header qrclient writes)",
            "name a new file, or one an earlier --pseudonymize retrieve wrote",
        )
    start = max(0, size - _TAIL)
    tail = os.pread(descriptor, size - start, start)
    if tail.endswith(b"\n"):
        return
    end = tail.rfind(b"\n")
    if end < 0:  # a row longer than the tail: cannot be one of ours
        raise DeidError(f"--linkage {path}: its last line is not a linkage row", "")
    os.ftruncate(descriptor, start + end + 1)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        if written <= 0:
            raise OSError(errno.EIO, "the linkage file accepted no more bytes")
        view = view[written:]


def _unwritable(path: Path, exc: OSError) -> DeidError:
    reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
    return DeidError(f"--linkage {path}: cannot write it ({reason})", "name a file you can write")

"""``--report FILE``: one CSV row per input row, its status, studies and counts.

Written whole to a temporary file beside the target and renamed into place: a report
is complete or absent, never half-written. It holds the rows' keys (accession numbers,
patient IDs) as given: it is written only where the user asked.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from qrclient.jobs.cohort.items import columns_of
from qrclient.store import JobItem

COUNTS = ("instances", "received", "already_here", "failed")


def check_report_path(path: Path) -> Path:
    """``path`` if a report can be written there later; ValueError saying why not."""
    path = path.expanduser()
    if path.is_dir():
        raise ValueError(f"--report {path}: is a folder; expected a file name")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"--report {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--report {path}: cannot write in {folder}")
    return path


def write_report(path: Path, items: Sequence[JobItem]) -> None:
    """Write the report (OSError if it cannot be; the target is then untouched)."""
    keys = columns_of(item.keys for item in items)
    header = ["row", *keys, "status", "studies", *COUNTS, "detail"]
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(header)
            for item in items:
                writer.writerow(
                    [
                        item.row,
                        *(item.keys.get(k, "") for k in keys),
                        item.status.value,
                        " ".join(item.studies),
                        "" if item.planned is None else item.planned,
                        item.received,
                        item.skipped,
                        item.failed,
                        item.detail,
                    ]
                )
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise

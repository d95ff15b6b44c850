"""Exporting the results table with the command line's writers (CSV, NDJSON, JSON)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from qrclient.present.browse import Row, dataset_of
from qrclient.present.output import make_writer

FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}


class ExportError(ValueError):
    """The file cannot be written: one line saying why and what is expected."""


def export_rows(path: Path, rows: Sequence[Row], keywords: Sequence[str]) -> int:
    """Write ``rows`` to ``path`` in the format its suffix names; the number written.

    Written to a temporary file beside it, then renamed: never half a file, and an
    existing file is replaced only by a whole one.
    """
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ExportError(f"{path.name}: expected a name ending .csv, .ndjson or .json")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent} is not a folder: give the path of a folder that exists")
    partial = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with open(partial, "x", encoding="utf-8", newline="") as out:
            writer = make_writer(kind, list(keywords), out)
            for row in rows:
                writer.add(dataset_of(row))
            writer.close()
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(rows)

"""Durable jobs: a retrieve's items and their states, in the store's index.

A job is what a ``retrieve --from`` (or ``get``/``move --from``) was asked to do: the
node, how (``spec``, everything resuming needs, so no command line is kept), and one
item per input row with its state. Items are written as they change, each committed at
once (after the instance rows received so far, so an item marked retrieved never
counts instances its index rows do not hold yet). A killed process leaves its job
``running`` with the items reached so far; ``jobs resume`` takes it up from there.

Two readers: ``JobBook`` on an open ``Store`` (the lock held, reads and writes), and
``read_jobs`` without the lock (the UI, or ``jobs list`` while a job runs).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from qrclient.store.errors import index_failure
from qrclient.store.tree import META_DIR

JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL, node TEXT NOT NULL,
    spec TEXT NOT NULL, source TEXT NOT NULL, state TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_item (
    job_id INTEGER NOT NULL, row INTEGER NOT NULL, keys TEXT NOT NULL,
    status TEXT NOT NULL, studies TEXT NOT NULL, planned INTEGER,
    received INTEGER NOT NULL, skipped INTEGER NOT NULL, failed INTEGER NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (job_id, row)) WITHOUT ROWID;
"""


class ItemStatus(StrEnum):
    PENDING = "pending"  # not looked up yet
    FOUND = "found"  # resolved to its studies, not retrieved yet
    NOT_FOUND = "not-found"  # the PACS has no study matching it
    AMBIGUOUS = "ambiguous"  # an accession number matching several studies: not fetched
    RETRIEVED = "retrieved"  # every instance of its studies is in the store
    PARTIAL = "partial"  # some were retrieved, some not
    FAILED = "failed"  # nothing could be retrieved (or looked up)

    @property
    def final(self) -> bool:
        """Nothing more to do for it (a resume leaves it alone)."""
        return self not in (ItemStatus.PENDING, ItemStatus.FOUND, ItemStatus.PARTIAL)


class JobState(StrEnum):
    RUNNING = "running"  # a qrclient runs it, or one running it was killed
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C, a window's end, or a failure
    FINISHED = "finished"  # every item reached a final status


@dataclass(frozen=True, slots=True)
class JobItem:
    """One input row: its keys, status, the studies it resolved to, and the counts."""

    job_id: int
    row: int  # 1-based, in the input's order
    keys: dict[str, str]  # DICOM keyword -> value, as read
    status: ItemStatus
    studies: tuple[str, ...] = ()
    planned: int | None = None  # instances the PACS has for it (None: not known yet)
    received: int = 0
    skipped: int = 0  # already in the store
    failed: int = 0
    detail: str = ""  # why it failed or is short, one line


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    command: str  # retrieve, get or move
    node: str
    spec: dict[str, Any]  # what resuming needs (method, destination, options)
    source: str  # where the items came from: a file name, or "-" for stdin
    state: JobState
    created_at: str
    updated_at: str
    counts: dict[ItemStatus, int]  # items per status
    _items: Callable[[int], list[JobItem]] = field(repr=False, compare=False)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(n for status, n in self.counts.items() if status.final)

    @property
    def resumable(self) -> bool:
        return self.state is not JobState.FINISHED or self.done < self.total

    def items(self) -> list[JobItem]:
        return self._items(self.id)


class Database(Protocol):
    """Reads and writes to an index connection (``Index``), each write committed."""

    def read(self, sql: str, parameters: Sequence[object] = ()) -> list[Any]: ...

    def write(self, statements: Sequence[tuple[str, Sequence[object]]]) -> int | None: ...


_JOB_COLUMNS = """j.id, j.command, j.node, j.spec, j.source, j.state, j.created_at,
    j.updated_at, (SELECT group_concat(status || '=' || n) FROM
        (SELECT status, count(*) AS n FROM job_item WHERE job_id = j.id GROUP BY status))
    FROM job j"""
_ITEM_COLUMNS = """job_id, row, keys, status, studies, planned, received, skipped, failed,
    detail FROM job_item"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobBook:
    """The jobs of an open store (``store.jobs``)."""

    def __init__(self, database: Callable[[], Database]) -> None:
        self._database = database  # the store's index, which a rebuild replaces

    @property
    def _db(self) -> Database:
        return self._database()

    def all(self) -> list[Job]:
        """Every job, oldest first."""
        return [self._job(row) for row in self._db.read(f"SELECT {_JOB_COLUMNS} ORDER BY j.id")]

    def get(self, job_id: int) -> Job | None:
        rows = self._db.read(f"SELECT {_JOB_COLUMNS} WHERE j.id = ?", (job_id,))
        return self._job(rows[0]) if rows else None

    def items(self, job_id: int) -> list[JobItem]:
        rows = self._db.read(f"SELECT {_ITEM_COLUMNS} WHERE job_id = ? ORDER BY row", (job_id,))
        return [_item(row) for row in rows]

    def _job(self, row: Sequence[Any]) -> Job:
        return _job(row, self.items)

    def create(
        self,
        command: str,
        node: str,
        spec: Mapping[str, Any],
        source: str,
        items: Sequence[Mapping[str, str]],
    ) -> Job:
        """A new running job of ``items`` (one keys mapping per input row), all pending."""
        now = _now()
        job_id = self._db.write(
            [
                (
                    "INSERT INTO job (command, node, spec, source, state, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (command, node, json.dumps(dict(spec)), source, JobState.RUNNING, now, now),
                )
            ]
        )
        assert job_id is not None
        self._db.write(
            [
                (
                    "INSERT INTO job_item VALUES (?, ?, ?, ?, '', NULL, 0, 0, 0, '')",
                    (job_id, row, json.dumps(dict(keys)), ItemStatus.PENDING),
                )
                for row, keys in enumerate(items, start=1)
            ]
        )
        job = self.get(job_id)
        assert job is not None
        return job

    def update(self, item: JobItem) -> None:
        """Write one item's status, studies and counts (its keys never change)."""
        self._db.write(
            [
                (
                    "UPDATE job_item SET status = ?, studies = ?, planned = ?, received = ?, "
                    "skipped = ?, failed = ?, detail = ? WHERE job_id = ? AND row = ?",
                    (
                        item.status,
                        "\\".join(item.studies),
                        item.planned,
                        item.received,
                        item.skipped,
                        item.failed,
                        item.detail,
                        item.job_id,
                        item.row,
                    ),
                ),
                ("UPDATE job SET updated_at = ? WHERE id = ?", (_now(), item.job_id)),
            ]
        )

    def set_state(self, job_id: int, state: JobState) -> None:
        self._db.write(
            [("UPDATE job SET state = ?, updated_at = ? WHERE id = ?", (state, _now(), job_id))]
        )

    def delete(self, job_id: int) -> bool:
        """Forget a job and its items (the instances stay); False if there is none."""
        if self.get(job_id) is None:
            return False
        self._db.write(
            [
                ("DELETE FROM job_item WHERE job_id = ?", (job_id,)),
                ("DELETE FROM job WHERE id = ?", (job_id,)),
            ]
        )
        return True


def _job(row: Sequence[Any], items: Callable[[int], list[JobItem]]) -> Job:
    job_id, command, node, spec, source, state, created, updated, counted = row
    counts: dict[ItemStatus, int] = {}
    for pair in str(counted or "").split(","):
        if "=" in pair:
            status, _, n = pair.partition("=")
            counts[_status(status)] = int(n)
    return Job(
        int(job_id),
        str(command),
        str(node),
        _spec(spec),
        str(source),
        _state(state),
        str(created),
        str(updated),
        counts,
        items,
    )


def _item(row: Sequence[Any]) -> JobItem:
    job_id, number, keys, status, studies, planned, received, skipped, failed, detail = row
    try:
        parsed = json.loads(keys)
    except ValueError:
        parsed = {}
    return JobItem(
        int(job_id),
        int(number),
        {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {},
        _status(status),
        tuple(s for s in str(studies).split("\\") if s),
        None if planned is None else int(planned),
        int(received),
        int(skipped),
        int(failed),
        str(detail),
    )


def _status(text: object) -> ItemStatus:
    try:
        return ItemStatus(str(text))
    except ValueError:  # a newer qrclient's: looked at again
        return ItemStatus.PENDING


def _state(text: object) -> JobState:
    try:
        return JobState(str(text))
    except ValueError:
        return JobState.INTERRUPTED


def _spec(text: object) -> dict[str, Any]:
    try:
        parsed = json.loads(str(text))
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def read_jobs(root: Path | str) -> list[Job]:
    """The jobs of the store at ``root``, read without its lock (a job may be running);
    [] if it has no index or no jobs yet. ``Job.items`` reads afresh each time."""
    database = (Path(root) / META_DIR / "index.sqlite").absolute()  # (a URI below)
    if not database.exists():
        return []

    def read(sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        try:
            connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise index_failure("cannot read the store's jobs", database, Path(root), exc) from None
        try:
            return connection.execute(sql, tuple(parameters)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # an index from before jobs
            raise index_failure("cannot read the store's jobs", database, Path(root), exc) from None
        except sqlite3.Error as exc:
            raise index_failure("cannot read the store's jobs", database, Path(root), exc) from None
        finally:
            connection.close()

    def items(job_id: int) -> list[JobItem]:
        rows = read(f"SELECT {_ITEM_COLUMNS} WHERE job_id = ? ORDER BY row", (job_id,))
        return [_item(row) for row in rows]

    return [_job(row, items) for row in read(f"SELECT {_JOB_COLUMNS} ORDER BY j.id")]


__all__ = [
    "JOBS_SCHEMA",
    "ItemStatus",
    "Job",
    "JobBook",
    "JobItem",
    "JobState",
    "read_jobs",
]

"""The store's index: which instances are here, and of which series, study, patient.

SQLite in WAL mode with synchronous=NORMAL: rows are committed in groups, atomic and
durable across a kill of the process at any moment, without an fsync per instance (a
power failure may lose the last few; ``qrclient store rebuild`` recovers them from the
files). A row is written only once its file is in place, and a file it replaces is
deleted only once the group holding the new row is committed, so every committed row
names a complete file. Every SQLite failure leaves as a StoreError naming its cause.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from qrclient.store.errors import StoreError, index_failure
from qrclient.store.jobs import JOBS_SCHEMA

# 1: instances and their parents; 2: durable jobs (``jobs``), added to a 1 as it opens.
SCHEMA_VERSION = 2
_CHUNK = 500  # host parameters per IN (...) query, well under SQLite's limit
# Group commit: one WAL commit per instance was a third of the per-instance cost of a
# retrieve of small images. Rows are committed in groups instead; after a kill the
# index lags by at most one group (files in place but not indexed, which a resume
# fetches again and rebuild_index recovers), and never names a file that is not there.
GROUP_ROWS = 1000
GROUP_SECONDS = 1.0
CACHE_KIB = 32 * 1024  # the page cache's limit; used only as the index grows

# Keyed by UIDs: WITHOUT ROWID keeps one b-tree per table instead of two.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS patient (
    id TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS study (
    uid TEXT PRIMARY KEY, patient_id TEXT NOT NULL, study_date TEXT NOT NULL,
    description TEXT NOT NULL, accession TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, modality TEXT NOT NULL,
    series_number INTEGER, description TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS instance (
    sop_instance_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, source TEXT NOT NULL,
    received_at TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS instance_series ON instance (series_uid);
CREATE INDEX IF NOT EXISTS series_study ON series (study_uid);
CREATE INDEX IF NOT EXISTS study_patient ON study (patient_id);
"""
# What takes an index of each version to the next (the tables above are version 1).
_MIGRATIONS = {1: JOBS_SCHEMA}


def _upsert(table: str, key: str, updates: dict[str, str]) -> str:
    """Insert a row, or update it only where a value changes (no page written if none)."""
    marks = ", ".join("?" * (len(updates) + 1))
    assignments = ", ".join(f"{column} = {value}" for column, value in updates.items())
    return (
        f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET "
        f"{assignments} WHERE ({', '.join(updates)}) IS NOT ({', '.join(updates.values())})"
    )


def _new(column: str) -> str:
    return f"excluded.{column}"


def _keep(column: str) -> str:
    """The new value, but an empty one never blanks a known one."""
    return f"coalesce(nullif(excluded.{column}, ''), {column})"


_UPSERTS = (
    _upsert("patient", "id", {"name": _keep("name")}),
    _upsert(
        "study",
        "uid",
        {
            "patient_id": _new("patient_id"),
            "study_date": _keep("study_date"),
            "description": _keep("description"),
            "accession": _keep("accession"),
        },
    ),
    _upsert(
        "series",
        "uid",
        {
            "study_uid": _new("study_uid"),
            "modality": _keep("modality"),
            "series_number": "coalesce(excluded.series_number, series_number)",
            "description": _keep("description"),
        },
    ),
    # A path taken by another instance fails (UNIQUE) instead of dropping its row.
    _upsert(
        "instance",
        "sop_instance_uid",
        {
            column: _new(column)
            for column in (
                "series_uid",
                "sop_class_uid",
                "transfer_syntax",
                "path",
                "size",
                "source",
                "received_at",
            )
        },
    ),
)

# A new instance only: nothing is written when its UID is indexed or its path is held.
_INSERT_NEW_INSTANCE = "INSERT INTO instance VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"

_DELETE_INSTANCE = "DELETE FROM instance WHERE sop_instance_uid = ?"

_INSTANCE_COLUMNS = """
    i.sop_instance_uid, i.sop_class_uid, i.series_uid, coalesce(se.study_uid, ''),
    coalesce(st.patient_id, ''), i.transfer_syntax, i.path, i.size, i.source, i.received_at
    FROM instance i
    LEFT JOIN series se ON se.uid = i.series_uid
    LEFT JOIN study st ON st.uid = se.study_uid"""


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance in the store; ``path`` is relative to the root, ``/``-separated."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    transfer_syntax: str
    path: str
    size: int  # of the file
    source: str  # AE title of the peer that sent it ("" when not a valid AE title)
    received_at: str  # ISO 8601, UTC: the file's modification time


@dataclass(frozen=True, slots=True)
class StoreSummary:
    patients: int
    studies: int
    series: int
    instances: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Record:
    """Everything one stored instance contributes to the index."""

    instance: StoredInstance
    patient_name: str
    study_date: str
    study_description: str
    accession: str
    modality: str
    series_number: int | None
    series_description: str


class Index:
    """The SQLite index. Thread-safe: one connection, used under a lock.

    ``on_group_end(committed)`` is called (under the lock) after each group of rows is
    committed, or abandoned because its commit failed.
    """

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root  # the store's, for hints
        self.on_group_end: Callable[[bool], None] | None = None
        self._lock = threading.Lock()
        self._group_rows = 0
        self._group_started = 0.0
        self._written: dict[str, tuple[object, ...]] = {}  # last parent rows, per upsert
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._failure("cannot open the store", exc) from None
        try:
            self._prepare()
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._failure("cannot open the store", exc) from None
            raise

    def _failure(self, what: str, exc: sqlite3.Error) -> StoreError:
        return index_failure(what, self.path, self.root, exc)

    def _prepare(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store index {self.path} has schema {version}, newer than this "
                f"qrclient knows ({SCHEMA_VERSION})",
                "use a newer qrclient",
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        # A retrieve inserts at random places in b-trees keyed by UIDs and paths: with
        # SQLite's default 2 MB cache, a store of some thousands of instances read
        # pages back and spilled them before each group's commit.
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if version < SCHEMA_VERSION:
            steps = [_SCHEMA] if version == 0 else []
            steps += [_MIGRATIONS[v] for v in range(max(version, 1), SCHEMA_VERSION)]
            db.executescript(
                f"BEGIN IMMEDIATE; {' '.join(steps)} "
                f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )

    def close(self) -> None:
        """Commit the last group and close; the connection is closed even if that fails."""
        with self._lock:
            try:
                self._commit_group()
            finally:
                self._db.close()

    def flush(self) -> None:
        """Commit the rows put so far (done by itself every group and on close)."""
        with self._lock:
            self._commit_group()

    def _commit_group(self) -> None:
        db = self._db
        if not db.in_transaction:
            self._group_rows = 0
            return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            pending = self._group_rows
            self._written.clear()
            self._group_rows = 0
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back itself
                if db.in_transaction:
                    db.rollback()
            if self.on_group_end is not None:
                self.on_group_end(False)
            what = (
                f"cannot index the last {pending} instances received (their files are in "
                "place, not indexed)"
                if pending
                else "cannot commit to the store index"
            )
            raise self._failure(what, exc) from None
        self._group_rows = 0
        if self.on_group_end is not None:
            self.on_group_end(True)

    def _query(
        self, sql: str, parameters: Iterable[object] = (), what: str = "cannot read the store"
    ) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(parameters)).fetchall()
            except sqlite3.Error as exc:
                raise self._failure(what, exc) from None

    def _chunked(self, sql: str, keys: Iterable[str]) -> list[Any]:
        """``sql`` (with ``{marks}`` for an IN list) for the distinct ``keys``, in chunks."""
        unique = list(dict.fromkeys(keys))
        rows: list[Any] = []
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows += self._query(sql.format(marks=",".join("?" * len(chunk))), chunk)
        return rows

    def read(self, sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        """The rows ``sql`` selects (what is committed, and this connection's group)."""
        return self._query(sql, parameters)

    def write(self, statements: Sequence[tuple[str, Sequence[object]]]) -> int | None:
        """Run ``statements`` in one transaction, committed now, after the group of
        instance rows so far; the last row id inserted (None if none)."""
        with self._lock:
            self._commit_group()
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                last = None
                for sql, parameters in statements:
                    cursor = db.execute(sql, tuple(parameters))
                    last = cursor.lastrowid or last
                db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._failure("cannot write the store's jobs", exc) from None
                raise
            return last

    def copy_jobs(self, other: Path) -> None:
        """Take the jobs of the index file ``other`` (a rebuild keeps them); nothing if
        it has none or cannot be read (its instances are what the rebuild is about)."""
        with self._lock:
            self._commit_group()
            db = self._db
            try:
                db.execute("ATTACH DATABASE ? AS old", (str(other),))
            except sqlite3.Error:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO job SELECT * FROM old.job")
                db.execute("INSERT INTO job_item SELECT * FROM old.job_item")
                db.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.rollback()
            finally:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("DETACH DATABASE old")

    def put(self, record: Record) -> None:
        """Index one instance, in the current group; a failure undoes only this row."""
        with self._lock:
            try:
                self._insert_in_group(record, _UPSERTS[3])
            except sqlite3.Error as exc:
                raise self._failure(_cannot_index(record), exc) from None
            self._count_in_group()

    def put_new(self, record: Record) -> bool:
        """``put`` for an instance the index does not know, whose path nobody holds.

        False (and nothing written) otherwise. Not committed before ``end_put``: the
        caller moves the file into place in between, and takes the row out again with
        ``remove`` if that fails, so a committed row always names a file in place.
        One statement instead of a lookup and an upsert: the common case of a retrieve.
        """
        with self._lock:
            try:
                return self._insert_in_group(record, _INSERT_NEW_INSTANCE)
            except sqlite3.Error as exc:
                raise self._failure(_cannot_index(record), exc) from None

    def end_put(self) -> None:
        """Count a put row into its group, and commit the group once it is due."""
        with self._lock:
            self._count_in_group()

    def _count_in_group(self) -> None:
        self._group_rows += 1
        if (
            self._group_rows >= GROUP_ROWS
            or time.monotonic() - self._group_started >= GROUP_SECONDS
        ):
            self._commit_group()

    def remove(self, sop_instance_uid: str) -> None:
        """Take out a row ``put_new`` wrote (its file could not be moved into place)."""
        with self._lock, contextlib.suppress(sqlite3.Error):  # a rollback drops it too
            self._db.execute(_DELETE_INSTANCE, (sop_instance_uid,))

    def _insert_in_group(self, record: Record, statement: str) -> bool:
        db = self._db
        if not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
            self._group_started = time.monotonic()
        try:
            return _insert(db, record, self._written, statement)
        except BaseException:
            self._written.clear()  # the parents it wrote may be rolled back too
            raise

    def fill(self, records: Iterable[Record]) -> int:
        """Add ``records`` to an empty index in one transaction; how many were added."""
        count = 0
        with self._lock:
            try:
                self._commit_group()
                self._db.execute("BEGIN IMMEDIATE")
                for record in records:
                    _insert(self._db, record, self._written)
                    count += 1
                self._db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._failure("cannot rebuild the index", exc) from None
                raise
            finally:
                self._written.clear()
        return count

    def claims(self, sop_instance_uid: str, path: str) -> tuple[str | None, str | None]:
        """Where the instance is stored now, and which instance holds ``path``."""
        rows = self._query(
            "SELECT sop_instance_uid, path FROM instance WHERE sop_instance_uid = ? OR path = ?",
            (sop_instance_uid, path),
        )
        current = next((str(p) for uid, p in rows if uid == sop_instance_uid), None)
        holder = next((str(uid) for uid, p in rows if p == path), None)
        return current, holder

    def stored(self, sop_instance_uid: str) -> Stored | None:
        """What the index says of one instance, if it knows it."""
        rows = self._query(
            "SELECT path, size, source, transfer_syntax, sop_class_uid FROM instance "
            "WHERE sop_instance_uid = ?",
            (sop_instance_uid,),
        )
        return Stored(*rows[0]) if rows else None

    def locate(self, sop_instance_uids: Iterable[str]) -> list[tuple[str, str, int]]:
        """(SOP Instance UID, path, size) of those of ``sop_instance_uids`` indexed."""
        return self._chunked(
            "SELECT sop_instance_uid, path, size FROM instance WHERE sop_instance_uid IN ({marks})",
            sop_instance_uids,
        )

    def files_in_series(self, series_uid: str) -> list[tuple[str, str, int]]:
        """(SOP Instance UID, path, size) of every instance indexed in the series."""
        return self._query(
            "SELECT sop_instance_uid, path, size FROM instance WHERE series_uid = ?",
            (series_uid,),
        )

    def files_in_study(self, study_uid: str) -> list[tuple[str, str, int]]:
        """(SOP Instance UID, path, size) of every instance indexed in the study."""
        return self._query(
            """SELECT i.sop_instance_uid, i.path, i.size FROM instance i
               JOIN series se ON se.uid = i.series_uid WHERE se.study_uid = ?""",
            (study_uid,),
        )

    def instances(
        self,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[StoredInstance]:
        conditions, parameters = [], []
        for column, value in (
            ("se.study_uid", study_uid),
            ("i.series_uid", series_uid),
            ("i.sop_instance_uid", sop_instance_uid),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._query(f"SELECT {_INSTANCE_COLUMNS}{where} ORDER BY i.path", parameters)
        return [StoredInstance(*row) for row in rows]

    def files(self) -> dict[str, tuple[str, int]]:
        """Path to (SOP Instance UID, size) for every row."""
        rows = self._query("SELECT path, sop_instance_uid, size FROM instance")
        return {path: (uid, size) for path, uid, size in rows}

    def damage(self) -> list[str]:
        """What SQLite's own check finds wrong with the index file (empty if nothing)."""
        rows = self._query("PRAGMA quick_check")
        return [str(row[0]) for row in rows if row[0] != "ok"]

    def summary(self) -> StoreSummary:
        row = self._query(
            """SELECT count(DISTINCT st.patient_id), count(DISTINCT se.study_uid),
                      count(DISTINCT i.series_uid), count(*), coalesce(sum(i.size), 0)
               FROM instance i
               LEFT JOIN series se ON se.uid = i.series_uid
               LEFT JOIN study st ON st.uid = se.study_uid"""
        )[0]
        return StoreSummary(*row)


@dataclass(frozen=True, slots=True)
class Stored:
    """One instance's row, as far as storing it again needs."""

    path: str
    size: int
    source: str
    transfer_syntax: str
    sop_class_uid: str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_record(
    text: dict[str, str], syntax: str, source: str, relative: str, size: int, mtime_ns: int
) -> Record:
    """The index's record of a file at ``relative`` with the decoded attributes ``text``."""
    # The file's modification time is its receive time, and survives rename and rebuild.
    seconds, microseconds = divmod(mtime_ns // 1000, 1_000_000)
    instance = StoredInstance(
        sop_instance_uid=text["SOPInstanceUID"],
        sop_class_uid=text["SOPClassUID"],
        series_instance_uid=text["SeriesInstanceUID"],
        study_instance_uid=text["StudyInstanceUID"],
        patient_id=text["PatientID"],
        transfer_syntax=syntax,
        path=relative,
        size=size,
        source=source,
        received_at=f"{_utc_second(seconds)}.{microseconds:06d}+00:00",
    )
    try:
        series_number: int | None = int(text["SeriesNumber"])
    except ValueError:
        series_number = None
    return Record(
        instance,
        patient_name=text["PatientName"],
        study_date=text["StudyDate"],
        study_description=text["StudyDescription"],
        accession=text["AccessionNumber"],
        modality=text["Modality"],
        series_number=series_number,
        series_description=text["SeriesDescription"],
    )


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """ISO 8601 UTC date and time to the second, without the offset: a retrieve stores
    many instances a second, so each second is formatted once."""
    second = _EPOCH + timedelta(seconds=seconds)
    return second.isoformat(timespec="seconds").removesuffix("+00:00")


def _cannot_index(record: Record) -> str:
    return f"cannot index {record.instance.sop_instance_uid}"


def _insert(
    db: sqlite3.Connection,
    record: Record,
    written: dict[str, tuple[object, ...]],
    statement: str = _UPSERTS[3],
) -> bool:
    """Write the instance by ``statement`` (an upsert, or an insert of a new one only),
    then its parents; False, and nothing written, where the insert of a new one finds
    the instance indexed or its path held.
    A parent row equal to the one last written (``written``, per table) is skipped: a
    retrieve stores series after series.

    Without a savepoint (one per instance doubled the index's disk writes), a failure
    still undoes only this instance: its row goes in first, by one statement that
    happens whole or not at all, and if a parent then fails it is taken out again.
    """
    i, r = record.instance, record
    patient, study, series, _ = _UPSERTS
    parents = (
        (patient, (i.patient_id, r.patient_name)),
        (
            study,
            (i.study_instance_uid, i.patient_id, r.study_date, r.study_description, r.accession),
        ),
        (
            series,
            (
                i.series_instance_uid,
                i.study_instance_uid,
                r.modality,
                r.series_number,
                r.series_description,
            ),
        ),
    )
    cursor = db.execute(
        statement,
        (
            i.sop_instance_uid,
            i.series_instance_uid,
            i.sop_class_uid,
            i.transfer_syntax,
            i.path,
            i.size,
            i.source,
            i.received_at,
        ),
    )
    if statement == _INSERT_NEW_INSTANCE and cursor.rowcount == 0:
        return False  # (an upsert that changed nothing still writes the parents)
    try:
        for parent, values in parents:
            if written.get(parent) != values:
                db.execute(parent, values)
                written[parent] = values
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute(_DELETE_INSTANCE, (i.sop_instance_uid,))
        raise
    return True

"""What the store holds, per study and series: how many instances, how big, and where.

Read through a read-only connection of its own to the index, without the store's lock:
the UI browses a store while a retrieve (its own or another qrclient's) writes into it,
and sees what the writer has committed (group commits: at most ~0.5 s behind).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qrclient.store.errors import StoreDamaged, index_failure, rebuild_command
from qrclient.store.store import Store
from qrclient.store.tree import META_DIR, split


@dataclass(frozen=True, slots=True)
class SeriesHolding:
    series_uid: str
    modality: str
    series_number: int | None
    description: str
    instances: int
    bytes: int
    folder: str  # the directory holding the files (absolute), or the store's root


@dataclass(frozen=True, slots=True)
class StudyHolding:
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    description: str
    accession: str
    series: tuple[SeriesHolding, ...]

    @property
    def instances(self) -> int:
        return sum(s.instances for s in self.series)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.series)

    @property
    def folder(self) -> str:
        folders = [s.folder for s in self.series]
        return os.path.commonpath(folders) if folders else ""


_SQL = """
SELECT se.study_uid, coalesce(st.patient_id, ''), coalesce(p.name, ''),
       coalesce(st.study_date, ''), coalesce(st.description, ''), coalesce(st.accession, ''),
       i.series_uid, coalesce(se.modality, ''), se.series_number,
       coalesce(se.description, ''), count(*), coalesce(sum(i.size), 0),
       min(i.path), max(i.path)
FROM instance i
LEFT JOIN series se ON se.uid = i.series_uid
LEFT JOIN study st ON st.uid = se.study_uid
LEFT JOIN patient p ON p.id = st.patient_id
GROUP BY i.series_uid
ORDER BY st.study_date DESC, se.study_uid, se.series_number, i.series_uid
"""


_CHUNK = 500  # UIDs per IN (...) list, well under SQLite's variable limit


class StoreView:
    """Read-only questions to the index of the store at ``root``; no lock taken.
    The index's word only (``Store`` asks the files too).

    One connection, opened on the first question once the index exists, kept until
    :meth:`close`. Usable from several threads (a UI reads in a worker thread), one
    question at a time.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._database = (self.root / META_DIR / "index.sqlite").absolute()  # (a URI below)
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> StoreView:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _open(self) -> sqlite3.Connection | None:
        """The connection; None while nothing was retrieved into the store yet."""
        if self._connection is None and self._database.exists():
            self._connection = sqlite3.connect(
                f"{self._database.as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        return self._connection

    def _rows(self, sql: str, parameters: Sequence[str] = ()) -> list[tuple[Any, ...]]:
        """The rows ``sql`` selects; a StoreError (subclass) if the index fails."""
        with self._lock:
            try:
                connection = self._open()
                if connection is None:
                    return []
                return connection.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                if self._connection is not None:
                    self._connection.close()  # the next question starts afresh
                    self._connection = None
                raise index_failure(
                    "cannot read the store", self._database, self.root, exc
                ) from None

    def _counts(self, sql: str, uids: Sequence[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        unique = list(dict.fromkeys(uids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            query = sql.format(marks=",".join("?" * len(chunk)))
            counts.update((str(uid), int(n)) for uid, n in self._rows(query, chunk))
        return counts

    def study_counts(self, study_uids: Sequence[str]) -> dict[str, int]:
        """Instances stored per study (studies with none are absent)."""
        return self._counts(
            "SELECT se.study_uid, count(*) FROM instance i JOIN series se "
            "ON se.uid = i.series_uid WHERE se.study_uid IN ({marks}) GROUP BY se.study_uid",
            study_uids,
        )

    def series_counts(self, series_uids: Sequence[str]) -> dict[str, int]:
        """Instances stored per series (series with none are absent)."""
        return self._counts(
            "SELECT series_uid, count(*) FROM instance WHERE series_uid IN ({marks}) "
            "GROUP BY series_uid",
            series_uids,
        )

    def present(self, sop_instance_uids: Sequence[str]) -> dict[str, int]:
        """1 for each instance stored here."""
        return self._counts(
            "SELECT sop_instance_uid, 1 FROM instance WHERE sop_instance_uid IN ({marks})",
            sop_instance_uids,
        )

    def study_files(self, study_uid: str) -> list[str]:
        """The paths (relative to the root) of every instance indexed in the study."""
        return self._inside(
            "SELECT i.path FROM instance i JOIN series se ON se.uid = i.series_uid "
            "WHERE se.study_uid = ? ORDER BY i.series_uid, i.path",
            study_uid,
        )

    def series_files(self, series_uid: str) -> list[str]:
        """The paths (relative to the root) of every instance indexed in the series."""
        return self._inside(
            "SELECT path FROM instance WHERE series_uid = ? ORDER BY path", series_uid
        )

    def instance_file(self, sop_instance_uid: str) -> str | None:
        """The path (relative to the root) of one instance, None if it is not here."""
        paths = self._inside(
            "SELECT path FROM instance WHERE sop_instance_uid = ?", sop_instance_uid
        )
        return paths[0] if paths else None

    def _inside(self, sql: str, uid: str) -> list[str]:
        """The paths ``sql`` selects; StoreDamaged for one that would leave the store."""
        paths = [str(path) for (path,) in self._rows(sql, (uid,))]
        for path in paths:
            try:
                split(path)
            except ValueError as exc:
                raise StoreDamaged(
                    f"the index of {self.root} names {exc}",
                    f"index the files anew: {rebuild_command(self.root)}",
                ) from None
        return paths

    def holdings(self) -> list[StudyHolding]:
        """Every study in the store with its series, newest study first."""
        return _holdings(self.root, self._rows(_SQL))


def holdings(store: Store) -> list[StudyHolding]:
    """Every study in an open store, including what it has not committed yet."""
    store.flush()
    with StoreView(store.root) as view:
        return view.holdings()


def _holdings(root: Path, rows: list[tuple[Any, ...]]) -> list[StudyHolding]:
    studies: dict[str, tuple[tuple[str, str, str, str, str], list[SeriesHolding]]] = {}
    for row in rows:
        study_uid, patient_id, name, date, description, accession = row[:6]
        series_uid, modality, number, series_description, count, size, first, last = row[6:]
        folder = os.path.commonpath([os.path.dirname(first), os.path.dirname(last)])
        series = SeriesHolding(
            series_uid,
            modality,
            number,
            series_description,
            int(count),
            int(size),
            str(root / folder) if folder else str(root),
        )
        entry = studies.setdefault(
            study_uid or "", ((patient_id, name, date, description, accession), [])
        )
        entry[1].append(series)
    return [StudyHolding(uid, *info, tuple(series)) for uid, (info, series) in studies.items()]

"""What the store holds, per study and series: how many instances, how big, and where.

Read through a separate read-only connection to the index (after a flush), so browsing
the store never takes the write lock the retrieves use.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from qrclient.store.store import META_DIR, Store


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


def holdings(store: Store) -> list[StudyHolding]:
    """Every study in the store with its series, newest study first."""
    store.flush()
    database = Path(store.root) / META_DIR / "index.sqlite"
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute(_SQL).fetchall()
    finally:
        connection.close()
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
            str(Path(store.root) / folder) if folder else str(store.root),
        )
        entry = studies.setdefault(
            study_uid or "", ((patient_id, name, date, description, accession), [])
        )
        entry[1].append(series)
    return [StudyHolding(uid, *info, tuple(series)) for uid, (info, series) in studies.items()]

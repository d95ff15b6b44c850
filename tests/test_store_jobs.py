"""Durable jobs in the store's index: items and their states, kept across runs,
rebuilds and kills, read without the lock, and an index from before jobs migrated."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qrclient.store import ItemStatus, JobItem, JobState, Store, StoreError, read_jobs
from qrclient.store.index import SCHEMA_VERSION
from qrclient.store.overview import StoreView
from tests.test_store import ROOT_UID, make_dataset, store_dataset

ROWS = [
    {"AccessionNumber": "A1"},
    {"AccessionNumber": "A2", "StudyDate": "20240101-20240131"},
    {"PatientID": "P3"},
]

# The index as qrclient wrote it before jobs (schema 1), kept here as it was.
SCHEMA_1 = """
CREATE TABLE patient (id TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE study (
    uid TEXT PRIMARY KEY, patient_id TEXT NOT NULL, study_date TEXT NOT NULL,
    description TEXT NOT NULL, accession TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE series (
    uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, modality TEXT NOT NULL,
    series_number INTEGER, description TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE instance (
    sop_instance_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, source TEXT NOT NULL,
    received_at TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX instance_series ON instance (series_uid);
CREATE INDEX series_study ON series (study_uid);
CREATE INDEX study_patient ON study (patient_id);
PRAGMA user_version = 1;
"""


def test_a_job_is_created_with_its_items_pending(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        job = store.jobs.create("retrieve", "pacs", {"method": "get"}, "cohort.csv", ROWS)
        assert (job.command, job.node, job.spec, job.source) == (
            "retrieve",
            "pacs",
            {"method": "get"},
            "cohort.csv",
        )
        assert job.state is JobState.RUNNING
        assert job.counts == {ItemStatus.PENDING: 3}
        assert (job.total, job.done, job.resumable) == (3, 0, True)
        items = job.items()
        assert [item.row for item in items] == [1, 2, 3]
        assert [item.keys for item in items] == ROWS
        assert {item.status for item in items} == {ItemStatus.PENDING}
        second = store.jobs.create("get", "other", {}, "-", ROWS[:1])
        assert second.id > job.id
        assert [j.id for j in store.jobs.all()] == [job.id, second.id]


def test_items_and_states_survive_closing_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        job = store.jobs.create("retrieve", "pacs", {}, "cohort.csv", ROWS)
        first, second, third = job.items()
        studies = (f"{ROOT_UID}.1.1", f"{ROOT_UID}.1.2")
        store.jobs.update(
            JobItem(job.id, 1, first.keys, ItemStatus.RETRIEVED, studies[:1], 10, 7, 3, 0)
        )
        store.jobs.update(
            JobItem(job.id, 2, second.keys, ItemStatus.AMBIGUOUS, studies, detail="2 studies")
        )
        store.jobs.set_state(job.id, JobState.INTERRUPTED)
    with Store.open(tmp_path) as store:
        [again] = store.jobs.all()
        assert again.state is JobState.INTERRUPTED
        assert again.counts == {
            ItemStatus.RETRIEVED: 1,
            ItemStatus.AMBIGUOUS: 1,
            ItemStatus.PENDING: 1,
        }
        assert again.done == 2
        retrieved, ambiguous, pending = again.items()
        assert (retrieved.studies, retrieved.planned, retrieved.received, retrieved.skipped) == (
            studies[:1],
            10,
            7,
            3,
        )
        assert ambiguous.studies == studies
        assert ambiguous.detail == "2 studies"
        assert pending == third
        for item in again.items():
            store.jobs.update(JobItem(job.id, item.row, item.keys, ItemStatus.NOT_FOUND))
        store.jobs.set_state(job.id, JobState.FINISHED)
        finished = store.jobs.get(job.id)
        assert finished is not None
        assert not finished.resumable


def test_cancel_forgets_a_job_and_keeps_the_instances(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store_dataset(store, make_dataset(1))
        job = store.jobs.create("retrieve", "pacs", {}, "-", ROWS)
        assert store.jobs.delete(job.id)
        assert not store.jobs.delete(job.id)
        assert store.jobs.get(job.id) is None
        assert store.jobs.items(job.id) == []
        assert store.summary().instances == 1
        # Ids are not reused: an old report's job id never names another job.
        assert store.jobs.create("retrieve", "pacs", {}, "-", ROWS).id > job.id


def test_jobs_are_read_without_the_lock_while_a_job_runs(tmp_path: Path) -> None:
    assert read_jobs(tmp_path) == []  # no store yet
    with Store.open(tmp_path) as store:
        job = store.jobs.create("retrieve", "pacs", {}, "-", ROWS)
        [seen] = read_jobs(tmp_path)
        assert seen.id == job.id
        assert seen.counts == {ItemStatus.PENDING: 3}
        item = seen.items()[0]
        store.jobs.update(JobItem(job.id, item.row, item.keys, ItemStatus.NOT_FOUND))
        assert seen.items()[0].status is ItemStatus.NOT_FOUND  # read afresh


def test_an_index_from_before_jobs_is_migrated(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        stored = store_dataset(store, make_dataset(1))
    database = tmp_path / ".qrclient" / "index.sqlite"
    db = sqlite3.connect(database)
    rows = {
        table: db.execute(f"SELECT * FROM {table}").fetchall()
        for table in ("patient", "study", "series", "instance")
    }
    db.close()
    database.unlink()
    old = sqlite3.connect(database)
    old.executescript(SCHEMA_1)
    for table, values in rows.items():
        for row in values:
            old.execute(f"INSERT INTO {table} VALUES ({','.join('?' * len(row))})", row)
    old.commit()
    old.close()

    assert read_jobs(tmp_path) == []  # a reader of an old index finds no jobs
    with Store.open(tmp_path) as store:
        assert store.instances() == [stored]
        assert store.jobs.all() == []
        job = store.jobs.create("retrieve", "pacs", {}, "-", ROWS)
        assert len(job.items()) == 3
    db = sqlite3.connect(database)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()


def test_a_rebuild_keeps_the_jobs(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store_dataset(store, make_dataset(1))
        job = store.jobs.create("retrieve", "pacs", {"method": "move"}, "-", ROWS)
        assert store.rebuild_index() == 1
        [kept] = store.jobs.all()
        assert (kept.id, kept.spec, len(kept.items())) == (job.id, {"method": "move"}, 3)
    with Store.open(tmp_path, rebuild=True) as store:
        assert [j.id for j in store.jobs.all()] == [job.id]


def test_a_closed_store_refuses_job_questions(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.jobs.all()


KILLED = """
import os, sys
from qrclient.store import ItemStatus, JobItem, Store
store = Store.open(sys.argv[1])
rows = [{"AccessionNumber": f"A{n}"} for n in range(50)]
job = store.jobs.create("retrieve", "pacs", {}, "-", rows)
for item in job.items()[:20]:
    store.jobs.update(JobItem(job.id, item.row, item.keys, ItemStatus.RETRIEVED, ("1.2",), 1, 1))
print("updated", flush=True)
sys.stdin.readline()
"""


def test_a_killed_process_leaves_its_items_as_they_were(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdin is not None
    assert writer.stdout.readline() == "updated\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    writer.stdout.close()
    writer.stdin.close()
    with Store.open(tmp_path) as store:
        [job] = store.jobs.all()
        assert job.state is JobState.RUNNING  # nobody said it stopped: resumable
        assert job.counts == {ItemStatus.RETRIEVED: 20, ItemStatus.PENDING: 30}


def test_jobs_of_a_store_named_by_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open(tmp_path / "store") as store:
        store.jobs.create("retrieve", "pacs", {}, "-", ROWS)
    monkeypatch.chdir(tmp_path)
    [job] = read_jobs(Path("store"))
    assert len(job.items()) == 3
    with StoreView(Path("store")) as view:  # the UI's and store ls's reader likewise
        assert view.holdings() == []

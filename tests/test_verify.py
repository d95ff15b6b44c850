"""Trusting the disk over the index, and verifying a retrieve against the PACS."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import anyio

from fixtures.dataset import Archive, StudySpec, find_patient
from qrclient.jobs.cohort.run import RETRIES, CohortOptions, CohortRun
from qrclient.net.settings import Settings
from qrclient.store import Incoming, ItemStatus, JobItem, Store, StoreError
from qrclient.vocabulary import Method
from tests.conftest import OUR_AE, RealPacs
from tests.test_cli_retrieve import instances, stored_uids
from tests.test_cohort import qrclient


def test_files_deleted_from_the_store_are_fetched_again(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "BIG001").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    first = qrclient("retrieve", real_pacs.node, "-k", key, "--out", str(tmp_path), "--aet", OUR_AE)
    assert first.returncode == 0, first.stderr
    files = sorted(p for p in tmp_path.rglob("*.dcm") if ".qrclient" not in p.parts)
    for gone in files[:10]:
        gone.unlink()
    again = qrclient("retrieve", real_pacs.node, "-k", key, "--out", str(tmp_path), "--aet", OUR_AE)
    assert again.returncode == 0, again.stderr
    assert f"10 instances received ({len(files) - 10} already here)" in again.stdout
    assert stored_uids(tmp_path) == instances(study)


def test_store_missing_names_the_series_short_here(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT001").studies[1]  # MR: 3 series
    key = f"StudyInstanceUID={study.study_instance_uid}"
    store = tmp_path / "store"
    first = qrclient("retrieve", real_pacs.node, "-k", key, "--out", str(store), "--aet", OUR_AE)
    assert first.returncode == 0, first.stderr
    whole = qrclient(
        "store", "missing", real_pacs.node, "-k", "PatientID=PAT001", "--out", str(store)
    )
    assert whole.returncode == 5  # the patient's other study is not here at all
    assert len(whole.stdout.splitlines()) == len(find_patient(archive, "PAT001").studies[0].series)

    series = study.series[0]
    for instance in series.instances[:2]:
        [path] = [p for p in store.rglob(f"{instance.sop_instance_uid}*") if p.is_file()]
        path.unlink()
    cohort = tmp_path / "c.csv"
    cohort.write_text(f"AccessionNumber\n{study.accession_number}\nNOSUCH\n")
    short = qrclient("store", "missing", real_pacs.node, "--from", str(cohort), "--out", str(store))
    assert short.returncode == 5, short.stderr
    [line] = short.stdout.splitlines()
    total = len(series.instances)
    assert line.split() == [
        study.study_instance_uid,
        series.series_instance_uid,
        str(total - 2),
        "of",
        str(total),
        "here",
    ]
    assert "row 2: not found" in short.stderr

    again = qrclient(
        "retrieve", real_pacs.node, "--from", str(cohort), "--out", str(store), "--aet", OUR_AE
    )
    assert "2 instances received" in again.stderr
    whole_again = qrclient("store", "missing", real_pacs.node, "-k", key, "--out", str(store))
    assert whole_again.returncode == 0, whole_again.stderr
    assert "nothing missing: 3 series of 1 studies are whole" in whole_again.stderr


def test_store_missing_needs_keys_or_a_list(tmp_path: Path) -> None:
    result = qrclient("store", "missing", "PACS@127.0.0.1:1", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "-k" in result.stderr
    bad = qrclient(
        "store", "missing", "PACS@127.0.0.1:1", "-k", "Modality=CT", "--out", str(tmp_path)
    )
    assert bad.returncode == 2
    assert "expected StudyInstanceUID" in bad.stderr


class FlakyStore:
    """The store, refusing the first ``times`` deliveries of some instances (a disk
    that failed for a moment): the retrieve ends short, the check after it finds out."""

    def __init__(self, store: Store, flaky: set[str], times: int) -> None:
        self.store = store
        self.flaky = {uid: times for uid in flaky}

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, syntax: str, source: str
    ) -> Incoming:
        if self.flaky.get(sop_instance_uid, 0) > 0:
            self.flaky[sop_instance_uid] -= 1
            raise StoreError(f"{sop_instance_uid} was not stored: a moment's failure")
        return self.store.begin(sop_class_uid, sop_instance_uid, syntax, source)

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]:
        return self.store.present(sop_instance_uids)

    def instances_in_study(self, study_instance_uid: str) -> int:
        return self.store.instances_in_study(study_instance_uid)

    def series_counts(self, series_uid: str) -> int:
        return self.store.series_counts(series_uid)


def run_cohort(
    real_pacs: RealPacs, root: Path, flaky: set[str], times: int, study: StudySpec
) -> JobItem:
    with Store.open(root) as store:
        job = store.jobs.create(
            "get", "pacs", {}, "-", [{"StudyInstanceUID": study.study_instance_uid}]
        )
        cohort = CohortRun(
            real_pacs.peer,
            Settings(calling_ae=OUR_AE),
            store,
            FlakyStore(store, flaky, times),
            job,
            CohortOptions(method=Method.GET, parallel=1),
        )
        [item] = anyio.run(cohort.run).items
    return item


def test_what_a_retrieve_left_short_is_asked_for_again(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT002").studies[1]
    flaky = {i.sop_instance_uid for i in study.series[0].instances[:2]}
    item = run_cohort(real_pacs, tmp_path, flaky, RETRIES, study)
    assert item.status is ItemStatus.RETRIEVED, item.detail
    assert stored_uids(tmp_path) == instances(study)


def test_series_that_stay_short_are_reported(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    study = find_patient(archive, "PAT002").studies[1]
    series = study.series[0]
    flaky = {series.instances[0].sop_instance_uid}
    item = run_cohort(real_pacs, tmp_path, flaky, RETRIES + 1, study)
    assert item.status is ItemStatus.PARTIAL
    total = len(series.instances)
    here = f"{total - 1} of {total} instances here"
    assert f"short after {RETRIES} retries: series {series.series_instance_uid}: {here}" in (
        item.detail
    )
    assert stored_uids(tmp_path) == instances(study) - flaky

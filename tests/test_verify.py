"""Trusting the disk over the index, and verifying a retrieve against the PACS."""

from __future__ import annotations

from pathlib import Path

from fixtures.dataset import Archive, find_patient
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

"""The UI backend's queries: each match once, whatever the PACS repeats."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from fixtures.dataset import Archive, all_studies
from qrclient.net import Peer, Settings
from qrclient.ops.find import FindState
from qrclient.ops.query import build_query
from qrclient.tui.backend import Node, RealBackend
from qrclient.vocabulary import Level, Model
from tests.conftest import RealPacs
from tests.fake_pacs import FakePacs, instances
from tests.fakepeer import fake_peer

pytestmark = pytest.mark.anyio


async def test_a_study_sent_once_per_instance_is_one_row(tmp_path: Path) -> None:
    pacs = FakePacs(instances(studies=2, per_study=3), study_per_instance=True)
    backend = RealBackend(tmp_path / "store", Settings("QRCLIENT"))
    try:
        async with fake_peer(pacs.serve) as (port, _):
            node = Node(Peer("FAKE", "127.0.0.1", port))
            with anyio.fail_after(10):
                async with backend.find(node, build_query(Level.STUDY, Model.STUDY)) as matches:
                    rows = [row async for row in matches]
    finally:
        await backend.aclose()
    assert pacs.finds == [6]
    # The table holds one row per study: its row count is the distinct count shown.
    assert [row["StudyInstanceUID"] for row in rows] == ["2.25.10", "2.25.11"]
    outcome = matches.outcome
    assert outcome.state is FindState.SUCCESS
    assert (outcome.count, outcome.distinct) == (6, 2)
    assert sum("more than once" in w for w in outcome.warnings) == 1  # for the log pane


async def test_remote_totals_on_both_pacs(
    real_pacs: RealPacs, archive: Archive, tmp_path: Path
) -> None:
    """Instances per study and series on the PACS: Orthanc computes them, dcmqrscp does
    not (its studies are counted at IMAGE level instead)."""
    studies = [s for _, s in all_studies(archive)]
    backend = RealBackend(tmp_path / "store", Settings("QRCLIENT"))
    try:
        with anyio.fail_after(60):
            totals = await backend.remote_totals(
                Node(real_pacs.peer), [s.study_instance_uid for s in studies]
            )
    finally:
        await backend.aclose()
    expected = {}
    for study in studies:
        expected[study.study_instance_uid] = sum(len(se.instances) for se in study.series)
        for series in study.series:
            expected[series.series_instance_uid] = len(series.instances)
    assert totals == expected

"""The UI backend's queries: each match once, whatever the PACS repeats."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from qrclient.net import Peer, Settings
from qrclient.ops.find import FindState
from qrclient.ops.query import Level, Model, build_query
from qrclient.tui.backend import Node, RealBackend
from tests.fakepeer import fake_peer
from tests.scripted_pacs import ScriptedPacs, instances

pytestmark = pytest.mark.anyio


async def test_a_study_sent_once_per_instance_is_one_row(tmp_path: Path) -> None:
    pacs = ScriptedPacs(instances(studies=2, per_study=3), study_per_instance=True)
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

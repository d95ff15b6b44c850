"""Retrieve progress: counters, snapshots, watching, and the one-line bar."""

from __future__ import annotations

import anyio
import pytest

from qrclient.cli.progress_bar import render
from qrclient.ops.progress import Progress, Snapshot

pytestmark = pytest.mark.anyio


def test_counters_and_first_instance_time() -> None:
    progress = Progress()
    assert progress.snapshot().first_instance_after is None
    progress.update(1, remaining=10, completed=0)
    progress.add(received=1, received_bytes=1000)
    progress.add(received=2, received_bytes=3000, skipped=4)
    progress.update(1, remaining=7, completed=3, failed=1)
    snapshot = progress.snapshot()
    assert (snapshot.received, snapshot.received_bytes, snapshot.skipped) == (3, 4000, 4)
    assert (snapshot.remaining, snapshot.completed, snapshot.failed, snapshot.warning) == (
        7,
        3,
        1,
        0,
    )
    assert snapshot.first_instance_after is not None
    assert 0 <= snapshot.first_instance_after <= snapshot.elapsed
    assert not snapshot.finished
    progress.finish()
    assert progress.snapshot().finished


def test_parallel_operations_add_up() -> None:
    """Two operations at once: the job's counts are sums, never the latest one's."""
    progress = Progress()
    progress.update(1, remaining=9, completed=1)
    progress.update(2, remaining=4, completed=1, failed=1)
    progress.update(1, remaining=8, completed=2)
    snapshot = progress.snapshot()
    assert (snapshot.remaining, snapshot.completed, snapshot.failed) == (12, 3, 1)
    progress.expect(20)  # with a plan, remaining is what it expects minus what is done
    progress.update(2, remaining=3, completed=2, failed=1, warning=1)
    snapshot = progress.snapshot()
    assert (snapshot.completed, snapshot.failed, snapshot.warning) == (4, 1, 1)
    assert snapshot.remaining == 20 - 4 - 1 - 1


async def test_watch_sees_changes_and_ends_when_done() -> None:
    progress = Progress()
    seen: list[int] = []

    async def work() -> None:
        for _ in range(3):
            await anyio.sleep(0.02)
            progress.add(received=1)
        progress.finish()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(work)
            async for snapshot in progress.watch(interval=0):
                seen.append(snapshot.received)
    assert seen[0] == 0
    assert seen[-1] == 3
    assert seen == sorted(seen)


def test_bar_with_a_known_total() -> None:
    line = render(Snapshot(remaining=750, received=250, received_bytes=25_000_000, elapsed=2.0))
    assert line.startswith("[######..................]")
    assert "250/1000 instances" in line
    assert "25.0 MB" in line
    assert "12.5 MB/s" in line
    assert "ETA 6 s" in line  # 750 left at 125 instances/s
    assert len(line) < 80


def test_bar_without_a_total_yet() -> None:
    line = render(Snapshot(received=5, received_bytes=1_000_000, elapsed=1.0))
    assert line.startswith("[" + "?" * 24 + "]")
    assert "5 instances" in line
    assert "ETA" not in line


def test_snapshot_done_total_and_eta() -> None:
    # C-GET or C-MOVE to us: what arrived counts even before the peer's counts catch up.
    here = Snapshot(remaining=60, completed=10, failed=5, received=35, elapsed=4.0)
    assert (here.succeeded, here.done, here.total) == (35, 40, 100)
    assert here.eta_seconds == 6.0  # 60 left at 10 per second
    # C-MOVE to another AE: nothing arrives here, the peer's counts are all there is.
    elsewhere = Snapshot(remaining=30, completed=8, warning=2, elapsed=5.0)
    assert (elsewhere.done, elsewhere.total, elsewhere.eta_seconds) == (10, 40, 15.0)
    unknown = Snapshot(received=3, elapsed=1.0)
    assert (unknown.done, unknown.total, unknown.eta_seconds) == (3, None, None)
    assert Snapshot(remaining=0, completed=4, elapsed=1.0).eta_seconds is None


def test_bar_moves_for_a_move_to_another_ae() -> None:
    line = render(Snapshot(remaining=30, completed=10, elapsed=5.0))
    assert line.startswith("[######..................]")
    assert "10/40 instances" in line
    assert "ETA 15 s" in line


def test_with_a_plan_the_total_is_the_plan() -> None:
    """Instances can arrive before the peer's counts say so; done and remaining agree."""
    progress = Progress()
    progress.expect(10)
    progress.add(received=3, received_bytes=300)
    progress.update(1, remaining=9, completed=1)
    snapshot = progress.snapshot()
    assert (snapshot.done, snapshot.remaining, snapshot.total) == (3, 7, 10)

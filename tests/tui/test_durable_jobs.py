"""The store's durable jobs in the jobs panel, resumed from it; quitting asks first
while jobs run (issue 15.3, the UI's half)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from fixtures.dataset import Archive, all_studies
from qrclient.net import Peer
from qrclient.store.jobs import ItemStatus, Job, JobState, read_jobs
from qrclient.tui.screens.confirm import ConfirmQuit
from qrclient.tui.widgets.jobs_panel import DurableJobView
from tests.conftest import OUR_AE
from tests.test_cli_retrieve import instances, stored_uids
from tests.test_cohort import write_csv
from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, wait_until
from tests.tui.test_flow import real_app

pytestmark = pytest.mark.anyio


def _job(job_id: int, state: JobState, done: int, total: int) -> Job:
    counts = {ItemStatus.RETRIEVED: done}
    if total > done:
        counts[ItemStatus.PENDING] = total - done
    return Job(
        job_id,
        "retrieve",
        "pacs",
        {},
        "cohort.csv",
        state,
        "2026-12-06T05:00:00+00:00",
        "2026-12-06T05:10:00+00:00",
        counts,
        lambda _: [],
    )


def _log(pilot: Pilot[Any]) -> str:
    return "\n".join(main_screen(pilot).log_pane.lines)


def _durable_text(pilot: Pilot[Any]) -> list[str]:
    return [str(view.render()) for view in main_screen(pilot).query(DurableJobView)]


async def test_the_store_jobs_show_after_a_restart_and_r_resumes_one() -> None:
    backend = FakeBackend()
    backend.durable = [_job(1, JobState.FINISHED, 4, 4), _job(2, JobState.INTERRUPTED, 3, 10)]
    async with fake_app(backend).run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.press("f3")
        lines = _durable_text(pilot)
        assert lines[0].startswith("store job #1 retrieve from pacs (cohort.csv): 4/4 rows done")
        assert "3/10 rows done · interrupted" in lines[1]
        await pilot.press("r")  # the first: finished, nothing to resume
        assert backend.resumed == []
        await pilot.press("tab", "r")
        await wait_until(pilot, lambda: backend.resumed == [2])
        await wait_until(pilot, lambda: "10/10 rows done · finished" in _durable_text(pilot)[1])
        await wait_until(pilot, lambda: "store job #2: finished, 10/10 rows done" in _log(pilot))


async def test_a_store_that_cannot_be_read_is_reported_not_fatal() -> None:
    backend = FakeBackend()
    backend.durable_failure = True
    async with fake_app(backend).run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: "cannot read the store's jobs" in _log(pilot))
        assert _durable_text(pilot) == []


async def test_quitting_with_a_running_retrieve_asks_first() -> None:
    app = fake_app(FakeBackend(hold_retrieve=True))
    async with app.run_test(size=(100, 30)) as pilot:
        await run_query(pilot)
        await pilot.press("r")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmQuit))
        assert "1 job is still running" in str(pilot.app.screen.query("Label").first().render())
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(pilot.app.screen, ConfirmQuit))
        assert main_screen(pilot).jobs_panel.busy == 1
        await pilot.press("ctrl+q", "y")
        await wait_until(pilot, lambda: app._exit)
    assert app.return_code == 0


async def test_quitting_with_a_resume_running_asks_and_without_jobs_does_not() -> None:
    backend = FakeBackend()
    backend.durable = [_job(1, JobState.INTERRUPTED, 1, 3)]
    backend.hold_resume = True
    async with fake_app(backend).run_test(size=(100, 30)) as pilot:
        await pilot.press("f3", "r")
        await wait_until(pilot, lambda: backend.resumed == [1])
        assert "resuming…" in _durable_text(pilot)[0]
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmQuit))
        await pilot.press("escape", "c")  # stop the resume: nothing runs any more
        await wait_until(pilot, lambda: main_screen(pilot).jobs_panel.busy == 0)
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app._exit)
        assert not isinstance(pilot.app.screen, ConfirmQuit)


def _interrupted_cohort(peer: Peer, archive: Archive, tmp_path: Path) -> tuple[Path, int]:
    """A cohort retrieve from the command line, stopped by Ctrl-C after two studies."""
    studies = [study for _, study in all_studies(archive)][:6]
    cohort = write_csv(
        tmp_path / "cohort.csv", ["AccessionNumber"], [[s.accession_number] for s in studies]
    )
    store = tmp_path / "store"
    command = [sys.executable, "-m", "qrclient", "retrieve", str(peer), "--from", str(cohort)]
    command += ["--out", str(store), "--aet", OUR_AE, "--max-associations", "1", "--rate", "3/s"]
    running = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert running.stderr is not None
    retrieved = 0
    for line in running.stderr:
        retrieved += ": retrieved" in line
        if retrieved == 2:
            break
    running.send_signal(signal.SIGINT)
    running.communicate(timeout=60)
    assert running.returncode == 130
    return store, len(studies)


async def test_a_cohort_interrupted_on_the_command_line_is_resumed_from_the_ui(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    store, count = _interrupted_cohort(peer, archive, tmp_path)
    [job] = read_jobs(store)
    assert job.state is JobState.INTERRUPTED
    assert 2 <= job.done < count
    app = real_app(peer, store, listen_ports[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        assert "interrupted" in _durable_text(pilot)[0]
        await pilot.press("r")
        panel = main_screen(pilot).jobs_panel
        await wait_until(pilot, lambda: panel.busy == 1)
        await wait_until(pilot, lambda: panel.busy == 0, seconds=120)
        assert f"{count}/{count} rows done · finished" in _durable_text(pilot)[0]
    [job] = read_jobs(store)
    assert job.state is JobState.FINISHED
    assert job.counts == {ItemStatus.RETRIEVED: count}
    studies = [study for _, study in all_studies(archive)][:count]
    assert stored_uids(store) == set().union(*(instances(s) for s in studies))

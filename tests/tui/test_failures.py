"""A failed retrieve shows its cause and hint everywhere, never an exception group."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrclient.jobs.retrieve import RetrieveJob, RetrieveRequest
from qrclient.net import ConnectFailed, Peer, Settings
from qrclient.tui.backend import Node, RealBackend
from qrclient.tui.jobs import JobState
from qrclient.tui.widgets.log_pane import LogPane
from qrclient.vocabulary import Level, Method, Model
from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, toasts, wait_until

pytestmark = pytest.mark.anyio

REFUSED = ConnectFailed(
    "connection refused by pacs.example.org:4242",
    "nothing listens on that port: check the PACS's DICOM port and that it is running",
)
TWO_FAILURES = ExceptionGroup("unhandled errors in a TaskGroup", [REFUSED, REFUSED])


async def test_a_failed_retrieve_shows_the_cause_and_hint_in_toast_jobs_and_log() -> None:
    backend = FakeBackend()
    backend.retrieve_error = TWO_FAILURES
    async with fake_app(backend).run_test(size=(100, 30), notifications=True) as pilot:
        screen = main_screen(pilot)
        await run_query(pilot)
        await pilot.press("r")
        job = screen.jobs_panel.jobs[1]
        await wait_until(pilot, lambda: job.state.ended)
        assert job.state is JobState.FAILED
        assert job.error == REFUSED.message
        await wait_until(pilot, lambda: any(REFUSED.message in t for t in toasts(pilot)))
        [toast] = [t for t in toasts(pilot) if REFUSED.message in t]
        assert REFUSED.hint in toast
        await pilot.press("f3")
        shown = str(screen.query_one("#job-1 .job-error").render())
        assert shown == REFUSED.message
        log = screen.query_one(LogPane)
        await wait_until(pilot, lambda: any(REFUSED.hint in line for line in log.lines))
        everything = "\n".join([*toasts(pilot), shown, *log.lines])
        assert "TaskGroup" not in everything
        assert "sub-exception" not in everything


async def test_the_real_backend_raises_the_typed_error_of_a_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fails(self: RetrieveJob) -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("odd"), REFUSED])

    monkeypatch.setattr(RetrieveJob, "run", fails)
    backend = RealBackend(tmp_path / "store", Settings("QRCLIENT"))
    request = RetrieveRequest.parse(Level.STUDY, Model.STUDY, ["StudyInstanceUID=1.2.3"])
    try:
        with pytest.raises(ConnectFailed) as raised:
            await backend.retrieve(
                Node(Peer("PACS", "127.0.0.1", 104), Method.GET), request, lambda _: None
            )
    finally:
        await backend.aclose()
    assert raised.value is REFUSED

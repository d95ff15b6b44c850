"""The UI shows a hostile peer's text inert: no escape sequence drawn, no markup obeyed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from fixtures.orthanc import free_ports
from qrclient.net import Settings
from qrclient.tui.app import QrclientApp
from qrclient.tui.backend import Backend, RealBackend
from qrclient.tui.widgets.log_pane import LogPane
from tests.fakepeer import fake_peer
from tests.test_terminal_safety import MARKUP, RAW, evil_peer
from tests.tui.helpers import main_screen, status_text, toasts, wait_until

pytestmark = [
    pytest.mark.anyio,
    # pydicom's, about the hostile values themselves (encoded by the peer, decoded by us)
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning"),
    pytest.mark.filterwarnings("ignore:Found unknown escape sequence:UserWarning"),
]
HOST = "127.0.0.1"


def _screen_text(pilot: Pilot[Any]) -> str:
    """Everything drawn on the screen (the SVG holds each segment's text as drawn)."""
    return pilot.app.export_screenshot()


async def test_the_ui_renders_a_hostile_peer_inert(tmp_path: Path) -> None:
    (listen,) = free_ports(1)

    def backend(observer: Any) -> Backend:
        return RealBackend(
            tmp_path / "store",
            Settings("QRCLIENT"),
            observer=observer,
            listen=("127.0.0.1", listen),
        )

    async with fake_peer(evil_peer) as (port, _):
        app = QrclientApp(backend, node=f"EVIL@127.0.0.1:{port}")
        async with app.run_test(size=(160, 40), notifications=True) as pilot:
            screen = main_screen(pilot)
            echo_status = screen.query_one("#echo-status", Static)
            await pilot.press("f6")
            await wait_until(pilot, lambda: "echo" in str(echo_status.render()))
            assert "\\x1b]0;pwn\\x07" in str(echo_status.render())  # the version name, inert
            drawn = [_screen_text(pilot)]

            screen.query_one("#patient_name", Input).focus()
            await pilot.press("enter")
            await wait_until(pilot, lambda: "failed" in status_text(pilot))
            assert screen.table.row_count == 1
            await wait_until(pilot, lambda: any(MARKUP in t for t in toasts(pilot)))
            drawn.append(_screen_text(pilot))
            shown = toasts(pilot)

            screen.table.focus()
            await pilot.press("r")
            job = screen.jobs_panel.jobs[1]
            await wait_until(pilot, lambda: job.state.ended)
            await pilot.press("f3")
            await pilot.pause()
            job_error = str(screen.query_one("#job-1 .job-error").render())
            assert "\\x1b[2J" in job_error  # the hostile UID, shown as text
            drawn.append(_screen_text(pilot))

            await pilot.press("f5")
            log = screen.query_one(LogPane)
            await wait_until(pilot, lambda: any("\\x1b" in line for line in log.lines))
            await pilot.pause(0.3)
            drawn.append(_screen_text(pilot))
            lines: list[str] = [str(line) for line in log.lines]

    for text in [*drawn, *lines, *shown]:
        assert not RAW.search(text), RAW.findall(text)
    # Markup from the peer is shown as the text it is: in the table, a toast, the log.
    assert MARKUP in drawn[1]  # the accession number's cell
    assert any("[@click=app.quit]Q[/]" in toast for toast in shown)  # a link, not run
    assert any(MARKUP in line for line in lines)

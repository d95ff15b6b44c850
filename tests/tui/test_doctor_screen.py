"""The doctor in the UI (issue 16.3): f7 for the node in the node bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from qrclient.net import Peer
from qrclient.tui.screens.doctor import DoctorScreen
from tests.tui.conftest import fake_app
from tests.tui.helpers import main_screen, wait_until
from tests.tui.test_flow import real_app

pytestmark = pytest.mark.anyio


def _report(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#doctor-report", Static).render())


def _caption(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#doctor-caption", Static).render())


async def _doctor(pilot: Pilot[Any]) -> None:
    await pilot.press("f7")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, DoctorScreen))
    await wait_until(pilot, lambda: "verdict:" in _report(pilot), seconds=90)


def test_doctor_screen_snapshot(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_doctor, terminal_size=(100, 24))


async def test_f7_diagnoses_the_node_in_the_node_bar_and_names_the_fix() -> None:
    async with fake_app().run_test(size=(100, 30)) as pilot:
        await _doctor(pilot)
        report = _report(pilot)
        assert "FAIL  C-MOVE to us" in report
        assert "to fix:\n  - C-MOVE to us: register QRCLIENT" in report
        assert _caption(pilot).endswith("problems, 1 failed")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(pilot.app.screen, DoctorScreen))
        node = main_screen(pilot).query_one("#node", Input)
        node.value = "not a node"
        await pilot.press("f7")
        assert not isinstance(pilot.app.screen, DoctorScreen)  # the node bar says why


async def test_the_doctor_screen_checks_orthanc(
    peer: Peer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    async with real_app(peer, tmp_path / "store", listen_ports[0]).run_test(
        size=(120, 40)
    ) as pilot:
        await _doctor(pilot)
        report = _report(pilot)
        assert f"qrclient doctor: {peer}, our AE title QRCLIENT" in report
        for check in ("TCP connection", "association", "C-ECHO"):
            assert any(line.startswith(f"  ok    {check}") for line in report.splitlines()), report
        assert "C-FIND" in report
        assert _caption(pilot).startswith(f"doctor: {peer}: ")

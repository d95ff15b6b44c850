"""Driving the app from tests: wait for a condition while the app runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from qrclient.tui.screens.main import MainScreen


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], seconds: float = 30) -> None:
    """Let the app run until ``condition`` holds; fail after ``seconds``."""
    steps = int(seconds / 0.02)
    for _ in range(steps):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"condition not met within {seconds} s")


def main_screen(pilot: Pilot[Any]) -> MainScreen:
    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    return screen


def status_text(pilot: Pilot[Any]) -> str:
    return str(main_screen(pilot).query_one("#results-status", Static).render())


async def run_query(pilot: Pilot[Any]) -> None:
    """Enter in the form, then wait for the final status."""
    await pilot.press("enter")
    await wait_until(pilot, lambda: " matches," in status_text(pilot))


def toasts(pilot: Pilot[Any]) -> list[str]:
    """The notifications on screen, as the user reads them (title, then message)."""
    return [str(toast.render()) for toast in pilot.app.screen.query("Toast")]

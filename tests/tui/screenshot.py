"""Regenerate tests/tui/screenshot.svg: the UI against a real Orthanc loaded with the test archive.

    .venv/bin/python -m tests.tui.screenshot

Starts its own Orthanc (as the test session does), runs a study query, retrieves one
study whole and one series of another (so the Here column shows 5/5 and 3/5), selects
two rows, and saves the screen as Textual renders it (App.save_screenshot).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from fixtures.dataset import test_archive
from fixtures.orthanc import free_ports
from qrclient.net import Settings
from qrclient.net.events import Observer
from qrclient.tui.app import QrclientApp
from qrclient.tui.backend import Backend, RealBackend
from tests.conftest import OUR_AE, start_orthanc
from tests.tui.helpers import main_screen, status_text, wait_until

HERE = Path(__file__).resolve().parent


async def _shoot(node: str, store: Path, listen_port: int) -> None:
    def backend(observer: Observer) -> Backend:
        return RealBackend(
            store, Settings(OUR_AE), observer=observer, listen=("127.0.0.1", listen_port)
        )

    app = QrclientApp(backend, node=node)
    async with app.run_test(size=(120, 32)) as pilot:
        screen = main_screen(pilot)

        async def settled(depth: int) -> None:
            await wait_until(
                pilot,
                lambda: len(screen.browse.places) == depth and " matches," in status_text(pilot),
            )

        def jobs_done() -> bool:
            return all(job.state.ended for job in screen.jobs_panel.jobs.values())

        await pilot.press("enter")
        await settled(1)
        await pilot.press("r")  # the first study, whole
        await wait_until(pilot, jobs_done)
        await pilot.press(*["down"] * 5, "enter")  # DOE^JOHN's CT CHEST
        await settled(2)
        await pilot.press("down", "r")  # one of its two series
        await wait_until(pilot, lambda: len(screen.jobs_panel.jobs) == 2 and jobs_done())
        await pilot.press("backspace", "up", "space", "up", "up", "space", "down", "down")
        await pilot.pause(6)  # the notifications fade
        app.save_screenshot(filename="screenshot.svg", path=str(HERE))


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        (listen_port,) = free_ports(1)
        server = start_orthanc(
            Path(work) / "orthanc",
            test_archive(big_count=300),
            DicomModalities={"qrclient": [OUR_AE, "127.0.0.1", listen_port]},
        )
        try:
            node = f"{server.aet}@{server.host}:{server.dicom_port}"
            asyncio.run(_shoot(node, Path(work) / "store", listen_port))
        finally:
            server.stop(graceful=False)
    print(HERE / "screenshot.svg")


if __name__ == "__main__":
    main()

"""The terminal UI runs on asyncio only (Textual): no trio variant of its tests."""

from __future__ import annotations

import pytest

from qrclient.net.events import Observer
from qrclient.tui.app import QrclientApp
from qrclient.tui.backend import Backend
from qrclient.tui.history import QueryHistory
from tests.tui.fake_backend import FakeBackend


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fake_app(
    backend: FakeBackend | None = None,
    node: str = "ORTHANC@pacs.example.org:4242",
    *,
    history: QueryHistory | None = None,
) -> QrclientApp:
    """The app on the scripted backend, with a frozen clock so snapshots repeat."""
    fake = backend or FakeBackend()

    def factory(observer: Observer) -> Backend:
        fake.observer = observer
        return fake

    return QrclientApp(
        factory, node=node, clock=lambda: 0.0, stamp=lambda: "12:00:00", history=history
    )

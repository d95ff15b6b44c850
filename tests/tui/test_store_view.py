"""The store as the UI reads it: one read-only connection, opened once the index exists."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from qrclient.store import Store
from qrclient.store.overview import StoreView
from tests.test_store import ROOT_UID, make_dataset, store_dataset


def test_the_view_keeps_one_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    connect = sqlite3.connect

    def counting(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if "mode=ro" in str(database):
            opened.append(str(database))
        connection: sqlite3.Connection = connect(database, *args, **kwargs)
        return connection

    monkeypatch.setattr(sqlite3, "connect", counting)
    view = StoreView(tmp_path)
    assert view.holdings() == []  # no index yet: nothing opened
    assert opened == []
    with Store.open(tmp_path) as writer:
        store_dataset(writer, make_dataset(1))
    many = [f"{ROOT_UID}.3.{n}" for n in range(1, 1200)]  # several IN lists
    assert view.present(many) == {f"{ROOT_UID}.3.1": 1}
    assert view.study_counts([f"{ROOT_UID}.1.1"]) == {f"{ROOT_UID}.1.1": 1}
    assert [h.instances for h in view.holdings()] == [1]
    assert len(opened) == 1
    view.close()
    assert view.holdings() != []  # reopened on the next question
    assert len(opened) == 2
    view.close()

"""Keeping the work (issue 16.6): copy, export with the command line's writers, history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

from qrclient.net import Peer
from qrclient.present.browse import dataset_of, match_row
from qrclient.present.dicomjson import to_json_dict
from qrclient.present.output import make_writer
from qrclient.tui.history import KEEP, Entry, QueryHistory
from qrclient.tui.screens.export import ExportScreen
from qrclient.tui.screens.history import HistoryScreen
from qrclient.vocabulary import Level, Model
from tests.test_cli import run_cli
from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, status_text, wait_until
from tests.tui.test_flow import real_app

pytestmark = pytest.mark.anyio


def _match() -> Dataset:
    dataset = Dataset()
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.PatientName = "MÜLLER^JÜRGEN"
    dataset.PatientID = "PAT005"
    dataset.StudyDate = "20200930"
    dataset.StudyTime = "083000.123456"
    dataset.ModalitiesInStudy = ["CT", "SR"]
    dataset.SOPClassesInStudy = ["1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"]
    dataset.NumberOfStudyRelatedInstances = "4"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    dataset.add_new(0x00091010, "LO", "private")
    return dataset


def test_a_row_gives_back_the_data_set_it_was_shown_from() -> None:
    dataset = _match()
    row = match_row(dataset)
    assert row["StudyDate"] == "2020-09-30"
    assert row["StudyTime"] == "08:30:00.123456"
    assert row["SOPClassesInStudy"].startswith("CT Image Storage\\")
    expected = to_json_dict(dataset)
    del expected["00080005"]  # SpecificCharacterSet: not shown, written as UTF-8 anyway
    expected["00091010"]["vr"] = "LO"
    assert to_json_dict(dataset_of({**row, "Here": "2/4"})) == expected


async def test_c_copies_the_uid_and_shift_c_the_row() -> None:
    async with fake_app().run_test(size=(100, 30)) as pilot:
        await run_query(pilot)
        await pilot.press("down", "c")
        row = main_screen(pilot).table.current_row
        assert row is not None
        assert pilot.app.clipboard == row["StudyInstanceUID"]
        await pilot.press("C")
        cells = pilot.app.clipboard.split("\t")
        assert cells[:3] == [row["PatientName"], row["PatientID"], row["StudyDate"]]
        assert row["StudyInstanceUID"] in cells
        assert "4/9" not in cells  # Here is ours, not the PACS's


async def _export(pilot: Pilot[Any], path: Path) -> None:
    await pilot.press("x")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, ExportScreen))
    pilot.app.screen.query_one(Input).value = str(path)
    await pilot.press("enter")
    await wait_until(pilot, lambda: not isinstance(pilot.app.screen, ExportScreen))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _files(folder: Path, pattern: str) -> list[Path]:
    return list(folder.glob(pattern))


def _cli_writer_output(kind: str, rows: list[dict[str, str]], keywords: list[str]) -> str:
    out = io.StringIO()
    writer = make_writer(kind, keywords, out)
    for row in rows:
        writer.add(dataset_of(row))
    writer.close()
    return out.getvalue()


async def test_x_exports_the_rows_shown_to_csv_and_ndjson(tmp_path: Path) -> None:
    async with fake_app().run_test(size=(100, 30)) as pilot:
        await run_query(pilot)
        await pilot.press("slash", *"doe", "enter")  # what is shown is what is written
        await _export(pilot, tmp_path / "doe.csv")
        await _export(pilot, tmp_path / "doe.ndjson")
        shown = main_screen(pilot).table.shown_rows()
    table = _csv_rows(tmp_path / "doe.csv")
    assert [r["PatientName"] for r in table] == ["DOE^JOHN", "DOE^JOHN"]
    assert table[0]["StudyDate"] == "20190314"  # DICOM text, as find -f csv writes it
    assert "Here" not in table[0]
    lines = (tmp_path / "doe.ndjson").read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["00100020"]["Value"] for o in objects] == [["PAT001"], ["PAT001"]]
    assert objects[1]["00080020"]["Value"] == ["20210607"]
    assert not _files(tmp_path, ".*part*")
    keywords = list(table[0])
    written = (tmp_path / "doe.csv").read_text(encoding="utf-8")
    assert written == _cli_writer_output("csv", [dict(r) for r in shown], keywords)


async def test_an_export_to_a_bad_name_says_what_is_expected(tmp_path: Path) -> None:
    async with fake_app().run_test(size=(100, 30), notifications=True) as pilot:
        await run_query(pilot)
        await _export(pilot, tmp_path / "results.xlsx")
        await _export(pilot, tmp_path / "missing" / "results.csv")
        pane = main_screen(pilot).log_pane
        await wait_until(pilot, lambda: "missing is not a folder" in "\n".join(pane.lines))
        log = "\n".join(pane.lines)
    assert "results.xlsx: expected a name ending .csv, .ndjson or .json" in log
    assert _files(tmp_path, "*") == []


async def test_past_queries_come_back_after_a_restart_to_run_or_edit(tmp_path: Path) -> None:
    history = QueryHistory(tmp_path / "store")
    async with fake_app(history=history).run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#patient_id", Input).value = "PAT005"
        await run_query(pilot)
        screen.query_one("#patient_id", Input).value = "PAT001"
        screen.query_one("#modalities", Input).value = "MR"
        screen.query_one("#patient_id", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(history.load()) == 2)
    assert history.path == tmp_path / "store" / ".qrclient" / "query-history.jsonl"
    assert history.path.stat().st_mode & 0o777 == 0o600

    backend = FakeBackend()
    async with fake_app(backend, history=QueryHistory(tmp_path / "store")).run_test(
        size=(100, 30)
    ) as pilot:
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))
        options = pilot.app.screen.query_one(OptionList)
        first = str(options.get_option_at_index(0).prompt)
        assert "patient_id=PAT001 modalities=MR" in first  # newest first
        await pilot.press("down", "enter")  # the one before: PAT005
        await wait_until(pilot, lambda: " matches," in status_text(pilot))
        query = backend.queries[-1]
        assert [k.value for k in query.keys if k.name == "PatientID"] == ["PAT005"]

        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))
        await pilot.press("down", "e")  # the run again above is the newest now
        screen = main_screen(pilot)
        await wait_until(pilot, lambda: screen.query_one("#modalities", Input).value == "MR")
        assert screen.query_one("#patient_id", Input).value == "PAT001"
        assert screen.focused is screen.query_one("#patient_name", Input)
        assert len(backend.queries) == 1  # edited, not run


def test_the_history_stays_small_and_skips_damage(tmp_path: Path) -> None:
    history = QueryHistory(tmp_path)
    history.path.parent.mkdir()
    history.path.write_text('{"not": "an entry"}\nnot json at all\n', encoding="utf-8")
    for number in range(2 * KEEP + 5):
        history.add(Entry("PACS", Level.STUDY, Model.STUDY, _values(f"PAT{number}")))
    entries = history.load()
    assert len(entries) == KEEP
    assert entries[-1].values.patient_id == f"PAT{2 * KEEP + 4}"
    assert len(history.path.read_text().splitlines()) <= 2 * KEEP


def test_the_history_never_follows_a_link(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / ".qrclient").symlink_to(tmp_path / "elsewhere")
    history = QueryHistory(tmp_path / "store")
    with pytest.raises(OSError, match="symbolic link"):
        history.add(Entry("PACS", Level.STUDY, Model.STUDY, _values("PAT1")))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def _values(patient_id: str) -> Any:
    from qrclient.present.browse import QueryForm

    return QueryForm(patient_id=patient_id)


async def test_an_export_from_orthanc_matches_find_as_csv(
    peer: Peer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """The same query from the UI and from `qrclient find -f csv`: the same file."""
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#patient_id", Input).value = "PAT001"
        screen.query_one("#patient_id", Input).focus()
        await run_query(pilot)
        assert screen.table.row_count > 1
        screen.table.sort_by("StudyInstanceUID")
        await _export(pilot, tmp_path / "ui.csv")
    result = run_cli("find", str(peer), "-l", "study", "-k", "PatientID=PAT001", "-f", "csv")
    assert result.returncode == 0, result.stderr
    ui = list(csv.DictReader(io.StringIO((tmp_path / "ui.csv").read_text(encoding="utf-8"))))
    cli = list(csv.DictReader(io.StringIO(result.stdout)))
    cli.sort(key=lambda r: r["StudyInstanceUID"])
    assert ui == [{k: r.get(k, "") for k in ui[0]} for r in cli]
    assert set(ui[0]) <= set(cli[0])

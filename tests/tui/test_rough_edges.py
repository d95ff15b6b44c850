"""The rough edges a new user hit (issue 16.7), each driven as the user met it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from fixtures.dataset import Archive, find_patient
from qrclient.net import Peer
from qrclient.tui.jobs import JobState
from qrclient.tui.widgets.jobs_panel import JobView
from qrclient.tui.widgets.results import Column, arranged, fold
from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, status_text, wait_until
from tests.tui.test_flow import real_app

pytestmark = pytest.mark.anyio

SMALL = (80, 24)


async def _settled(pilot: Pilot[Any], depth: int) -> None:
    browse = main_screen(pilot).browse
    await wait_until(
        pilot, lambda: len(browse.places) == depth and " matches," in status_text(pilot)
    )


def _header(pilot: Pilot[Any]) -> str:
    return "".join(segment.text for segment in main_screen(pilot).table.render_line(0))


async def test_at_80_columns_the_counts_and_here_are_on_screen_and_the_rest_a_scroll_away() -> None:
    async with fake_app().run_test(size=SMALL) as pilot:
        await run_query(pilot)
        table = main_screen(pilot).table
        header = _header(pilot)
        assert len(header) <= 80
        for label in ("Patient", "Date", "Inst", "Here"):
            assert label in header
        keys = [c.key for c in table.columns]
        assert keys.index("StudyTime") > keys.index("NumberOfStudyRelatedInstances")
        assert keys[-1] == "StudyInstanceUID"  # nothing is dropped
        await pilot.press(*["right"] * len(keys))
        assert table.scroll_x > 0
        assert "Study UID" in _header(pilot)


def test_columns_move_right_only_when_they_do_not_fit() -> None:
    columns = [Column("PatientName", "Patient", 20), Column("StudyTime", "Time", 8)]
    uid = Column("StudyInstanceUID", "Study UID", 64)
    assert arranged([*columns, uid], 200) == [*columns, uid]
    assert arranged([*columns, uid], 20)[0].key == "PatientName"
    time_first = [columns[1], columns[0], uid]
    assert [c.key for c in arranged(time_first, 25)] == ["PatientName", "StudyTime", uid.key]


async def test_the_footer_ends_with_quit_at_80_columns() -> None:
    async with fake_app().run_test(size=SMALL) as pilot:
        await run_query(pilot)
        footer = pilot.app.screen.query_one("Footer")
        keys = [str(key.render()) for key in footer.query("FooterKey")]
        assert keys[-1].strip().endswith("Quit")
        right = max(key.region.right for key in footer.query("FooterKey"))
        assert right <= 80


async def test_notifications_never_cover_the_jobs_panel() -> None:
    async with fake_app().run_test(size=SMALL, notifications=True) as pilot:
        await run_query(pilot)
        await pilot.press("r", "down", "r", "down", "r")  # three studies, three jobs
        screen = main_screen(pilot)
        await pilot.press("f3")
        await wait_until(pilot, lambda: all(j.state.ended for j in screen.jobs_panel.jobs.values()))
        await pilot.pause(0.1)
        assert len(screen.jobs_panel.jobs) == 3
        shown = list(pilot.app.screen.query("Toast"))
        views = list(screen.query(JobView))
        assert views
        for toast in shown:
            for view in views:
                assert not toast.region.overlaps(view.region), (toast.render(), view.job.label)


async def test_keys_typed_faster_than_the_ui_lands_each_in_its_field() -> None:
    """All keys queued before the first is handled: Tab moves focus in its turn."""
    async with fake_app().run_test(size=SMALL) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#date_from", Input).focus()
        await pilot.pause()
        for character in "20200101\t20201231":
            key = "tab" if character == "\t" else character
            pilot.app.post_message(events.Key(key, character))
        await pilot.pause(0.3)
        assert screen.query_one("#date_from", Input).value == "20200101"
        assert screen.query_one("#date_to", Input).value == "20201231"


async def test_a_pasted_row_of_cells_fills_the_fields_in_turn() -> None:
    async with fake_app().run_test(size=SMALL) as pilot:
        screen = main_screen(pilot)
        date_from = screen.query_one("#date_from", Input)
        date_from.focus()
        await pilot.pause()
        date_from.post_message(events.Paste("20200101\t20201231\tCT"))
        await pilot.pause(0.2)
        values = [screen.query_one(f"#{n}", Input).value for n in ("date_from", "date_to")]
        assert values == ["20200101", "20201231"]
        assert screen.query_one("#modalities", Input).value == "CT"
        assert screen.focused is screen.query_one("#modalities", Input)
        await pilot.press("enter")
        await wait_until(pilot, lambda: " matches," in status_text(pilot))
        study_date = next(k for k in screen.backend.queries[-1].keys if k.name == "StudyDate")  # type: ignore[attr-defined]
        assert study_date.value == "20200101-20201231"


def test_the_filter_folds_case_and_accents() -> None:
    assert fold("MÜLLER^JÜRGEN") == fold("muller^jurgen") == "muller^jurgen"
    assert fold("García") == "garcia"
    assert fold("山田") == "山田"


async def test_filtering_jurgen_finds_jurgen_with_an_umlaut() -> None:
    async with fake_app().run_test(size=SMALL) as pilot:
        await run_query(pilot)
        await pilot.press("slash", *"jurgen", "enter")
        rows = main_screen(pilot).table.shown_rows()
        assert [row["PatientName"] for row in rows] == ["MÜLLER^JÜRGEN"]


class ReversedImages(FakeBackend):
    """A PACS answering the images of a series last to first, with long UIDs."""

    def rows(self, query: Any) -> list[dict[str, str]]:
        rows = super().rows(query)
        if query.level.value == "IMAGE":
            for row in rows:
                number = row["InstanceNumber"]
                row["SOPInstanceUID"] = "1.2.826.0.1.3680043.8.498." + "9" * 30 + number
            rows.reverse()
        return rows


async def test_images_come_sorted_by_number_without_repeated_uids_and_with_the_whole_uid() -> None:
    async with fake_app(ReversedImages()).run_test(size=SMALL) as pilot:
        await run_query(pilot)
        screen = main_screen(pilot)
        await pilot.press("enter")  # a study's series
        await _settled(pilot, 2)
        await pilot.press("enter")  # a series' images
        await _settled(pilot, 3)
        table = screen.table
        assert [r["InstanceNumber"] for r in table.shown_rows()] == ["1", "2", "3"]
        keys = [c.key for c in table.columns]
        assert "StudyInstanceUID" not in keys
        assert "SeriesInstanceUID" not in keys
        uid = next(c for c in table.columns if c.key == "SOPInstanceUID")
        assert uid.width == len(table.shown_rows()[0]["SOPInstanceUID"]) > 50  # was cut at 30
        crumb = screen.query_one("#breadcrumb")
        assert "DOE^JOHN" in str(crumb.render())


async def test_the_breadcrumb_keeps_the_patient_when_cut_for_width() -> None:
    async with fake_app().run_test(size=(60, 24)) as pilot:
        await run_query(pilot)
        screen = main_screen(pilot)
        await pilot.press("enter")
        await _settled(pilot, 2)
        text = str(screen.query_one("#breadcrumb").render())
        assert text.startswith("… › ")
        assert "DOE^JOHN 2019-03-14 CT CHEST" in text


async def test_space_selects_and_moves_down_as_the_help_says() -> None:
    from qrclient.tui.screens.help import KEYS

    assert any(k == "space" and "move down" in what for _, k, what in KEYS)
    async with fake_app().run_test(size=SMALL) as pilot:
        await run_query(pilot)
        await pilot.press("space")
        table = main_screen(pilot).table
        assert table.selected_count == 1
        assert table.cursor == 1


async def test_r_in_the_store_fetches_the_study_under_the_cursor() -> None:
    backend = FakeBackend()
    async with fake_app(backend).run_test(size=SMALL) as pilot:
        screen = main_screen(pilot)
        await pilot.press("f4")
        table = screen.query_one("#store-table", DataTable)
        await wait_until(pilot, lambda: table.row_count > 0)
        await pilot.press("r")
        await wait_until(pilot, lambda: len(backend.retrieved) == 1)
        request = backend.retrieved[0]
        assert request.level.value == "STUDY"
        study_uid = backend.holdings()[0].study_uid
        assert [k.value for k in request.keys if k.name == "StudyInstanceUID"] == [study_uid]
        await pilot.press("down", "r")  # its first series
        await wait_until(pilot, lambda: len(backend.retrieved) == 2)
        assert backend.retrieved[1].level.value == "SERIES"


async def test_r_in_the_store_fetches_what_is_missing_from_orthanc(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """One series retrieved from the results; r on its study in the store fetches the
    others and skips what is here."""
    study = find_patient(archive, "PAT001").studies[0]
    first = study.series[0]
    total = sum(len(s.instances) for s in study.series)
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    async with app.run_test(size=SMALL) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#patient_id", Input).value = "PAT001"
        screen.query_one("#patient_id", Input).focus()
        await run_query(pilot)
        table = screen.table
        index = next(
            n
            for n, row in enumerate(table.shown_rows())
            if row["StudyInstanceUID"] == study.study_instance_uid
        )
        table.action_jump(index)
        await pilot.press("enter")
        await _settled(pilot, 2)
        index = next(
            n
            for n, row in enumerate(table.shown_rows())
            if row["SeriesInstanceUID"] == first.series_instance_uid
        )
        table.action_jump(index)
        await pilot.press("r")
        jobs = screen.jobs_panel.jobs
        await wait_until(pilot, lambda: jobs[1].state.ended)
        assert jobs[1].state is JobState.COMPLETE, jobs[1].error

        await pilot.press("f4")
        store_table = screen.query_one("#store-table", DataTable)
        await wait_until(pilot, lambda: store_table.row_count > 0)
        row = store_table.get_row_index(study.study_instance_uid)
        store_table.move_cursor(row=row)
        await pilot.press("r")
        await wait_until(pilot, lambda: 2 in jobs and jobs[2].state.ended)
        outcome = jobs[2].outcome
        assert jobs[2].state is JobState.COMPLETE, jobs[2].error
        assert outcome is not None
        assert outcome.skipped == len(first.instances)
        assert outcome.received == total - len(first.instances)

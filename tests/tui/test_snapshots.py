"""Snapshots of the main screens on a scripted backend (pytest-textual-snapshot).

Update after a deliberate change with ``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, wait_until

WIDE = (140, 40)


def test_start_screen_has_the_form_focused(snap_compare: Any) -> None:
    assert snap_compare(fake_app())


async def _query(pilot: Pilot[Any]) -> None:
    await run_query(pilot)


def test_study_results(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_query)


def test_study_results_wide(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_query, terminal_size=WIDE)


async def _drill_to_series(pilot: Pilot[Any]) -> None:
    await run_query(pilot)
    await pilot.press("enter")
    await wait_until(pilot, lambda: main_screen(pilot).table.columns[0].key == "SeriesNumber")
    await wait_until(pilot, lambda: main_screen(pilot).table.row_count == 2)


def test_series_of_a_study_with_breadcrumb(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_drill_to_series)


async def _select_and_filter(pilot: Pilot[Any]) -> None:
    await run_query(pilot)
    await pilot.press("space", "space", "slash", *"doe", "enter")
    await pilot.press("right", "right", "s")


def test_selection_filter_and_sort(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_select_and_filter)


async def _retrieve_held(pilot: Pilot[Any]) -> None:
    await run_query(pilot)
    await pilot.press("space", "r", "f3")
    await wait_until(pilot, lambda: "2 received" in _job_detail(pilot))


def _job_detail(pilot: Pilot[Any]) -> str:
    details = main_screen(pilot).query(".job-detail")
    return str(details.first().render()) if details else ""


def test_jobs_panel_with_a_running_retrieve(snap_compare: Any) -> None:
    app = fake_app(FakeBackend(hold_retrieve=True))
    assert snap_compare(app, run_before=_retrieve_held)


async def _store_with_totals(pilot: Pilot[Any]) -> None:
    await pilot.press("f4", "t")
    await wait_until(pilot, lambda: "of 9" in _store_text(pilot))


def _store_text(pilot: Pilot[Any]) -> str:
    from textual.widgets import DataTable

    table = main_screen(pilot).query_one("#store-table", DataTable)
    return " ".join(str(table.get_row_at(n)[3]) for n in range(table.row_count))


def test_store_panel_shows_partial_studies(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_store_with_totals)


async def _help(pilot: Pilot[Any]) -> None:
    await run_query(pilot)
    await pilot.press("question_mark")


def test_help_screen(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_help)


async def _echo_refused(pilot: Pilot[Any]) -> None:
    node = main_screen(pilot).query_one("#node", Input)
    node.value = "ORTHANC@pacs.example.org:4243"
    await pilot.press("f6")
    await wait_until(pilot, lambda: "refused" in _echo_status(pilot))


def _echo_status(pilot: Pilot[Any]) -> str:
    return str(main_screen(pilot).query_one("#echo-status").render())


def test_echo_failure_is_diagnosed(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_echo_refused)


async def _bad_date(pilot: Pilot[Any]) -> None:
    # Focused, not clicked: the mouse left over the field shows its tooltip after a
    # delay, in the snapshot or not depending on the machine's load.
    main_screen(pilot).query_one("#date_from").focus()
    await pilot.press(*"2024-13-01", "enter")
    await pilot.pause(0.1)


def test_bad_date_is_a_message_not_a_crash(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_bad_date)


async def _log(pilot: Pilot[Any]) -> None:
    await run_query(pilot)
    await pilot.press("f5")
    await wait_until(pilot, lambda: "released" in "\n".join(main_screen(pilot).log_pane.lines))


def test_log_pane_shows_negotiation_and_statuses(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), run_before=_log, terminal_size=(100, 30))

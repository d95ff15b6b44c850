"""The whole interactive flow against the real Orthanc, driven by Textual's pilot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from fixtures.dataset import Archive, find_patient
from fixtures.orthanc import OrthancServer
from qrclient.net import Peer, Settings
from qrclient.net.events import DimseReceived, DimseSent, Event
from qrclient.store import Store
from qrclient.store.overview import holdings
from qrclient.tui.app import QrclientApp
from qrclient.tui.backend import Backend, RealBackend
from qrclient.tui.jobs import Job, JobState
from qrclient.tui.nodes import NodeBook
from qrclient.tui.widgets.log_pane import LogPane
from qrclient.vocabulary import Level, Method
from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, status_text, wait_until

Hook = Callable[[Event], None]

pytestmark = pytest.mark.anyio


def real_app(
    peer: Peer,
    store: Path,
    listen_port: int,
    *,
    hook: Hook | None = None,
    nodes: NodeBook | None = None,
) -> QrclientApp:
    def factory(observer: Hook) -> Backend:
        def observe(event: Event) -> None:
            if hook is not None:
                hook(event)
            observer(event)

        return RealBackend(
            store, Settings("QRCLIENT"), observer=observe, listen=("127.0.0.1", listen_port)
        )

    return QrclientApp(factory, node=str(peer), nodes=nodes)


def _log_text(pilot: Pilot[Any]) -> str:
    return "\n".join(main_screen(pilot).query_one(LogPane).lines)


async def _settled(pilot: Pilot[Any], depth: int) -> None:
    """Wait for the query at browse depth ``depth`` to end."""
    screen = main_screen(pilot)
    await wait_until(
        pilot, lambda: len(screen.browse.places) == depth and " matches," in status_text(pilot)
    )


async def _open_row(pilot: Pilot[Any], key: str, value: str, depth: int) -> None:
    table = main_screen(pilot).table
    index = next(n for n, row in enumerate(table.shown_rows()) if row.get(key) == value)
    table.action_jump(index)
    await pilot.press("enter")
    await _settled(pilot, depth)


async def test_query_drill_down_select_retrieve_and_see_the_store(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    patient = find_patient(archive, "PAT001")
    study = patient.studies[0]
    series = max(study.series, key=lambda s: len(s.instances))
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#level", Select).value = Level.PATIENT
        await pilot.pause()
        screen.query_one("#patient_id", Input).value = "PAT001"
        screen.query_one("#patient_id", Input).focus()
        await pilot.press("enter")
        await _settled(pilot, 1)
        assert [row["PatientID"] for row in screen.table.all_rows()] == ["PAT001"]

        await pilot.press("enter")  # the patient's studies
        await _settled(pilot, 2)
        uids = {row["StudyInstanceUID"] for row in screen.table.all_rows()}
        assert uids == {s.study_instance_uid for s in patient.studies}

        await _open_row(pilot, "StudyInstanceUID", study.study_instance_uid, 3)
        uids = {row["SeriesInstanceUID"] for row in screen.table.all_rows()}
        assert uids == {s.series_instance_uid for s in study.series}

        await _open_row(pilot, "SeriesInstanceUID", series.series_instance_uid, 4)
        images = {row["SOPInstanceUID"] for row in screen.table.all_rows()}
        assert images == {i.sop_instance_uid for i in series.instances}
        crumb = str(screen.query_one("#breadcrumb").render())
        assert study.description in crumb

        await pilot.press("a", "r")
        job = screen.jobs_panel.jobs[1]
        await wait_until(pilot, lambda: job.state.ended)
        assert job.state is JobState.COMPLETE, job.error
        assert job.outcome is not None
        assert job.outcome.received == len(series.instances)
        await wait_until(pilot, lambda: all(r.get("Here") for r in screen.table.all_rows()))
        # Between retrieves the UI holds no lock: a command-line retrieve could run.
        with Store.open(tmp_path / "store"):
            pass

        await pilot.press("backspace")  # back to the series, from memory
        assert len(screen.browse.places) == 3
        assert {row["SeriesInstanceUID"] for row in screen.table.all_rows()} == {
            s.series_instance_uid for s in study.series
        }

        await pilot.press("f4", "t")  # the store panel, with what the node holds
        table = screen.query_one("#store-table", DataTable)
        expected = f"{len(series.instances)} of {len(series.instances)}"
        await wait_until(
            pilot,
            lambda: any(expected in str(table.get_row_at(n)[3]) for n in range(table.row_count)),
        )
    with Store.open(tmp_path / "store") as store:
        stored = store.instances(series_uid=series.series_instance_uid)
        assert {i.sop_instance_uid for i in stored} == images
        assert all((tmp_path / "store" / i.path).is_file() for i in stored)
        [held] = holdings(store)
        assert held.study_uid == study.study_instance_uid
        assert held.instances == len(images)
        [folder] = {Path(s.folder) for s in held.series}
        assert {p.stem for p in folder.iterdir()} == images


def _state(job: Job) -> JobState:
    return job.state  # read anew: the app changes it while the test awaits


async def test_a_job_can_be_cancelled_and_retried(
    orthanc: OrthancServer,
    peer: Peer,
    archive: Archive,
    tmp_path: Path,
    listen_ports: tuple[int, int],
) -> None:
    big = find_patient(archive, "BIG001")
    expected = {i.sop_instance_uid for s in big.studies for se in s.series for i in se.instances}
    armed = [True]

    def pause_on_first_instance(event: Event) -> None:
        # Freeze the PACS once instances flow: the job stays running until cancelled.
        if armed[0] and isinstance(event, DimseReceived) and event.command == "C-STORE-RQ":
            armed[0] = False
            orthanc.pause()

    app = real_app(peer, tmp_path / "store", listen_ports[0], hook=pause_on_first_instance)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = main_screen(pilot)
            screen.query_one("#patient_id", Input).value = "BIG001"
            screen.query_one("#patient_id", Input).focus()
            await pilot.press("enter")
            await _settled(pilot, 1)
            await pilot.press("r")
            job = screen.jobs_panel.jobs[1]
            await wait_until(pilot, lambda: not armed[0])
            await pilot.press("f3", "c")  # the job's view has focus: cancel it
            await wait_until(pilot, lambda: job.state.ended)
            assert job.state is JobState.CANCELLED
            orthanc.resume()
            await pilot.press("r")  # retry: fetches what is missing
            await wait_until(pilot, lambda: job.state.ended, seconds=60)
            assert _state(job) is JobState.COMPLETE, job.error
            assert job.attempts == 2
            assert job.outcome is not None
            total = job.outcome.received + job.outcome.skipped
    finally:
        orthanc.resume()
    assert total == len(expected)
    with Store.open(tmp_path / "store") as store:
        assert {i.sop_instance_uid for i in store.instances()} == expected
        assert [h.instances for h in holdings(store)] == [len(expected)]


async def test_two_move_jobs_share_one_listener(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    patient = find_patient(archive, "PAT002")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[nodes.orthanc]\nae_title = "{peer.ae_title}"\nhost = "{peer.host}"\n'
        f'port = {peer.port}\nmethod = "move"\n',
        encoding="utf-8",
    )
    nodes = NodeBook.load(config)
    app = real_app(peer, tmp_path / "store", listen_ports[0], nodes=nodes)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#node", Input).value = "orthanc"  # the configured name
        screen.query_one("#patient_id", Input).value = "PAT002"
        screen.query_one("#patient_id", Input).focus()
        await pilot.press("enter")
        await _settled(pilot, 1)
        assert screen.table.row_count == len(patient.studies)
        await pilot.press("r", "down", "r")  # two jobs at once, one row each
        assert len(screen.jobs_panel.jobs) == 2
        await wait_until(pilot, lambda: all(j.state.ended for j in screen.jobs_panel.jobs.values()))
        assert [j.state for j in screen.jobs_panel.jobs.values()] == [JobState.COMPLETE] * 2
        assert {j.node.method for j in screen.jobs_panel.jobs.values()} == {Method.MOVE}
        assert str(screen.jobs_panel.jobs[1].node) == f"orthanc ({peer})"
        fetched = [row["StudyInstanceUID"] for row in screen.table.shown_rows()[:2]]
    wanted = {
        i.sop_instance_uid
        for s in patient.studies
        if s.study_instance_uid in fetched
        for se in s.series
        for i in se.instances
    }
    with Store.open(tmp_path / "store") as store:
        assert {i.sop_instance_uid for i in store.instances()} == wanted


async def test_escape_cancels_a_running_query(
    orthanc: OrthancServer, peer: Peer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    armed = [True]

    def pause_pacs(event: Event) -> None:
        # Freeze the PACS as our C-FIND goes out: the query stays running until cancelled.
        if armed[0] and isinstance(event, DimseSent) and event.command == "C-FIND-RQ":
            armed[0] = False
            orthanc.pause()

    app = real_app(peer, tmp_path / "store", listen_ports[0], hook=pause_pacs)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = main_screen(pilot)
            screen.query_one("#level", Select).value = Level.IMAGE
            await pilot.pause()
            screen.query_one("#patient_name", Input).focus()
            await pilot.press("enter")
            await wait_until(pilot, lambda: not armed[0])
            assert screen.browse.find_worker is not None
            assert screen.browse.find_worker.is_running
            await pilot.press("escape")
            await wait_until(pilot, lambda: "cancelled" in status_text(pilot))
            await wait_until(pilot, lambda: "A-ABORT" in _log_text(pilot))
            log = _log_text(pilot)
            assert "-> C-CANCEL-RQ" in log
            orthanc.resume()
            # Still answering: the next query runs to the end.
            screen.query_one("#level", Select).value = Level.STUDY
            await pilot.pause()
            screen.query_one("#patient_name", Input).focus()
            await pilot.press("enter")
            await wait_until(pilot, lambda: "success" in status_text(pilot))
    finally:
        orthanc.resume()


async def test_echo_reports_round_trip_or_diagnosis(
    peer: Peer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        status = screen.query_one("#echo-status")
        await pilot.press("f6")
        await wait_until(
            pilot, lambda: "echo" in str(status.render()) and "✔" in str(status.render())
        )
        node = screen.query_one("#node", Input)
        node.value = f"WRONG@{peer.host}:{peer.port}"
        node.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "✘" in str(status.render()))
        assert "called AE title not recognised" in str(status.render())
        await wait_until(pilot, lambda: "must be the PACS's own AE title" in _log_text(pilot))
        node.value = "not a node"
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: "'not a node' is neither a configured name" in _log_text(pilot)
        )
        assert app.is_running


async def test_bad_input_is_reported_in_the_app(
    peer: Peer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        extra = screen.query_one("#extra", Input)
        extra.value = "PatientNme=DOE*"
        extra.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "did you mean PatientName" in _log_text(pilot))
        extra.value = ""
        screen.query_one("#date_from", Input).value = "2024-02-30"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "StudyDate: '2024-02-30' is not a date" in _log_text(pilot))
        assert screen.browse.generation == 0  # nothing was sent
        assert app.is_running


async def test_browsing_stays_on_the_node_the_query_went_to(
    peer: Peer, archive: Archive, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    """Editing the node field after a query changes nothing for the rows already shown:
    drill-down, Backspace and retrieve keep asking the node the UIDs came from."""
    patient = find_patient(archive, "PAT001")
    study = patient.studies[0]
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#patient_id", Input).value = "PAT001"
        screen.query_one("#patient_id", Input).focus()
        await pilot.press("enter")
        await _settled(pilot, 1)
        screen.query_one("#node", Input).value = f"WRONG@{peer.host}:{peer.port}"
        screen.table.focus()
        await _open_row(pilot, "StudyInstanceUID", study.study_instance_uid, 2)
        assert "success" in status_text(pilot)
        assert {row["SeriesInstanceUID"] for row in screen.table.all_rows()} == {
            s.series_instance_uid for s in study.series
        }
        screen.query_one("#node", Input).value = "not a node at all"
        await pilot.press("backspace")
        assert len(screen.browse.places) == 1
        assert str(peer) in str(screen.query_one("#breadcrumb").render())
        await pilot.press("r")
        job = screen.jobs_panel.jobs[1]
        assert job.node.peer == peer
        await wait_until(pilot, lambda: job.state.ended)
        assert job.state is JobState.COMPLETE, job.error
        assert "not a node" not in _log_text(pilot)  # nothing re-read the field


async def test_a_store_error_hides_here_only_until_the_next_query() -> None:
    backend = FakeBackend()
    backend.store_failures = 1
    async with fake_app(backend).run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        await run_query(pilot)
        assert not any(row.get("Here") for row in screen.table.all_rows())
        await wait_until(pilot, lambda: "database is locked" in _log_text(pilot))
        screen.query_one("#patient_name", Input).focus()
        await run_query(pilot)
        assert [row.get("Here") for row in screen.table.all_rows()][:2] == ["5/5", "4/9"]

"""Looking inside (issue 16.5): the header view and the image preview."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input, Static, Tree

from qrclient.net import Peer
from qrclient.tui import preview
from qrclient.tui.jobs import JobState
from qrclient.tui.screens.header import HeaderScreen
from qrclient.tui.screens.preview import PreviewScreen
from tests.tui.conftest import fake_app
from tests.tui.fake_backend import FakeBackend
from tests.tui.helpers import main_screen, run_query, status_text, toasts, wait_until
from tests.tui.test_flow import real_app

pytestmark = pytest.mark.anyio

SERIES = "1.2.826.0.1.3680043.8.498.1.1"  # the fake's first series of its first study


def write_ct(path: Path, number: int) -> Path:
    """A small CT slice: a bright disc whose size grows with ``number``, a window."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = UID(f"{SERIES}.{number}")
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = f"{SERIES}.{number}"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    dataset.SeriesInstanceUID = SERIES
    dataset.PatientName = "DOE^JOHN"
    dataset.Modality = "CT"
    dataset.InstanceNumber = number
    dataset.Rows = dataset.Columns = 32
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.RescaleIntercept = -1024
    dataset.RescaleSlope = 1
    dataset.WindowCenter = 40
    dataset.WindowWidth = 400
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.CodeMeaning = "Chest"
    dataset.AnatomicRegionSequence = Sequence([item])
    y, x = np.mgrid[:32, :32]
    disc = (x - 16) ** 2 + (y - 16) ** 2 < (4 + 3 * number) ** 2
    dataset.PixelData = np.where(disc, 1024 + 200, 1024 - 500).astype(np.int16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def stored_backend(tmp_path: Path) -> FakeBackend:
    backend = FakeBackend()
    # Stored in another order than their numbers: the preview pages by InstanceNumber.
    for number in (3, 1, 2):
        path = write_ct(tmp_path / f"file{4 - number}.dcm", number)
        backend.files.append((f"{SERIES}.{number}", path))
    return backend


async def _to_images(pilot: Pilot[Any]) -> None:
    await run_query(pilot)
    browse = main_screen(pilot).browse
    for depth in (2, 3):
        await pilot.press("enter")
        await _settled(pilot, browse, depth)


async def _settled(pilot: Pilot[Any], browse: Any, depth: int) -> None:
    await wait_until(
        pilot, lambda: len(browse.places) == depth and " matches," in status_text(pilot)
    )


def _tree_lines(pilot: Pilot[Any]) -> list[str]:
    tree: Tree[None] = pilot.app.screen.query_one(Tree)
    lines: list[str] = []

    def walk(node: Any) -> None:
        for child in node.children:
            lines.append(str(child.label))
            walk(child)

    walk(tree.root)
    return lines


async def test_i_shows_a_result_rows_header_and_searches_it() -> None:
    async with fake_app().run_test(size=(100, 30)) as pilot:
        await run_query(pilot)
        await pilot.press("down", "i")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HeaderScreen))
        lines = _tree_lines(pilot)
        assert "(0010,0010) PN PatientName  DOE^JOHN" in lines
        assert "(0008,0020) DA StudyDate  20210607" in lines
        assert not any("Here" in line for line in lines)
        pilot.app.screen.query_one(Input).value = "accession"
        await wait_until(pilot, lambda: len(_tree_lines(pilot)) == 1)
        assert _tree_lines(pilot) == ["(0008,0050) SH AccessionNumber  ACC0001"]
        caption = str(pilot.app.screen.query_one("#header-caption", Static).render())
        assert caption.endswith("1 matching")
        await pilot.press("escape", "escape")
        await wait_until(pilot, lambda: not isinstance(pilot.app.screen, HeaderScreen))


async def test_i_on_a_stored_image_shows_its_file_with_sequences_to_open(tmp_path: Path) -> None:
    async with fake_app(stored_backend(tmp_path)).run_test(size=(100, 30)) as pilot:
        await _to_images(pilot)
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HeaderScreen))
        caption = str(pilot.app.screen.query_one("#header-caption", Static).render())
        assert caption.startswith("stored file ")
        assert caption.endswith("file3.dcm")
        lines = _tree_lines(pilot)
        assert "(0028,1050) DS WindowCenter  40.0" in lines
        assert "(0008,2218) SQ AnatomicRegionSequence  1 item" in lines
        assert "(0008,0104) LO CodeMeaning  Chest" in lines  # inside, closed
        tree: Tree[None] = pilot.app.screen.query_one(Tree)
        sequence = next(n for n in tree.root.children if "Anatomic" in str(n.label))
        assert not sequence.is_expanded
        pilot.app.screen.query_one(Input).value = "chest"
        await wait_until(pilot, lambda: len(_tree_lines(pilot)) == 3)
        assert _tree_lines(pilot)[-1] == "(0008,0104) LO CodeMeaning  Chest"


def _picture_text(pilot: Pilot[Any]) -> str:
    """What the picture widget sends to the terminal."""
    console = Console(file=io.StringIO(), force_terminal=True, width=60, height=20)
    widget = pilot.app.screen.query_one("#picture")
    console.print(widget.render())
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


async def test_v_pages_through_the_stored_series_in_instance_order(tmp_path: Path) -> None:
    app = fake_app(stored_backend(tmp_path))
    app.preview_renderer = "halfcell"
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_images(pilot)
        await pilot.press("down", "v")  # from the second image
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PreviewScreen))

        def caption() -> str:
            return str(pilot.app.screen.query_one("#preview-caption", Static).render())

        assert "2/3  #2 32x32 W 400 / L 40" in caption()
        await pilot.press("right")
        assert "3/3  #3" in caption()
        await pilot.press("right")
        assert "1/3  #1" in caption()
        assert "▀" in _picture_text(pilot) or "▄" in _picture_text(pilot)


async def test_the_preview_speaks_kittys_graphics_protocol(tmp_path: Path) -> None:
    app = fake_app(stored_backend(tmp_path))
    app.preview_renderer = "tgp"
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_images(pilot)
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PreviewScreen))
        await pilot.pause(0.2)
        # Kitty's Unicode placeholders: the cells where the terminal draws the image.
        assert "\U0010eeee" in _picture_text(pilot)


def _halfcell_app(tmp_path: Path) -> Any:
    app = fake_app(stored_backend(tmp_path))
    app.preview_renderer = "halfcell"
    return app


async def _open_preview(pilot: Pilot[Any]) -> None:
    await _to_images(pilot)
    await pilot.press("v")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, PreviewScreen))
    await pilot.pause(0.2)


def test_preview_half_blocks_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_halfcell_app(tmp_path), run_before=_open_preview, terminal_size=(80, 24))


async def test_without_the_extra_the_preview_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(preview, "_MODULES", ("numpy", "qrclient_no_such_module"))
    async with fake_app(stored_backend(tmp_path)).run_test(
        size=(100, 30), notifications=True
    ) as pilot:
        await _to_images(pilot)
        await pilot.press("v")
        await wait_until(pilot, lambda: any("qrclient[preview]" in t for t in toasts(pilot)))
        assert not isinstance(pilot.app.screen, PreviewScreen)


async def test_a_series_retrieved_from_orthanc_is_previewed(
    peer: Peer, tmp_path: Path, listen_ports: tuple[int, int]
) -> None:
    app = real_app(peer, tmp_path / "store", listen_ports[0])
    app.preview_renderer = "halfcell"
    async with app.run_test(size=(100, 30)) as pilot:
        screen = main_screen(pilot)
        screen.query_one("#patient_id", Input).value = "PAT001"
        screen.query_one("#patient_id", Input).focus()
        await run_query(pilot)
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: len(screen.browse.places) == 2 and " matches," in status_text(pilot)
        )
        row = screen.table.current_row
        assert row is not None
        count = int(row["NumberOfSeriesRelatedInstances"])
        await pilot.press("r")
        job = screen.jobs_panel.jobs[1]
        await wait_until(pilot, lambda: job.state.ended)
        assert job.state is JobState.COMPLETE, job.error
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PreviewScreen))
        shown = pilot.app.screen
        assert isinstance(shown, PreviewScreen)
        assert len(shown.paths) == count
        caption = str(shown.query_one("#preview-caption", Static).render())
        assert f"1/{count}  #1 " in caption
        assert "cannot" not in caption

"""The local store: Part-10 files from fragments, safe layouts, the index, and failures."""

from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

from qrclient.net.association import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from qrclient.net.datasets import encode_dataset
from qrclient.store import DEFAULT_LAYOUT, PLACEHOLDER, Layout, Store, StoredInstance, StoreError
from qrclient.store.incoming import Incoming, open_temp
from qrclient.store.index import GROUP_ROWS
from qrclient.store.overview import StoreView
from qrclient.store.store import _record

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT_UID = "1.2.826.0.1.3680043.8.498"


def make_dataset(number: int = 1, pixels: int = 2048, **values: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = f"{ROOT_UID}.3.{number}"
    ds.StudyDate = "20240131"
    ds.AccessionNumber = "ACC1"
    ds.Modality = "CT"
    ds.StudyDescription = "Thorax"
    ds.SeriesDescription = "Axial"
    ds.PatientName = "Ünlü^Ayşe"
    ds.PatientID = "PAT1"
    ds.StudyInstanceUID = f"{ROOT_UID}.1.1"
    ds.SeriesInstanceUID = f"{ROOT_UID}.2.1"
    ds.SeriesNumber = 4
    ds.InstanceNumber = number
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.CodingSchemeDesignator = "SRT"
    item.is_undefined_length_sequence_item = True
    ds.AnatomicRegionSequence = Sequence([item])
    ds["AnatomicRegionSequence"].is_undefined_length = True  # ends with a delimiter
    ds.BitsAllocated = 16
    ds.Rows, ds.Columns = max(pixels // 512, 1), 256
    ds.PixelData = bytes(range(256)) * (pixels // 256)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def fragments(data: bytes, size: int) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def receive(
    store: Store,
    data: bytes,
    syntax: str,
    uid: str,
    *,
    size: int = 16384,
    source: str = "ORTHANC",
) -> StoredInstance:
    incoming = store.begin(CT, uid, syntax, source)
    for fragment in fragments(data, size):
        incoming.write(fragment)
    return incoming.commit()


def store_dataset(store: Store, ds: Dataset, syntax: str = EXPLICIT) -> StoredInstance:
    return receive(store, encode_dataset(ds, syntax), syntax, ds.SOPInstanceUID)


def incoming_files(store: Store) -> list[Path]:
    return list((store.root / ".qrclient" / "incoming").iterdir())


def stored_files(store: Store) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file() and ".qrclient" not in p.parts]


def assert_nothing_stored(store: Store) -> None:
    assert incoming_files(store) == []
    assert stored_files(store) == []
    assert store.instances() == []
    assert store.summary().instances == 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store") as opened:
        yield opened


# Round trips


@pytest.fixture(params=["in memory", "streamed"])
def memory_limit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways an instance is received: held in memory until sealed, or (bigger than
    MEMORY_LIMIT, here made 64 KB) streamed to its temporary file as it arrives."""
    if request.param == "streamed":
        monkeypatch.setattr("qrclient.store.incoming.MEMORY_LIMIT", 64 * 1024)
    return str(request.param)


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT])
@pytest.mark.parametrize("size", [1, 7, 1000, 16384, 1 << 20])
def test_fragments_become_a_part10_file_with_the_same_values(
    store: Store, syntax: str, size: int, memory_limit: str
) -> None:
    ds = make_dataset(pixels=1024 if size == 1 else 300_000)
    data = encode_dataset(ds, syntax)
    stored = receive(store, data, syntax, ds.SOPInstanceUID, size=size)

    path = store.root / stored.path
    back = pydicom.dcmread(path)
    meta = back.file_meta
    assert meta.MediaStorageSOPClassUID == CT
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.TransferSyntaxUID == syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == "ORTHANC"
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert str(back[keyword].value) == str(ds[keyword].value)
    assert back.AnatomicRegionSequence[0].CodeValue == "T-D3000"
    assert back.PixelData == ds.PixelData
    assert path.read_bytes().endswith(data)  # exactly the bytes received
    assert stored.size == path.stat().st_size
    assert stored.transfer_syntax == syntax
    assert stored.path == f"PAT1/{ROOT_UID}.1.1/{ROOT_UID}.2.1/{ds.SOPInstanceUID}.dcm"
    assert incoming_files(store) == []
    assert store.verify() == []


def test_received_time_is_the_files_modification_time(store: Store) -> None:
    stored = store_dataset(store, make_dataset())
    mtime_ns = (store.root / stored.path).stat().st_mtime_ns
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=mtime_ns // 1000)
    assert datetime.fromisoformat(stored.received_at) == expected
    assert stored.received_at.endswith("+00:00")


@given(st.integers(-(10**18), 4 * 10**18))
def test_received_time_text_for_any_modification_time(mtime_ns: int) -> None:
    text = {k: "" for k in ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID")}
    text |= {k: "" for k in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate")}
    text |= {k: "" for k in ("StudyDescription", "AccessionNumber", "Modality")}
    text |= {"SeriesNumber": "", "SeriesDescription": ""}
    record = _record(text, EXPLICIT, "", "a.dcm", 0, mtime_ns)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = epoch + timedelta(microseconds=mtime_ns // 1000)
    assert record.instance.received_at == expected.isoformat(timespec="microseconds")


def test_file_meta_follows_each_instances_class_syntax_and_source(store: Store) -> None:
    """The meta group is built from per-retrieve parts: none may leak into another."""
    first = make_dataset(1)
    second = make_dataset(2, SOPClassUID="1.2.840.10008.5.1.4.1.1.4")
    one = receive(store, encode_dataset(first, EXPLICIT), EXPLICIT, first.SOPInstanceUID)
    incoming = store.begin(second.SOPClassUID, second.SOPInstanceUID, IMPLICIT, "OTHER")
    incoming.write(encode_dataset(second, IMPLICIT))
    two = incoming.commit()
    metas = [pydicom.dcmread(store.root / s.path).file_meta for s in (one, two)]
    assert [m.MediaStorageSOPClassUID for m in metas] == [CT, second.SOPClassUID]
    assert [m.MediaStorageSOPInstanceUID for m in metas] == [
        first.SOPInstanceUID,
        second.SOPInstanceUID,
    ]
    assert [m.TransferSyntaxUID for m in metas] == [EXPLICIT, IMPLICIT]
    assert [m.SourceApplicationEntityTitle for m in metas] == ["ORTHANC", "OTHER"]


def test_compressed_data_is_stored_untouched(store: Store) -> None:
    ds = make_dataset()
    icon = Dataset()
    icon.BitsAllocated = 8
    icon.PixelData = encapsulate([b"\xff\xd8icon\xff\xd9"])
    icon["PixelData"].VR = "OB"
    ds.IconImageSequence = Sequence([icon])
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(5000) + b"\xff\xd9", b"second frame"])
    ds["PixelData"].VR = "OB"
    data = encode_dataset(ds, EXPLICIT)  # an encapsulated syntax encodes as explicit LE

    stored = receive(store, data, JPEG_BASELINE, ds.SOPInstanceUID, size=333)

    path = store.root / stored.path
    assert path.read_bytes().endswith(data)
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert back.PixelData == ds.PixelData
    assert store.instances()[0].transfer_syntax == JPEG_BASELINE


def test_deflated_and_big_endian_are_read_from_the_file(store: Store) -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = make_dataset(1, PatientID="DEFLATED")
    data = deflate.compress(encode_dataset(first, EXPLICIT)) + deflate.flush()
    deflated = receive(store, data, DEFLATED, first.SOPInstanceUID)
    second = make_dataset(2, PatientID="BIG")
    big = receive(store, encode_dataset(second, BIG_ENDIAN), BIG_ENDIAN, second.SOPInstanceUID)

    assert deflated.patient_id == "DEFLATED"
    assert big.patient_id == "BIG"
    for stored, ds in ((deflated, first), (big, second)):
        back = pydicom.dcmread(store.root / stored.path)
        assert back.PixelData == ds.PixelData
        assert str(back.PatientName) == "Ünlü^Ayşe"


def test_index_keeps_patient_study_and_series(store: Store) -> None:
    for number in range(3):
        store_dataset(store, make_dataset(number))
    other = make_dataset(9, SeriesInstanceUID=f"{ROOT_UID}.2.2", PatientID="PAT2")
    other.StudyInstanceUID = f"{ROOT_UID}.1.2"
    store_dataset(store, other, IMPLICIT)

    assert store.study_counts(f"{ROOT_UID}.1.1") == 3
    assert store.instances_in_study(f"{ROOT_UID}.1.2") == 1
    assert store.series_counts(f"{ROOT_UID}.2.1") == 3
    assert store.study_counts("1.2.3.4") == 0
    assert len(store.instances(study_uid=f"{ROOT_UID}.1.1")) == 3
    assert [i.patient_id for i in store.instances(series_uid=f"{ROOT_UID}.2.2")] == ["PAT2"]
    assert store.has(other.SOPInstanceUID)
    assert not store.has("1.2.3")
    summary = store.summary()
    assert (summary.patients, summary.studies, summary.series, summary.instances) == (2, 2, 2, 4)
    assert summary.bytes == sum(p.stat().st_size for p in stored_files(store))
    store.flush()  # rows are committed in groups; another connection sees them after this
    db = sqlite3.connect(store.root / ".qrclient" / "index.sqlite")
    try:
        assert db.execute("SELECT name FROM patient WHERE id = 'PAT1'").fetchone() == ("Ünlü^Ayşe",)
        assert db.execute("SELECT study_date, description, accession FROM study").fetchone() == (
            "20240131",
            "Thorax",
            "ACC1",
        )
        assert db.execute("SELECT modality, series_number, description FROM series").fetchone() == (
            "CT",
            4,
            "Axial",
        )
    finally:
        db.close()


def test_receiving_again_replaces_the_file(store: Store) -> None:
    first = store_dataset(store, make_dataset(PatientID="OLD"))
    second = store_dataset(store, make_dataset(PatientID="NEW"))
    third = store_dataset(store, make_dataset(PatientID="NEW"))

    assert first.path != second.path == third.path
    assert [i.patient_id for i in store.instances()] == ["NEW"]
    assert stored_files(store) == [store.root / third.path]
    assert store.verify() == []


def test_an_instance_uid_that_differs_from_the_command_is_refused(store: Store) -> None:
    ds = make_dataset()
    with pytest.raises(StoreError, match="not the one its C-STORE announced"):
        receive(store, encode_dataset(ds, EXPLICIT), EXPLICIT, "1.2.3.4.5")
    assert_nothing_stored(store)


def test_bad_uids_and_ae_titles(store: Store) -> None:
    with pytest.raises(StoreError, match="not a UID"):
        store.begin(CT, "1.2.3/../4", EXPLICIT, "X")
    ds = make_dataset()
    stored = receive(
        store, encode_dataset(ds, EXPLICIT), EXPLICIT, ds.SOPInstanceUID, source="A\\B"
    )
    assert stored.source == ""
    assert "SourceApplicationEntityTitle" not in pydicom.dcmread(store.root / stored.path).file_meta


# Discarded, truncated and malformed data


def test_discard_leaves_nothing(store: Store) -> None:
    incoming = store.begin(CT, f"{ROOT_UID}.3.1", EXPLICIT, "X")
    incoming.write(encode_dataset(make_dataset(), EXPLICIT)[:100])
    incoming.discard()
    incoming.discard()
    assert_nothing_stored(store)
    with pytest.raises(StoreError):
        incoming.commit()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # the pixel data cut short
        lambda data: data[: data.index("Ünlü".encode()) + 3],  # cut inside the header
        lambda data: data[:9],
        lambda data: b"",
        lambda data: data + b"\x00\x00",  # stray bytes after the last element
        lambda data: b"\x08\x00\x05\x00CS\xff\x7f" + data,  # a length that overruns
    ],
)
@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT])
def test_truncated_or_malformed_data_is_refused(
    store: Store, damage: Any, syntax: str, memory_limit: str
) -> None:
    ds = make_dataset(pixels=300_000)  # past the streaming limit when it is 64 KB
    data = damage(encode_dataset(ds, syntax))
    with pytest.raises(StoreError, match="truncated or does not parse"):
        receive(store, data, syntax, ds.SOPInstanceUID)
    assert_nothing_stored(store)


def test_a_sequence_left_open_is_refused(store: Store) -> None:
    ds = make_dataset()
    data = encode_dataset(ds, IMPLICIT)
    delimiter = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    assert delimiter in data
    with pytest.raises(StoreError, match="truncated or does not parse"):
        receive(store, data.replace(delimiter, b""), IMPLICIT, ds.SOPInstanceUID)
    assert_nothing_stored(store)


def test_a_truncated_deflated_stream_is_refused(store: Store) -> None:
    ds = make_dataset()
    data = zlib.compress(encode_dataset(ds, EXPLICIT))[2:-40]
    with pytest.raises(StoreError, match="truncated or does not parse"):
        receive(store, data, DEFLATED, ds.SOPInstanceUID)
    assert_nothing_stored(store)


# Opening, locking, leftovers


def test_open_creates_the_layout_of_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a" / "b") as store:
        assert (store.root / ".qrclient" / "incoming").is_dir()
        assert (store.root / ".qrclient" / "index.sqlite").is_file()
        assert store.removed_leftovers == 0
        db = sqlite3.connect(store.root / ".qrclient" / "index.sqlite")
        try:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("PRAGMA user_version").fetchone() == (1,)
        finally:
            db.close()


def test_leftover_temporary_files_are_removed_at_open(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    incoming = tmp_path / ".qrclient" / "incoming"
    (incoming / "12-3-abcdef.part").write_bytes(b"left by a killed run")
    (incoming / "other").write_bytes(b"")
    with Store.open(tmp_path) as store:
        assert store.removed_leftovers == 2
        assert incoming_files(store) == []


def test_close_discards_what_is_being_received(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        incoming = store.begin(CT, f"{ROOT_UID}.3.1", EXPLICIT, "X")
        incoming.write(b"abc")
    assert incoming_files(store) == []
    with pytest.raises(StoreError, match="finished"):
        incoming.write(b"more")
    with pytest.raises(StoreError, match="closed"):
        store.begin(CT, f"{ROOT_UID}.3.1", EXPLICIT, "X")


def test_a_store_in_use_is_not_opened_twice(tmp_path: Path) -> None:
    with Store.open(tmp_path), pytest.raises(StoreError, match="in use by another qrclient"):
        Store.open(tmp_path)
    Store.open(tmp_path).close()


def test_a_view_reads_a_store_another_writer_holds(tmp_path: Path) -> None:
    """The UI browses while a retrieve writes: the view needs no lock, sees commits."""
    view = StoreView(tmp_path)
    assert view.study_counts(["1.2"]) == {}  # no index yet
    assert view.holdings() == []
    with Store.open(tmp_path) as writer:
        for number in (1, 2, 3):
            store_dataset(writer, make_dataset(number))
        other_series = make_dataset(4, SeriesInstanceUID=f"{ROOT_UID}.2.2")
        store_dataset(writer, other_series)
        writer.flush()
        study, series = f"{ROOT_UID}.1.1", f"{ROOT_UID}.2.1"
        assert view.study_counts([study, "1.2.3.404"]) == {study: 4}
        assert view.series_counts([series, f"{ROOT_UID}.2.2"]) == {
            series: 3,
            f"{ROOT_UID}.2.2": 1,
        }
        wanted = [f"{ROOT_UID}.3.{n}" for n in range(1, 1200)]  # more than one IN list
        assert set(view.present(wanted)) == {f"{ROOT_UID}.3.{n}" for n in (1, 2, 3, 4)}
        [held] = view.holdings()
        assert (held.study_uid, held.instances) == (study, 4)
        assert [s.instances for s in held.series] == [3, 1]


def test_an_index_from_a_newer_qrclient_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / ".qrclient" / "index.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema 99, newer"):
        Store.open(tmp_path)


def test_a_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store.open(tmp_path / "file")


# Kill, read-only, disk full

WRITER = """
import sys
from pydicom.dataset import Dataset
from qrclient.net.datasets import encode_dataset
from qrclient.store import Store

root, run = sys.argv[1], sys.argv[2]
with Store.open(root) as store:
    for number in range(100_000):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{run}.{number}"
        ds.PatientID = f"P{number % 3}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{run}"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{run}.{number % 2}"
        ds.BitsAllocated = 8
        ds.PixelData = bytes(200_000 + number)
        data = encode_dataset(ds, "1.2.840.10008.1.2.1")
        incoming = store.begin(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", "W")
        for offset in range(0, len(data), 16384):
            incoming.write(data[offset : offset + 16384])
        incoming.commit()
        if number == 5:
            print("running", flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.051])
def test_a_killed_writer_leaves_a_consistent_store(tmp_path: Path, delay: float) -> None:
    for run in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(run)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == "running\n"
        time.sleep(delay * (run + 1))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()

        with Store.open(tmp_path) as store:
            assert store.removed_leftovers <= 1
            assert incoming_files(store) == []
            instances = store.instances()
            for item in instances:
                back = pydicom.dcmread(store.root / item.path)
                assert back.SOPInstanceUID == item.sop_instance_uid
                assert len(back.PixelData) >= 200_000
            problems = store.verify()
            # Index rows are committed in groups: a kill leaves at most one group of
            # complete files not yet indexed (strays), never a row without its file.
            assert all(p.startswith("stray: ") for p in problems), problems
            assert len(problems) <= GROUP_ROWS
            assert len(instances) + len(problems) >= 6 * (run + 1)
            assert store.rebuild_index() == len(instances) + len(problems)
            assert store.verify() == []


def test_a_read_only_store_refuses_instances(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(source: object, target: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))

    monkeypatch.setattr(os, "replace", read_only)
    ds = make_dataset()
    with pytest.raises(StoreError, match="read-only file system") as caught:
        store_dataset(store, ds)
    assert "\n" not in str(caught.value)
    monkeypatch.undo()
    assert incoming_files(store) == []
    assert store.instances() == []
    assert store_dataset(store, ds).sop_instance_uid == ds.SOPInstanceUID  # usable again


def test_incoming_replaced_by_a_file_fails_cleanly(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        incoming = tmp_path / ".qrclient" / "incoming"
        incoming.rmdir()
        incoming.write_text("not a directory")
        # Small instances stay in memory until commit, so that is where it fails.
        receiving = store.begin(CT, f"{ROOT_UID}.3.1", EXPLICIT, "X")
        receiving.write(encode_dataset(make_dataset(1), EXPLICIT))
        with pytest.raises(StoreError, match="cannot store"):
            receiving.commit()
        assert store.instances() == []
    with pytest.raises(StoreError, match="cannot open the store"):
        Store.open(tmp_path)


class FullDisk:
    """A temporary file on a disk that fills after ``room`` bytes."""

    def __init__(self, file: BinaryIO, room: int, *, at_close: bool = False) -> None:
        self.file = file
        self.room = room
        self.at_close = at_close

    def write(self, data: bytes) -> int:
        self.room -= len(data)
        if self.room < 0 and not self.at_close:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()
        if self.room < 0 and self.at_close:
            self.at_close = False
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("at_close", [False, True])
def test_a_full_disk_stores_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, at_close: bool
) -> None:
    def open_on_full_disk(directory: str, *, buffered: bool = True) -> tuple[str, Any]:
        path, file = open_temp(directory, buffered=buffered)
        return path, FullDisk(file, 50_000, at_close=at_close)

    monkeypatch.setattr("qrclient.store.incoming.open_temp", open_on_full_disk)
    ds = make_dataset(pixels=100_000)
    with pytest.raises(StoreError, match="the disk is full"):
        store_dataset(store, ds)
    assert_nothing_stored(store)


@pytest.mark.parametrize("again", [False, True])
def test_an_index_failure_stores_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, again: bool
) -> None:
    """A new instance is indexed by put_new; one stored before (again) by put."""
    ds = make_dataset()
    if again:
        store_dataset(store, ds)
        before = store.instances()

    def broken(record: object) -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store._index, "put" if again else "put_new", broken)
    with pytest.raises(StoreError, match="the index failed"):
        store_dataset(store, ds)
    if again:
        assert store.instances() == before
        assert store.verify() == []
    else:
        assert_nothing_stored(store)


def test_a_move_failure_takes_the_new_row_out_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = store_dataset(store, make_dataset(1))

    def cannot_move(source: str, target: str, uid: str) -> None:
        raise StoreError(f"cannot store {uid}: the disk vanished")

    monkeypatch.setattr(store, "_move", cannot_move)
    with pytest.raises(StoreError, match="the disk vanished"):
        store_dataset(store, make_dataset(2))
    monkeypatch.undo()
    store.flush()
    assert [i.sop_instance_uid for i in store.instances()] == [kept.sop_instance_uid]
    assert store.verify() == []


def test_a_parent_row_failing_takes_its_instance_row_out_again(store: Store) -> None:
    # No savepoint per instance: the instance row goes in first and is removed again
    # when its new series row cannot be written; earlier instances stay.
    first = store_dataset(store, make_dataset(1))
    db = store._index._db
    db.execute(
        "CREATE TEMP TRIGGER no_new_series BEFORE INSERT ON series "
        "BEGIN SELECT RAISE(ABORT, 'series refused'); END"
    )
    other_series = make_dataset(2, SeriesInstanceUID=f"{ROOT_UID}.2.2")
    with pytest.raises(StoreError, match="series refused"):
        store_dataset(store, other_series)
    db.execute("DROP TRIGGER no_new_series")
    assert [i.sop_instance_uid for i in store.instances()] == [first.sop_instance_uid]
    assert store.verify() == []
    # The same series once it can be written: stored, with its series row.
    stored = store_dataset(store, other_series)
    assert store.series_counts(f"{ROOT_UID}.2.2") == 1
    assert stored.path in {i.path for i in store.instances()}


def test_a_damaged_index_is_reported(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    (tmp_path / ".qrclient" / "index.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="damaged"):
        Store.open(tmp_path)
    (tmp_path / ".qrclient" / "index.sqlite").unlink()
    Store.open(tmp_path).close()  # the failed open released its lock


def test_a_layout_that_merges_paths_refuses_the_second_instance(tmp_path: Path) -> None:
    with Store.open(tmp_path, "{PatientID}{SOPInstanceUID}") as store:
        first = store_dataset(store, make_dataset(PatientID="A1", SOPInstanceUID="23.4"))
        with pytest.raises(StoreError, match="gives it the path of 23.4"):
            store_dataset(store, make_dataset(PatientID="A12", SOPInstanceUID="3.4"))
        assert [i.path for i in store.instances()] == [first.path] == ["A123.4"]
        assert incoming_files(store) == []


def test_a_big_instance_streams_to_its_temporary_file_before_it_is_sealed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_dataset(pixels=300_000)
    data = encode_dataset(ds, EXPLICIT)
    small = store.begin(CT, f"{ROOT_UID}.3.7", EXPLICIT, "PACS")
    small.write(data[:100_000])
    assert incoming_files(store) == []  # under the limit: in memory only
    small.discard()
    monkeypatch.setattr("qrclient.store.incoming.MEMORY_LIMIT", 64 * 1024)
    big = store.begin(CT, ds.SOPInstanceUID, EXPLICIT, "PACS")
    big.write(data[:100_000])
    assert len(incoming_files(store)) == 1  # over it: on disk as it arrives
    big.write(data[100_000:])
    big.seal()
    big.place()
    assert incoming_files(store) == []
    assert pydicom.dcmread(store.root / store.instances()[0].path).SOPInstanceUID == (
        ds.SOPInstanceUID
    )


def test_a_sealed_instance_holds_its_path_until_placed_or_discarded(tmp_path: Path) -> None:
    # Sealed means acknowledged to the peer: another instance must not take its path
    # before it is placed, or the answer already sent would be a lie.
    def sealed(store: Store, patient_id: str, uid: str) -> Incoming:
        ds = make_dataset(PatientID=patient_id, SOPInstanceUID=uid)
        incoming = store.begin(CT, uid, EXPLICIT, "PACS")
        incoming.write(encode_dataset(ds, EXPLICIT))
        incoming.seal()
        return incoming

    with Store.open(tmp_path, "{PatientID}{SOPInstanceUID}") as store:
        first = sealed(store, "A1", "23.4")
        assert stored_files(store) == []  # sealed: checked, not yet written out
        with pytest.raises(StoreError, match="gives it the path of 23.4"):
            sealed(store, "A12", "3.4")
        first.place()
        assert [i.path for i in store.instances()] == ["A123.4"]
        assert incoming_files(store) == []
        # A discarded one gives its path back.
        discarded = sealed(store, "B1", "23.5")
        discarded.discard()
        sealed(store, "B12", "3.5").place()
        assert sorted(i.path for i in store.instances()) == ["A123.4", "B123.5"]


def test_present_with_thousands_of_uids(store: Store) -> None:
    data = encode_dataset(make_dataset(pixels=0, SOPInstanceUID="1.2.9.99999"), EXPLICIT)
    held = set()
    for number in range(0, 5000, 2):  # same length: the data set's encoding stays valid
        uid = f"1.2.9.{number:05}"
        receive(store, data.replace(b"1.2.9.99999", uid.encode()), EXPLICIT, uid)
        held.add(uid)
    asked = [f"1.2.9.{n:05}" for n in range(5000)]
    started = time.perf_counter()
    assert store.present(asked) == held
    assert time.perf_counter() - started < 1
    assert store.present(iter(asked[:10] * 3)) == set(asked[:10:2])
    assert store.present([]) == set()


def test_rebuild_after_losing_the_index_restores_the_same_rows(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        for number in range(6):
            ds = make_dataset(number, PatientID=f"PAT{number % 3 % 2}")
            ds.StudyInstanceUID = f"{ROOT_UID}.1.{number % 3}"
            ds.SeriesInstanceUID = f"{ROOT_UID}.2.{number % 3}"
            store_dataset(store, ds, (EXPLICIT, IMPLICIT)[number % 2])
        before, summary = store.instances(), store.summary()
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / ".qrclient" / name).unlink(missing_ok=True)

    with Store.open(tmp_path) as store:
        assert store.instances() == []
        assert len(store.verify()) == 6
        assert store.rebuild_index() == 6
        assert store.instances() == before
        assert store.summary() == summary
        assert store.verify() == []


def test_verify_reports_missing_changed_and_stray_files(store: Store) -> None:
    first = store_dataset(store, make_dataset(1))
    second = store_dataset(store, make_dataset(2))
    (store.root / first.path).unlink()
    with open(store.root / second.path, "ab") as file:
        file.write(b"\0" * 4)
    (store.root / "notes.txt").write_text("mine")
    assert store.verify() == [
        f"missing: {first.path} (SOP Instance UID {first.sop_instance_uid})",
        f"changed: {second.path} has {second.size + 4} bytes, not {second.size}",
        "stray: notes.txt",
    ]
    assert store.rebuild_index() == 0  # the damaged file does not parse any more


# Layout


def render(template: str = DEFAULT_LAYOUT, **values: str) -> str:
    return Layout.parse(template).render(values)


def test_default_layout() -> None:
    assert render(
        PatientID="PAT1", StudyInstanceUID="1.2", SeriesInstanceUID="1.2.3", SOPInstanceUID="9"
    ) == ("PAT1/1.2/1.2.3/9.dcm")
    assert render(SOPInstanceUID="9") == f"{PLACEHOLDER}/{PLACEHOLDER}/{PLACEHOLDER}/9.dcm"


def test_custom_layout_uses_any_text_attribute(tmp_path: Path) -> None:
    template = "{PatientName}/{StudyDate}_{Modality}/{SeriesNumber}/{SOPInstanceUID}.dcm"
    with Store.open(tmp_path, template) as store:
        stored = store_dataset(store, make_dataset())
    assert stored.path == f"Ünlü^Ayşe/20240131_CT/4/{ROOT_UID}.3.1.dcm"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../../etc", "___.._etc"),
        ("/etc/passwd", "_etc_passwd"),
        ("..", "__"),
        (".", "_"),
        (".hidden", "_hidden"),
        ("a\\b\x00c\nd", "a_b_c_d"),
        ("trailing. ", "trailing_"),
        ("trailing .", "trailing__"),
        ("  padded  ", "padded"),
        ("", PLACEHOLDER),
        ("   ", PLACEHOLDER),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("Com7", "_Com7"),
        ("LPT1 ", "_LPT1"),
        ("CONSOLE", "CONSOLE"),
        ('a<b>c:d"e|f?g*h', "a_b_c_d_e_f_g_h"),
        ("zero\u200bwidth", "zero_width"),
        ("山田^太郎", "山田^太郎"),
    ],
)
def test_values_are_sanitised(value: str, expected: str) -> None:
    assert render(PatientID=value, SOPInstanceUID="9").split("/")[0] == expected


def test_long_values_are_shortened_and_stay_distinct() -> None:
    first = render(PatientID="é" * 80 + "a", SOPInstanceUID="9").split("/")[0]
    second = render(PatientID="é" * 80 + "b", SOPInstanceUID="9").split("/")[0]
    assert first != second
    assert first.startswith("é" * 30)
    assert re.fullmatch("é+~[0-9a-f]{10}", first)
    assert len(first.encode()) <= 100
    name = render(
        "{PatientID}-{PatientName}.x/{SOPInstanceUID}", PatientID="a" * 300, SOPInstanceUID="9"
    )
    assert len(name.split("/")[0].encode()) <= 100
    assert name.endswith(f"-{PLACEHOLDER}.x/9")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("/data/{SOPInstanceUID}", "is an absolute path"),
        ("C:/data/{SOPInstanceUID}", "is an absolute path"),
        ("~/data/{SOPInstanceUID}", "is an absolute path"),
        ("{PatientID}\\{SOPInstanceUID}", "contains '\\'"),
        ("{PatientID/{SOPInstanceUID}", "unbalanced braces"),
        ("{PatientID}}/{SOPInstanceUID}", "unbalanced braces"),
        ("{{PatientID}/{SOPInstanceUID}", "unbalanced braces"),
        ("{PatientId}/{SOPInstanceUID}", "not a DICOM keyword (did you mean {PatientID}?)"),
        ("{PixelData}/{SOPInstanceUID}", "not a top-level text attribute"),
        ("{TransferSyntaxUID}/{SOPInstanceUID}", "not a top-level text attribute"),
        ("{}/{SOPInstanceUID}", "not a DICOM keyword"),
        ("{PatientID}/{StudyInstanceUID}.dcm", "lacks {SOPInstanceUID}"),
        ("{PatientID}//{SOPInstanceUID}", "empty directory name"),
        ("{PatientID}/", "empty directory name"),
        ("../{SOPInstanceUID}", "not a portable name"),
        ("./{SOPInstanceUID}", "not a portable name"),
        ("{PatientID}./{SOPInstanceUID}", "not a portable name"),
        ("AUX/{SOPInstanceUID}", "not a portable name"),
        ("a:b/{SOPInstanceUID}", "is an absolute path"),  # Windows: relative to drive A
        ("ab:c/{SOPInstanceUID}", "not a portable name"),
        ("x" * 90 + "{PatientID}/{SOPInstanceUID}", "too long"),
    ],
)
def test_bad_templates_are_refused_at_open(tmp_path: Path, template: str, reason: str) -> None:
    with pytest.raises(StoreError) as caught:
        Store.open(tmp_path, template)
    message = str(caught.value)
    assert reason in message
    assert repr(template) in message
    assert "expected a relative path" in message
    assert "\n" not in message
    assert not (tmp_path / ".qrclient").exists()


DEVICE = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[1-9¹²³]|LPT[1-9¹²³]) *(\..*)?", re.I)
NASTY = st.sampled_from(
    ["", ".", "..", "../", "/", "/etc/passwd", "\x00", "CON", "nul.txt", "LPT9 .x", " .", "a" * 500]
)
VALUES = st.one_of(NASTY, st.text(), st.text(min_size=90, max_size=300))


def forbidden(name: str) -> bool:
    return (
        name in ("", ".", "..")
        or name.startswith(".")
        or name.endswith((".", " "))
        or any(c in "/\\\x00" or unicodedata.category(c) == "Cc" for c in name)
        or len(name.encode("utf-8")) > 100
        or DEVICE.fullmatch(name) is not None
    )


@given(
    patient=VALUES,
    study=VALUES,
    series=VALUES,
    name=VALUES,
    instance=st.one_of(NASTY, st.text()),
)
def test_rendered_paths_stay_inside_the_root(
    patient: str, study: str, series: str, name: str, instance: str
) -> None:
    values = {
        "PatientID": patient,
        "StudyInstanceUID": study,
        "SeriesInstanceUID": series,
        "PatientName": name,
        "SOPInstanceUID": instance,
    }
    root = Path("/srv/store").resolve()
    for template in (
        DEFAULT_LAYOUT,
        "{PatientName}{PatientID}/x-{StudyInstanceUID}.{SOPInstanceUID}",
    ):
        relative = Layout.parse(template).render(values)
        names = relative.split("/")
        assert len(names) == template.count("/") + 1
        assert not any(forbidden(n) for n in names), names
        target = (root / relative).resolve()
        assert target.is_relative_to(root)
        assert target != root
        assert ".qrclient" not in target.parts

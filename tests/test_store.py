"""The local store: Part-10 files from fragments, safe layouts, the index, and failures."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unicodedata
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode as pynetdicom_encode

from qrclient.net import ContextRequest, Peer, open_association
from qrclient.net.datasets import encode_dataset
from qrclient.net.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from qrclient.ops.get import c_get
from qrclient.store import (
    DEFAULT_LAYOUT,
    PLACEHOLDER,
    Layout,
    Store,
    StoreBusy,
    StoreConflict,
    StoreDamaged,
    StoredInstance,
    StoreError,
    StoreFull,
    StoreUnwritable,
)
from qrclient.store.incoming import Incoming, open_temp
from qrclient.store.index import GROUP_ROWS, SCHEMA_VERSION, make_record
from qrclient.store.overview import StoreView
from qrclient.vocabulary import Model
from tests.fakepeer import (
    PeerConnection,
    c_store_rq,
    encode_command_set,
    fake_peer,
    p_data,
    response,
)

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT_UID = "1.2.826.0.1.3680043.8.498"
STUDY_ROOT_GET = Model.STUDY.get_sop_class


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


SQLITE_IOERR_WRITE = 778  # an extended result code: SQLITE_IOERR | 3 << 8


def sqlite_error(kind: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    """An SQLite error as the sqlite3 module raises it, with its result code."""
    error = kind(message)
    error.sqlite_errorcode = code
    return error


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
    record = make_record(text, EXPLICIT, "", "a.dcm", 0, mtime_ns)
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
    # The old file goes once the new row is committed (the group commits on flush).
    assert (store.root / first.path).is_file()
    store.flush()
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
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
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
            # complete files not yet indexed, never a row without its file.
            assert all(p.startswith("unindexed: ") for p in problems), problems
            assert len(problems) <= GROUP_ROWS
            assert len(instances) + len(problems) >= 6 * (run + 1)
            assert store.rebuild_index() == len(instances) + len(problems)
            assert store.verify() == []


def test_a_read_only_store_refuses_instances(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(source: object, target: object, **descriptors: int) -> None:
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
    def open_on_full_disk(directory: int, *, buffered: bool = True) -> tuple[str, Any]:
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

    def broken(record: object, statement: str) -> bool:
        raise sqlite_error(sqlite3.OperationalError, "disk I/O error", SQLITE_IOERR_WRITE)

    monkeypatch.setattr(store._index, "_insert_in_group", broken)
    with pytest.raises(StoreUnwritable, match=r"cannot index .*index.sqlite \(disk I/O error\)"):
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

    def cannot_move(incoming: Incoming, relative: str) -> None:
        raise StoreError(f"cannot store {incoming.sop_instance_uid}: the disk vanished")

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
        "unindexed: notes.txt (not a DICOM Part-10 file)",
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


# Links: nothing is created, renamed or deleted outside the root

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the store with files that are not the store's."""
    folder = tmp_path / "outside"
    (folder / "incoming").mkdir(parents=True)
    (folder / "theirs.txt").write_text("not the store's")
    (folder / "incoming" / "1-2-3.part").write_text("not the store's either")
    return folder


@pytest.mark.parametrize("depth", [1, 2, 3], ids=["patient", "study", "series"])
def test_a_folder_linked_outside_the_store_gets_nothing(
    tmp_path: Path, outside: Path, depth: int
) -> None:
    root = tmp_path / "store"
    before = snapshot(outside)
    link = root.joinpath(*["PAT1", f"{ROOT_UID}.1.1", f"{ROOT_UID}.2.1"][:depth])
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    with Store.open(root) as store:
        for number in range(30):
            with pytest.raises(StoreError, match="symbolic link") as caught:
                store_dataset(store, make_dataset(number))
            assert "\n" not in str(caught.value)
        assert store.instances() == []
        assert incoming_files(store) == []
    assert snapshot(outside) == before
    assert link.is_symlink()


def test_a_stored_file_replaced_by_a_link_is_not_here_and_not_followed(
    store: Store, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"not the store's")
    first = store_dataset(store, make_dataset(1))
    uid = first.sop_instance_uid
    stored = store.root / first.path
    stored.unlink()
    stored.symlink_to(victim)
    assert store.present([uid]) == set()
    assert store.verify() == [f"unreadable: {first.path} (a symbolic link, not followed)"]
    store_dataset(store, make_dataset(1, PatientID="PAT1"))  # the link is replaced
    assert not stored.is_symlink()
    assert pydicom.dcmread(stored).SOPInstanceUID == uid
    assert victim.read_bytes() == b"not the store's"
    assert store.present([uid]) == {uid}
    assert store.verify() == []


@pytest.mark.parametrize(
    ("name", "target"),
    [
        (".qrclient", ""),
        (".qrclient/incoming", "incoming"),
        (".qrclient/index.sqlite", "theirs.txt"),
        (".qrclient/index.sqlite-wal", "theirs.txt"),
        (".qrclient/lock", "theirs.txt"),
    ],
)
def test_the_stores_own_folders_and_files_linked_outside_are_refused(
    tmp_path: Path, outside: Path, name: str, target: str
) -> None:
    root = tmp_path / "store"
    with Store.open(root) as store:
        store_dataset(store, make_dataset(1))
    own = root / name
    if own.is_dir():
        os.rename(own, tmp_path / "moved")
    else:
        own.unlink(missing_ok=True)
    own.symlink_to(outside / target)
    before = snapshot(outside)
    for _ in range(2):
        with pytest.raises(StoreDamaged) as caught:
            Store.open(root)
        assert f"{name} is a symbolic link" in caught.value.message
        assert "remove the link" in caught.value.hint
    assert snapshot(outside) == before  # opening deleted no leftover through the link
    assert own.is_symlink()


def test_an_index_row_edited_to_leave_the_store_is_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "a" / "store"
    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"not the store's")
    with Store.open(root) as store:
        first = store_dataset(store, make_dataset(1))
    uid = first.sop_instance_uid
    db = sqlite3.connect(root / ".qrclient" / "index.sqlite")
    with db:
        db.execute("UPDATE instance SET path = '../../victim.dcm'")
    db.close()
    with Store.open(root) as store:
        assert store.present([uid]) == set()
        assert store.study_counts(f"{ROOT_UID}.1.1") == 0
        assert store.verify() == [
            f"missing: ../../victim.dcm (SOP Instance UID {uid})",
            f"unindexed: {first.path}",
        ]
        store_dataset(store, make_dataset(1))  # stored again: the row's old path is dropped
        store.flush()
        assert store.present([uid]) == {uid}
        assert store.verify() == []
    assert victim.read_bytes() == b"not the store's"


# A kill, or a failed commit, between storing an instance again and committing its row

RESTORE_THEN_KILL = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from qrclient.store import Store
from tests.test_store import make_dataset, store_dataset

store = Store.open(sys.argv[1])
store_dataset(store, make_dataset(1, PatientID="OLD"))
store.flush()
store_dataset(store, make_dataset(1, PatientID="NEW"))  # a new path; its row uncommitted
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kill_before_the_new_row_is_committed_keeps_the_old_file(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-c", RESTORE_THEN_KILL, str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    with Store.open(tmp_path) as store:
        [kept] = store.instances()
        assert kept.patient_id == "OLD"
        assert pydicom.dcmread(store.root / kept.path).PatientID == "OLD"
        assert store.present([kept.sop_instance_uid]) == {kept.sop_instance_uid}
        [problem] = store.verify()  # the new file, complete, not indexed yet
        assert problem.startswith("unindexed: NEW/"), problem


class FailingCommits:
    """The index's connection, but COMMIT fails as it does on a full disk."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, *parameters: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite_error(sqlite3.OperationalError, "database or disk is full", 13)
        return self.connection.execute(sql, *parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def test_a_failed_commit_keeps_the_replaced_file(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store_dataset(store, make_dataset(1, PatientID="OLD"))
    store.flush()
    monkeypatch.setattr(store._index, "_db", FailingCommits(store._index._db))
    second = store_dataset(store, make_dataset(1, PatientID="NEW"))
    with pytest.raises(StoreFull) as caught:
        store.flush()
    monkeypatch.undo()
    assert caught.value.message == (
        "cannot index the last 1 instances received (their files are in place, not "
        f"indexed): the disk holding {store.root}/.qrclient/index.sqlite is full"
    )
    assert f"qrclient store rebuild --out {store.root}" in caught.value.hint
    store.flush()
    assert [(i.path, i.patient_id) for i in store.instances()] == [(first.path, "OLD")]
    assert (store.root / first.path).is_file()  # the committed row names it: kept
    assert store.verify() == [f"unindexed: {second.path}"]
    # Two files of one instance: a rebuild indexes one (the newer), verify names the other.
    assert store.rebuild_index() == 1
    [problem] = store.verify()
    assert problem in (f"unindexed: {first.path}", f"unindexed: {second.path}")


def test_a_full_disk_on_closing_says_so_and_keeps_the_store_consistent(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [store_dataset(store, make_dataset(n)) for n in range(3)]
    monkeypatch.setattr(store._index, "_db", FailingCommits(store._index._db))
    with pytest.raises(StoreFull, match="cannot index the last 3 instances received"):
        store.close()
    monkeypatch.undo()
    with Store.open(store.root) as again:  # closed all the same: the lock is free
        assert again.instances() == []
        assert len(again.verify()) == 3
        assert again.rebuild_index() == 3
        assert {i.path for i in again.instances()} == {s.path for s in stored}


# A damaged index, and a full disk, are told apart


def corrupt_pages(index: Path) -> None:
    """Overwrite every page of an SQLite file but the first (header and schema)."""
    data = index.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    index.write_bytes(data[:page] + b"\xa5" * (len(data) - page))


def test_a_corrupted_index_page_is_damage_with_a_real_command_to_mend_it(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path) as store:
        for number in range(50):
            store_dataset(store, make_dataset(number))
    corrupt_pages(tmp_path / ".qrclient" / "index.sqlite")
    with Store.open(tmp_path) as store:  # header and schema intact: it opens
        for question in (
            lambda: store.present([f"{ROOT_UID}.3.1"]),
            lambda: store.instances_in_study(f"{ROOT_UID}.1.1"),
            store.summary,
        ):
            with pytest.raises(StoreDamaged) as caught:
                question()
            error = caught.value
            assert error.message.startswith(
                f"cannot read the store: the store index {store.root}/.qrclient/index.sqlite "
                "is damaged ("
            )
            assert (
                error.hint
                == f"rebuild it from the files: qrclient store rebuild --out {store.root}"
            )
            assert "\n" not in str(error)
    with pytest.raises(StoreDamaged, match="is damaged"):
        StoreView(tmp_path).holdings()
    with Store.open(tmp_path, rebuild=True) as store:
        assert len(store.instances()) == 50
        assert store.verify() == []
    assert not list((tmp_path / ".qrclient").glob("*.new*"))


FULL_DISK = """
import json, os, sys
sys.path.insert(0, sys.argv[2])
from qrclient.store import Store, StoreError
from tests.test_store import make_dataset, store_dataset

disk = sys.argv[1]
said = {}

def attempt(name, action):
    try:
        action()
    except StoreError as exc:
        said[name] = [type(exc).__name__, exc.message, exc.hint]

def fill():
    descriptor = os.open(f"{disk}/filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, bytes(4096))
    except OSError:
        pass
    os.close(descriptor)

store = Store.open(f"{disk}/store")
for number in range(4):
    store_dataset(store, make_dataset(number))  # rows not committed yet
fill()
attempt("close", store.close)
attempt("open", lambda: Store.open(f"{disk}/another").close())
def store_one():
    with Store.open(f"{disk}/store") as again:
        store_dataset(again, make_dataset(9))

attempt("store", store_one)
os.unlink(f"{disk}/filler")
with Store.open(f"{disk}/store") as store:
    said["unindexed"] = store.verify()
    said["rebuilt"] = store.rebuild_index()
    said["verified"] = store.verify()
print(json.dumps(said))
"""


def on_small_disk(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Python script with a 1 MB file system (tmpfs) as its first argument, in a
    mount namespace of its own (as root of a user namespace: no privilege needed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    return subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"',
            "sh",
            str(disk),
            sys.executable,
            "-c",
            script,
            str(disk),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def test_a_full_disk_is_reported_as_full_not_damaged(tmp_path: Path) -> None:
    process = on_small_disk(tmp_path, FULL_DISK, str(REPO))
    assert process.returncode == 0, process.stderr
    said = json.loads(process.stdout)
    disk = tmp_path / "disk"
    kind, message, hint = said["close"]
    assert kind == "StoreFull"
    assert message == (
        "cannot index the last 4 instances received (their files are in place, not "
        f"indexed): the disk holding {disk}/store/.qrclient/index.sqlite is full"
    )
    assert f"qrclient store rebuild --out {disk}/store" in hint
    kind, message, _ = said["open"]
    assert kind == "StoreFull"
    assert message.startswith("cannot open the store: the disk holding ")
    kind, message, _ = said["store"]
    assert kind == "StoreFull"
    assert message.endswith(": the disk is full")
    assert not any("damaged" in " ".join(said[k]) for k in ("close", "open", "store"))
    # Freed: the files received are there, whole; the index takes them back.
    assert [p.split(":")[0] for p in said["unindexed"]] == ["unindexed"] * 4
    assert said["rebuilt"] == 4
    assert said["verified"] == []


# An instance received again: the same is a no-op; a different one from another source
# is refused unless the store was opened to overwrite


def from_source(store: Store, ds: Dataset, source: str) -> StoredInstance:
    return receive(store, encode_dataset(ds, EXPLICIT), EXPLICIT, ds.SOPInstanceUID, source=source)


def sealed_from(store: Store, ds: Dataset, source: str) -> Incoming:
    incoming = store.begin(CT, ds.SOPInstanceUID, EXPLICIT, source)
    incoming.write(encode_dataset(ds, EXPLICIT))
    incoming.seal()
    return incoming


def test_the_same_instance_from_another_source_is_a_no_op(store: Store, memory_limit: str) -> None:
    first = from_source(store, make_dataset(1, pixels=100_000), "NODEA")
    store.flush()
    before = (store.root / first.path).stat().st_mtime_ns
    again = from_source(store, make_dataset(1, pixels=100_000), "NODEB")
    assert again == first
    store.flush()
    assert (store.root / first.path).stat().st_mtime_ns == before  # not even rewritten
    assert [i.source for i in store.instances()] == ["NODEA"]
    assert incoming_files(store) == []
    assert store.verify() == []


@pytest.mark.parametrize(
    "changed",
    [{"PatientID": "EVIL"}, {"SeriesDescription": "Axiak"}],
    ids=["another-path", "same-size"],
)
def test_a_different_instance_from_another_source_is_refused_before_the_answer(
    store: Store, changed: dict[str, str], memory_limit: str
) -> None:
    first = from_source(store, make_dataset(1, pixels=100_000), "NODEA")
    store.flush()
    kept = (store.root / first.path).read_bytes()
    hostile = make_dataset(1, pixels=100_000)
    for keyword, value in changed.items():
        setattr(hostile, keyword, value)
    with pytest.raises(StoreConflict) as caught:
        sealed_from(store, hostile, "HOSTILE")  # before the C-STORE answer
    assert caught.value.message == (
        f"{first.sop_instance_uid} was not stored: a different instance with this SOP "
        f"Instance UID is kept, received from NODEA ({first.path})"
    )
    assert caught.value.hint == (
        "to replace it, delete that file and retrieve again (--overwrite replaces such "
        "instances as they arrive)"
    )
    store.flush()
    assert stored_files(store) == [store.root / first.path]
    assert (store.root / first.path).read_bytes() == kept
    assert [(i.path, i.source) for i in store.instances()] == [(first.path, "NODEA")]
    assert incoming_files(store) == []


def test_overwrite_lets_another_source_replace_it(tmp_path: Path) -> None:
    with Store.open(tmp_path, overwrite=True) as store:
        first = from_source(store, make_dataset(1), "NODEA")
        second = from_source(store, make_dataset(1, PatientID="OTHER"), "NODEB")
        store.flush()
        assert [(i.path, i.source) for i in store.instances()] == [(second.path, "NODEB")]
        assert stored_files(store) == [store.root / second.path] != [store.root / first.path]


def test_its_own_source_replaces_it(store: Store) -> None:
    """A PACS re-sending a corrected object: the same source's newer copy is kept."""
    from_source(store, make_dataset(1), "NODEA")
    corrected = from_source(store, make_dataset(1, SeriesDescription="Corrected"), "NODEA")
    store.flush()
    assert pydicom.dcmread(store.root / corrected.path).SeriesDescription == "Corrected"
    assert store.verify() == []


def test_a_kept_instance_whose_file_is_gone_does_not_refuse_another_source(
    store: Store,
) -> None:
    first = from_source(store, make_dataset(1), "NODEA")
    (store.root / first.path).unlink()
    second = from_source(store, make_dataset(1, SeriesDescription="Other"), "NODEB")
    assert second.source == "NODEB"
    assert store.present([first.sop_instance_uid]) == {first.sop_instance_uid}


def test_one_instance_received_twice_at_once_is_refused_the_second_time(store: Store) -> None:
    first = sealed_from(store, make_dataset(1), "NODEA")
    with pytest.raises(StoreError, match="being received at the same time"):
        sealed_from(store, make_dataset(1, PatientID="OTHER"), "NODEB")
    first.place()
    store.flush()
    assert [i.source for i in store.instances()] == ["NODEA"]
    assert len(stored_files(store)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_hostile_pacs_cannot_replace_an_instance_fetched_from_another(
    tmp_path: Path,
) -> None:
    statuses: list[int] = []
    hostile = make_dataset(1, PatientID="EVIL")

    async def replace_it(conn: PeerConnection) -> None:
        await conn.accept()
        context_id, request, _ = await conn.read_message()
        storage = next(i for i, uid in conn.contexts.items() if uid == CT)
        store_rq = c_store_rq(1, CT, hostile.SOPInstanceUID)
        store_rq.CommandDataSetType = 0x0000
        await conn.send_raw(p_data(storage, 0x03, encode_command_set(store_rq)))
        data = pynetdicom_encode(hostile, False, True)
        assert data is not None
        await conn.send_raw(p_data(storage, 0x02, bytes(data)))
        _, answer, _ = await conn.read_message()
        statuses.append(int(answer.Status))
        final = response(0x8010, int(request.MessageID), 0, str(request.AffectedSOPClassUID))
        await conn.send_message(context_id, final)
        while True:  # until qrclient releases and closes
            pdu_type, _ = await conn.read_pdu()
            if pdu_type == 5:
                await conn.send_raw(bytes([6, 0, 0, 0, 0, 4, 0, 0, 0, 0]))

    with Store.open(tmp_path / "store") as store:
        fetched = from_source(store, make_dataset(1), "ORTHANC")
        async with fake_peer(replace_it) as (port, _):
            with anyio.fail_after(10):
                async with open_association(
                    Peer("HOSTILE", "127.0.0.1", port),
                    [ContextRequest(STUDY_ROOT_GET), ContextRequest(CT, scp_role=True)],
                ) as association:
                    identifier = Dataset()
                    identifier.QueryRetrieveLevel = "STUDY"
                    identifier.StudyInstanceUID = f"{ROOT_UID}.1.1"
                    result = await c_get(association, identifier, STUDY_ROOT_GET, store)
        assert statuses == [0xA700]  # a failure status: the PACS knows it was refused
        [error] = result.store_errors
        assert "a different instance with this SOP Instance UID is kept" in error
        assert "received from ORTHANC" in error
        store.flush()
        assert [(i.path, i.source) for i in store.instances()] == [(fetched.path, "ORTHANC")]
        assert stored_files(store) == [store.root / fetched.path]
        assert pydicom.dcmread(store.root / fetched.path).PatientID == "PAT1"


# The disk over the index


def test_what_is_here_is_what_the_files_say(store: Store) -> None:
    stored = [store_dataset(store, make_dataset(n)) for n in range(10)]
    uids = [s.sop_instance_uid for s in stored]
    (store.root / stored[0].path).unlink()
    (store.root / stored[1].path).write_bytes(b"")  # truncated
    with open(store.root / stored[2].path, "r+b") as file:  # same size: not noticed by a stat
        file.write(b"x")
    assert store.present(uids) == set(uids[2:])
    assert not store.has(uids[0])
    assert store.instances_in_study(f"{ROOT_UID}.1.1") == 8
    assert store.series_counts(f"{ROOT_UID}.2.1") == 8
    assert len(store.instances()) == 10  # the index's word, which verify checks
    assert [p.split(":")[0] for p in store.verify()] == ["missing", "changed", "unreadable"]
    # Fetched again, they are here again.
    for number in (0, 1):
        store_dataset(store, make_dataset(number))
    assert store.present(uids) == set(uids)


# One qrclient at a time: busy, or wait


HOLD = """
import sys
from qrclient.store import Store
with Store.open(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


def test_a_store_in_use_says_by_whom_and_how_to_wait(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StoreBusy) as caught:
            Store.open(tmp_path)
        assert caught.value.message == (
            f"the store {tmp_path} is in use by another qrclient (process {holder.pid})"
        )
        assert "--wait SECONDS" in caught.value.hint
        started = time.monotonic()
        with pytest.raises(StoreBusy):
            Store.open(tmp_path, wait=0.3)
        assert time.monotonic() - started >= 0.3  # it waited before giving up
        threading.Timer(0.3, holder.stdin.close).start()
        with Store.open(tmp_path, wait=30) as store:  # released meanwhile: opened
            assert store.instances() == []
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()

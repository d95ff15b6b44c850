"""Pseudonymisation's parts without a network: key, engine, linkage file, store wrapper."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from fixtures.dataset import build_dataset, find_patient, pixel_data, test_archive
from qrclient.deid.engine import Pseudonymizer
from qrclient.deid.errors import DeidError
from qrclient.deid.key import PseudonymKey, create_key, load_key
from qrclient.deid.linkage import HEADER, LinkageRow, LinkageWriter, check_linkage_path
from qrclient.deid.marker import Dates
from qrclient.deid.session import PseudonymizeOptions, open_pseudonymizing
from qrclient.deid.sink import PseudonymizingStore
from qrclient.store import Store
from qrclient.store.incoming import MEMORY_LIMIT
from qrclient.store.part10 import read_meta

ARCHIVE = test_archive(big_count=2)
KEY = PseudonymKey(bytes(range(32)))


def instance_dataset(patient_id: str = "PAT005", *, pixels: bytes | None = None) -> Dataset:
    """A test instance as a peer would send it, with what a real one may also carry."""
    patient = find_patient(ARCHIVE, patient_id)
    study = patient.studies[0]
    series = study.series[0]
    instance = series.instances[0]
    dataset = build_dataset(patient, study, series, instance)
    if pixels is not None:
        dataset.PixelData = pixels
    dataset.PatientAge = "052Y"
    dataset.StudyComments = f"seen by {patient.patient_name}"
    dataset.OtherPatientIDs = patient.patient_id
    dataset.InstitutionName = "ST ELSEWHERE"
    dataset.FrameOfReferenceUID = "1.2.3.9"
    reference = Dataset()
    reference.ReferencedSOPClassUID = instance.sop_class_uid
    reference.ReferencedSOPInstanceUID = instance.sop_instance_uid
    dataset.SourceImageSequence = Sequence([reference])
    block = dataset.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", patient.patient_name)
    return dataset


def originals(dataset: Dataset) -> list[str]:
    return [
        str(dataset.PatientName),
        dataset.PatientID,
        dataset.PatientBirthDate,
        dataset.AccessionNumber,
        dataset.StudyInstanceUID,
        dataset.SeriesInstanceUID,
        dataset.SOPInstanceUID,
    ]


def encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- key ------------------------------------------------------------------------------


def test_the_same_key_maps_the_same_original_the_same_way() -> None:
    again = PseudonymKey(bytes(range(32)))
    other = PseudonymKey(bytes(32))
    uid = "1.2.3.4.5"
    assert KEY.uid(uid) == again.uid(uid) != other.uid(uid)
    assert KEY.uid(uid) != KEY.uid("1.2.3.4.6")
    assert KEY.patient("PAT001") == again.patient("PAT001") != other.patient("PAT001")
    assert KEY.fingerprint == again.fingerprint != other.fingerprint
    pydicom.uid.UID(KEY.uid(uid))  # parses
    assert KEY.uid(uid).startswith("2.25.")
    assert len(KEY.uid(uid)) <= 64
    assert pydicom.uid.UID(KEY.uid(uid)).is_valid
    assert len(KEY.accession("ACC1")) == 16  # SH's limit
    shifts = {KEY.date_shift(f"PAT{n}", 30) for n in range(200)}
    assert shifts <= set(range(1, 31))
    assert len(shifts) > 20


def test_a_key_file_is_created_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "store.key"
    key = create_key(path, "--pseudonym-key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path, "--pseudonym-key").fingerprint == key.fingerprint
    with pytest.raises(DeidError, match="cannot create"):
        create_key(path, "--pseudonym-key")  # never overwritten


@pytest.mark.parametrize(
    ("content", "mode", "error"),
    [
        ("not a key\n", 0o600, "not a qrclient key"),
        ("ab" * 31 + "\n", 0o600, "not a qrclient key"),
        ("ab" * 32 + "\n", 0o644, "others may read it"),
    ],
)
def test_a_bad_key_file_is_one_error(tmp_path: Path, content: str, mode: int, error: str) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(DeidError, match=error):
        load_key(path, "--pseudonym-key")


# -- engine ---------------------------------------------------------------------------


def test_nothing_identifying_is_left_in_the_encoded_instance() -> None:
    dataset = instance_dataset()
    before = originals(dataset)
    row = Pseudonymizer(KEY, Dates()).apply(dataset)
    data = encoded(dataset)
    patient = find_patient(ARCHIVE, "PAT005")
    for value in [*before, "MÜLLER", "JÜRGEN", "ST ELSEWHERE", "CR PELVIS", "CT HEAD"]:
        for encoding in ("utf-8", "latin-1"):
            assert value.encode(encoding) not in data, value
    assert row.original_patient_id == patient.patient_id
    assert row.original_patient_name == patient.patient_name
    assert dataset.PatientID == dataset.PatientName == row.patient_pseudonym
    assert dataset.SOPInstanceUID == row.sop_instance_uid == KEY.uid(before[6])
    assert dataset.StudyInstanceUID == KEY.uid(before[4])
    # References follow the instances they point to; class UIDs stay.
    source = dataset.SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == dataset.SOPInstanceUID
    assert source.ReferencedSOPClassUID == dataset.SOPClassUID
    assert dataset.FrameOfReferenceUID == KEY.uid("1.2.3.9")
    # The Basic Profile's removals: private attributes, age, free text.
    assert not any(element.tag.is_private for element in dataset)
    assert "PatientAge" not in dataset
    assert "StudyComments" not in dataset
    assert "StudyDescription" not in dataset
    assert not dataset.PatientBirthDate
    assert [c.CodeValue for c in dataset.DeidentificationMethodCodeSequence] == [
        "113100",
        "113107",
    ]
    first = find_patient(ARCHIVE, "PAT005").studies[0].series[0].instances[0]
    assert dataset.PixelData == pixel_data(first)


def test_dates_move_back_by_the_patients_days_or_stay() -> None:
    shifted = instance_dataset("PAT004")
    original = shifted.StudyDate
    row = Pseudonymizer(KEY, Dates(30)).apply(shifted)
    assert 1 <= row.date_shift_days <= 30
    days = (pydicom.valuerep.DA(original) - pydicom.valuerep.DA(shifted.StudyDate)).days
    assert days == row.date_shift_days
    assert shifted.StudyTime == instance_dataset("PAT004").StudyTime  # whole days
    kept = instance_dataset("PAT004")
    row = Pseudonymizer(KEY, Dates(0)).apply(kept)
    assert (kept.StudyDate, row.date_shift_days) == (original, 0)
    assert kept.DeidentificationMethodCodeSequence[1].CodeValue == "113106"


def test_a_date_that_does_not_parse_is_emptied() -> None:
    dataset = instance_dataset()
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):  # pydicom's, as a peer's
        dataset.SeriesDate = "2023AB01"
    Pseudonymizer(KEY, Dates()).apply(dataset)
    assert not dataset.SeriesDate


# -- linkage --------------------------------------------------------------------------


def row(n: int) -> LinkageRow:
    originals = ("PAT1", "DOE^JOHN, JR", "ACC", "1.2", "1.2.3", f"1.2.3.{n}")
    return LinkageRow(*originals, "P1", "A1", "2.25.1", "2.25.2", f"2.25.{n}", 7)


def test_linkage_rows_are_appended_and_a_torn_last_row_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "linkage.csv"
    writer = LinkageWriter.open(path)
    writer.add(row(1))
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with path.open("ab") as file:
        file.write(b"PAT1,DOE")  # a crash mid-row
    writer = LinkageWriter.open(path)
    writer.add(row(2))
    writer.close()
    import csv

    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    assert path.read_bytes().startswith(HEADER)
    assert [r[5] for r in rows[1:]] == ["1.2.3.1", "1.2.3.2"]
    assert rows[1][1] == "DOE^JOHN, JR"


def test_a_file_that_is_not_a_linkage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("name,phone\n")
    with pytest.raises(DeidError, match="not a qrclient linkage file"):
        LinkageWriter.open(path)
    assert path.read_text() == "name,phone\n"


def test_a_linkage_path_in_the_store_or_unwritable_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with pytest.raises(DeidError, match="inside the store"):
        check_linkage_path(store / "sub" / "linkage.csv", store)
    with pytest.raises(DeidError, match="cannot write"):
        check_linkage_path(tmp_path / "missing" / "linkage.csv", store)
    (tmp_path / "file").write_text("")
    with pytest.raises(DeidError, match="cannot write"):
        check_linkage_path(tmp_path / "file" / "linkage.csv", store)
    assert check_linkage_path(tmp_path / "linkage.csv", store) == tmp_path / "linkage.csv"


# -- the store wrapper ----------------------------------------------------------------


def receive(
    sink: PseudonymizingStore, dataset: Dataset, part10: bytes | None = None, chunk: int = 16384
) -> None:
    """Send ``dataset`` (encoded as ``part10``) through the sink as C-STORE fragments."""
    part10 = encoded(dataset) if part10 is None else part10
    descriptor = os.memfd_create("instance")
    os.write(descriptor, part10)
    _, offset = read_meta(descriptor)
    os.close(descriptor)
    syntax = str(dataset.file_meta.TransferSyntaxUID)
    incoming = sink.begin(dataset.SOPClassUID, dataset.SOPInstanceUID, syntax, "PACS")
    for start in range(offset, len(part10), chunk):
        incoming.write(part10[start : start + chunk])
    incoming.seal()
    assert incoming.identifiers == {
        "StudyInstanceUID": dataset.StudyInstanceUID,
        "SeriesInstanceUID": dataset.SeriesInstanceUID,
    }
    incoming.place()


@pytest.mark.parametrize("size", [64, MEMORY_LIMIT + 4096], ids=["in memory", "spilled"])
def test_the_store_holds_only_pseudonyms_and_finds_originals(tmp_path: Path, size: int) -> None:
    dataset = instance_dataset(pixels=bytes(size))
    before = originals(dataset)
    store_root, linkage = tmp_path / "store", tmp_path / "linkage.csv"
    options = PseudonymizeOptions(None, tmp_path / "key", linkage)
    with Store.open(store_root) as store:
        sink = open_pseudonymizing(store, options, tmp_path / "config")
        receive(sink, dataset)
        assert sink.present([before[6], "1.2.3"]) == {before[6]}
        assert sink.instances_in_study(before[4]) == 1
        [stored] = store.instances()
        assert stored.sop_instance_uid == KEY_OF(tmp_path).uid(before[6])
        sink.close()
    files = [p for p in store_root.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for value in before:
            assert value.encode("latin-1") not in data, (value, path)
    [dcm] = [p for p in files if p.suffix == ".dcm"]
    assert len(pydicom.dcmread(dcm).PixelData) == size
    assert list(store_root.joinpath(".qrclient", "incoming").iterdir()) == []
    assert linkage.read_bytes().count(b"\n") == 2


def KEY_OF(folder: Path) -> PseudonymKey:
    return load_key(folder / "key", "key")


def test_warnings_while_pseudonymising_are_never_shown(
    tmp_path: Path, recwarn: pytest.WarningsRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydicom (or dicognito) may warn about an odd value, quoting it: on this path it
    is patient data, and never reaches the terminal."""
    apply = Pseudonymizer.apply

    def warning_apply(self: Pseudonymizer, dataset: Dataset) -> LinkageRow:
        warnings.warn(f"Invalid value for VR PN: {dataset.PatientName}", UserWarning, 1)
        return apply(self, dataset)

    monkeypatch.setattr(Pseudonymizer, "apply", warning_apply)
    dataset = instance_dataset()
    with Store.open(tmp_path / "store") as store:
        options = PseudonymizeOptions(None, tmp_path / "key")
        sink = open_pseudonymizing(store, options, tmp_path / "config")
        receive(sink, dataset)
        sink.close()
        assert len(store.instances()) == 1
    assert not [w for w in recwarn if "MÜLLER" in str(w.message)]

"""Deterministic synthetic DICOM archives: the demo PACS's sample and the tests' archive.

An archive is a manifest of frozen dataclasses, so its users can assert against it
instead of hard-coding UIDs or counts. Every byte built from it is a pure function of
the manifest: UIDs are hashed from stable strings in a namespace of the archive's own,
dates are fixed and pixel data is computed by the caller.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_ROOT_UID, UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
US_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
DX_PRESENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")

SOP_CLASS_BY_MODALITY: dict[str, UID] = {
    "CT": CT_IMAGE_STORAGE,
    "MR": MR_IMAGE_STORAGE,
    "CR": CR_IMAGE_STORAGE,
    "US": US_IMAGE_STORAGE,
    "DX": DX_PRESENTATION_STORAGE,
}

# Fixed, so UIDs and file meta do not change with the installed pydicom version.
UID_PREFIX = PYDICOM_ROOT_UID
BITS_STORED = 12
REFERRING_PHYSICIAN = "WELBY^MARCUS"


@dataclass(frozen=True)
class InstanceSpec:
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int
    rows: int
    columns: int


@dataclass(frozen=True)
class SeriesSpec:
    series_instance_uid: str
    modality: str
    series_number: int
    description: str
    instances: tuple[InstanceSpec, ...]


@dataclass(frozen=True)
class StudySpec:
    study_instance_uid: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession_number: str
    study_id: str
    description: str
    series: tuple[SeriesSpec, ...]


@dataclass(frozen=True)
class PatientSpec:
    patient_id: str
    patient_name: str  # as it should decode, e.g. "MÜLLER^JÜRGEN"
    birth_date: str  # YYYYMMDD
    sex: str
    charset: str | None  # SpecificCharacterSet; None means default repertoire
    studies: tuple[StudySpec, ...]


Archive = tuple[PatientSpec, ...]


@dataclass(frozen=True)
class Implementation:
    """The file meta's implementation identity of an archive's files."""

    class_uid: str
    version_name: str


def hashed_uid(namespace: str, *parts: object) -> str:
    """A UID hashed from a stable path: unique per archive node, identical across runs.

    generate_uid(prefix=None) is always random, so the prefix is required. These come
    out at the full 64 characters, which also exercises UI length limits.
    """
    key = "/".join(str(p) for p in (namespace, *parts))
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[key]))


def build_series(
    namespace: str,
    study_key: tuple[object, ...],
    number: int,
    modality: str,
    description: str,
    count: int,
    size: tuple[int, int],
) -> SeriesSpec:
    """Series ``number`` of the study hashed from ``study_key``: ``count`` images of ``size``."""
    series_key = (*study_key, "series", number)
    sop_class = str(SOP_CLASS_BY_MODALITY[modality])
    instances = tuple(
        InstanceSpec(
            sop_instance_uid=hashed_uid(namespace, *series_key, "instance", n),
            sop_class_uid=sop_class,
            instance_number=n,
            rows=size[0],
            columns=size[1],
        )
        for n in range(1, count + 1)
    )
    return SeriesSpec(
        series_instance_uid=hashed_uid(namespace, *series_key),
        modality=modality,
        series_number=number,
        description=description,
        instances=instances,
    )


def all_studies(archive: Iterable[PatientSpec]) -> Iterator[tuple[PatientSpec, StudySpec]]:
    for patient in archive:
        for study in patient.studies:
            yield patient, study


def all_series(
    archive: Iterable[PatientSpec],
) -> Iterator[tuple[PatientSpec, StudySpec, SeriesSpec]]:
    for patient, study in all_studies(archive):
        for series in study.series:
            yield patient, study, series


def all_instances(
    archive: Iterable[PatientSpec],
) -> Iterator[tuple[PatientSpec, StudySpec, SeriesSpec, InstanceSpec]]:
    for patient, study, series in all_series(archive):
        for instance in series.instances:
            yield patient, study, series, instance


def find_patient(archive: Iterable[PatientSpec], patient_id: str) -> PatientSpec:
    for patient in archive:
        if patient.patient_id == patient_id:
            return patient
    raise KeyError(patient_id)


def count_instances(archive: Iterable[PatientSpec]) -> int:
    return sum(1 for _ in all_instances(archive))


def build_dataset(
    patient: PatientSpec,
    study: StudySpec,
    series: SeriesSpec,
    instance: InstanceSpec,
    *,
    pixels: bytes,
    implementation: Implementation,
) -> Dataset:
    """The full dataset (with file meta) for one instance; ``pixels`` are 16-bit LE samples."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(instance.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(instance.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(implementation.class_uid)
    meta.ImplementationVersionName = implementation.version_name

    ds = Dataset()
    ds.file_meta = meta
    if patient.charset is not None:
        # Must be set before text values are written so pydicom encodes them with it.
        ds.SpecificCharacterSet = patient.charset
    ds.SOPClassUID = instance.sop_class_uid
    ds.SOPInstanceUID = instance.sop_instance_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.StudyTime = study.study_time
    ds.SeriesTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = series.modality
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.series_number
    ds.InstanceNumber = instance.instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = instance.rows
    ds.Columns = instance.columns
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels
    return ds


def encode_part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    # enforce_file_format: preamble + DICM prefix + group 2, as a real file would have.
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()

"""Storage SOP classes and transfer syntaxes to propose when receiving instances.

C-GET delivers instances on our own association, so we must propose a presentation
context (with the SCP role) for every SOP class that may arrive, and for the transfer
syntaxes we are willing to store as they are, so that the peer does not transcode.

An association holds at most 128 contexts, one of them the C-GET's own. With the SOP
classes known (from the plan), each gets one context for the uncompressed syntaxes and
one per compressed syntax: 12 classes fit. With the classes unknown (the peer answers
neither SOPClassesInStudy nor SOPClassUID), ``unknown_class_packs()`` proposes every
non-retired storage class of PS3.6 uncompressed (as getscu does), the common ones first;
instances the peer then could not send for lack of a context are asked for again with
the next packs: the rest of the classes, then the common classes in each compressed
syntax. A pack never holds more than ``ROOM`` contexts.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from qrclient.net.presentation import ContextRequest
from qrclient.net.uids import DEFLATED_LE, EXPLICIT_LE, IMPLICIT_LE, MAX_CONTEXTS

UNCOMPRESSED: tuple[str, ...] = (EXPLICIT_LE, IMPLICIT_LE)
# One context each: a context accepts a single transfer syntax, and an instance
# stored in a syntax with no accepted context would be transcoded by the peer.
COMPRESSED: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8 bit)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    DEFLATED_LE,
)

# Proposed when the peer cannot tell us which SOP classes a retrieve holds.
COMMON_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray, for processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography, for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography, for processing
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy
)

ROOM = MAX_CONTEXTS - 1  # storage contexts next to the C-GET's own

# The other non-retired storage SOP classes of PS3.6 (not DICOS or DICONDE), by UID.
OTHER_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR Spectroscopy
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
    "1.2.840.10008.5.1.4.1.1.6.3",  # Photoacoustic Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.1.4",  # General 32-bit ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.2.1",  # Hemodynamic Waveform
    "1.2.840.10008.5.1.4.1.1.9.3.1",  # Cardiac Electrophysiology Waveform
    "1.2.840.10008.5.1.4.1.1.9.4.1",  # Basic Voice Audio Waveform
    "1.2.840.10008.5.1.4.1.1.9.4.2",  # General Audio Waveform
    "1.2.840.10008.5.1.4.1.1.9.5.1",  # Arterial Pulse Waveform
    "1.2.840.10008.5.1.4.1.1.9.6.1",  # Respiratory Waveform
    "1.2.840.10008.5.1.4.1.1.9.6.2",  # Multi-channel Respiratory Waveform
    "1.2.840.10008.5.1.4.1.1.9.7.1",  # Routine Scalp Electroencephalogram Waveform
    "1.2.840.10008.5.1.4.1.1.9.7.2",  # Electromyogram Waveform
    "1.2.840.10008.5.1.4.1.1.9.7.3",  # Electrooculogram Waveform
    "1.2.840.10008.5.1.4.1.1.9.7.4",  # Sleep Electroencephalogram Waveform
    "1.2.840.10008.5.1.4.1.1.9.8.1",  # Body Position Waveform
    "1.2.840.10008.5.1.4.1.1.11.2",  # Color Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.11.3",  # Pseudo-Color Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.11.4",  # Blending Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.11.5",  # XA/XRF Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.11.6",  # Grayscale Planar MPR Volumetric Presentation State
    "1.2.840.10008.5.1.4.1.1.11.7",  # Compositing Planar MPR Volumetric Presentation State
    "1.2.840.10008.5.1.4.1.1.11.8",  # Advanced Blending Presentation State
    "1.2.840.10008.5.1.4.1.1.11.9",  # Volume Rendering Volumetric Presentation State
    "1.2.840.10008.5.1.4.1.1.11.10",  # Segmented Volume Rendering Volumetric Presentation State
    "1.2.840.10008.5.1.4.1.1.11.11",  # Multiple Volume Rendering Volumetric Presentation State
    "1.2.840.10008.5.1.4.1.1.11.12",  # Variable Modality LUT Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF Image
    "1.2.840.10008.5.1.4.1.1.13.1.1",  # X-Ray 3D Angiographic Image
    "1.2.840.10008.5.1.4.1.1.13.1.2",  # X-Ray 3D Craniofacial Image
    "1.2.840.10008.5.1.4.1.1.13.1.4",  # Breast Projection X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.13.1.5",  # Breast Projection X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.14.1",  # Intravascular OCT Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.14.2",  # Intravascular OCT Image - For Processing
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.66.1",  # Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.2",  # Spatial Fiducials
    "1.2.840.10008.5.1.4.1.1.66.3",  # Deformable Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.5",  # Surface Segmentation
    "1.2.840.10008.5.1.4.1.1.66.6",  # Tractography Results
    "1.2.840.10008.5.1.4.1.1.67",  # Real World Value Mapping
    "1.2.840.10008.5.1.4.1.1.68.1",  # Surface Scan Mesh
    "1.2.840.10008.5.1.4.1.1.68.2",  # Surface Scan Point Cloud
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # Video Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.3",  # VL Slide-Coordinates Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.2",  # Ophthalmic Photography 16 Bit Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.3",  # Stereometric Relationship
    "1.2.840.10008.5.1.4.1.1.77.1.5.4",  # Ophthalmic Tomography Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.5",  # Wide Field Ophthalmic Photography Stereographic
    "1.2.840.10008.5.1.4.1.1.77.1.5.6",  # Wide Field Ophthalmic Photography 3D Coordinates Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.7",  # Ophthalmic OCT En Face Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.8",  # Ophthalmic OCT B-scan Volume Analysis
    "1.2.840.10008.5.1.4.1.1.77.1.7",  # Dermoscopic Photography Image
    "1.2.840.10008.5.1.4.1.1.77.1.8",  # Confocal Microscopy Image
    "1.2.840.10008.5.1.4.1.1.77.1.9",  # Confocal Microscopy Tiled Pyramidal Image
    "1.2.840.10008.5.1.4.1.1.78.1",  # Lensometry Measurements
    "1.2.840.10008.5.1.4.1.1.78.2",  # Autorefraction Measurements
    "1.2.840.10008.5.1.4.1.1.78.3",  # Keratometry Measurements
    "1.2.840.10008.5.1.4.1.1.78.4",  # Subjective Refraction Measurements
    "1.2.840.10008.5.1.4.1.1.78.5",  # Visual Acuity Measurements
    "1.2.840.10008.5.1.4.1.1.78.6",  # Spectacle Prescription Report
    "1.2.840.10008.5.1.4.1.1.78.7",  # Ophthalmic Axial Measurements
    "1.2.840.10008.5.1.4.1.1.78.8",  # Intraocular Lens Calculations
    "1.2.840.10008.5.1.4.1.1.79.1",  # Macular Grid Thickness and Volume Report
    "1.2.840.10008.5.1.4.1.1.80.1",  # Ophthalmic Visual Field Static Perimetry Measurements
    "1.2.840.10008.5.1.4.1.1.81.1",  # Ophthalmic Thickness Map
    "1.2.840.10008.5.1.4.1.1.82.1",  # Corneal Topography Map
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
    "1.2.840.10008.5.1.4.1.1.88.40",  # Procedure Log
    "1.2.840.10008.5.1.4.1.1.88.50",  # Mammography CAD SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.88.65",  # Chest CAD SR
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.68",  # Radiopharmaceutical Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.69",  # Colon CAD SR
    "1.2.840.10008.5.1.4.1.1.88.70",  # Implantation Plan SR
    "1.2.840.10008.5.1.4.1.1.88.71",  # Acquisition Context SR
    "1.2.840.10008.5.1.4.1.1.88.72",  # Simplified Adult Echo SR
    "1.2.840.10008.5.1.4.1.1.88.73",  # Patient Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.74",  # Planned Imaging Agent Administration SR
    "1.2.840.10008.5.1.4.1.1.88.75",  # Performed Imaging Agent Administration SR
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.77",  # Waveform Annotation SR
    "1.2.840.10008.5.1.4.1.1.90.1",  # Content Assessment Results
    "1.2.840.10008.5.1.4.1.1.91.1",  # Microscopy Bulk Simple Annotations
    "1.2.840.10008.5.1.4.1.1.104.2",  # Encapsulated CDA
    "1.2.840.10008.5.1.4.1.1.104.3",  # Encapsulated STL
    "1.2.840.10008.5.1.4.1.1.104.4",  # Encapsulated OBJ
    "1.2.840.10008.5.1.4.1.1.104.5",  # Encapsulated MTL
    "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.131",  # Basic Structured Display
    "1.2.840.10008.5.1.4.1.1.200.1",  # CT Defined Procedure Protocol
    "1.2.840.10008.5.1.4.1.1.200.2",  # CT Performed Procedure Protocol
    "1.2.840.10008.5.1.4.1.1.200.3",  # Protocol Approval
    "1.2.840.10008.5.1.4.1.1.200.7",  # XA Defined Procedure Protocol
    "1.2.840.10008.5.1.4.1.1.200.8",  # XA Performed Procedure Protocol
    "1.2.840.10008.5.1.4.1.1.201.1",  # Inventory
    "1.2.840.10008.5.1.4.1.1.481.4",  # RT Beams Treatment Record
    "1.2.840.10008.5.1.4.1.1.481.6",  # RT Brachy Treatment Record
    "1.2.840.10008.5.1.4.1.1.481.7",  # RT Treatment Summary Record
    "1.2.840.10008.5.1.4.1.1.481.8",  # RT Ion Plan
    "1.2.840.10008.5.1.4.1.1.481.9",  # RT Ion Beams Treatment Record
    "1.2.840.10008.5.1.4.1.1.481.10",  # RT Physician Intent
    "1.2.840.10008.5.1.4.1.1.481.11",  # RT Segment Annotation
    "1.2.840.10008.5.1.4.1.1.481.12",  # RT Radiation Set
    "1.2.840.10008.5.1.4.1.1.481.13",  # C-Arm Photon-Electron Radiation
    "1.2.840.10008.5.1.4.1.1.481.14",  # Tomotherapeutic Radiation
    "1.2.840.10008.5.1.4.1.1.481.15",  # Robotic-Arm Radiation
    "1.2.840.10008.5.1.4.1.1.481.16",  # RT Radiation Record Set
    "1.2.840.10008.5.1.4.1.1.481.17",  # RT Radiation Salvage Record
    "1.2.840.10008.5.1.4.1.1.481.18",  # Tomotherapeutic Radiation Record
    "1.2.840.10008.5.1.4.1.1.481.19",  # C-Arm Photon-Electron Radiation Record
    "1.2.840.10008.5.1.4.1.1.481.20",  # Robotic Radiation Record
    "1.2.840.10008.5.1.4.1.1.481.21",  # RT Radiation Set Delivery Instruction
    "1.2.840.10008.5.1.4.1.1.481.22",  # RT Treatment Preparation
    "1.2.840.10008.5.1.4.1.1.481.23",  # Enhanced RT Image
    "1.2.840.10008.5.1.4.1.1.481.24",  # Enhanced Continuous RT Image
    "1.2.840.10008.5.1.4.1.1.481.25",  # RT Patient Position Acquisition Instruction
)
ALL_STORAGE_CLASSES = COMMON_STORAGE_CLASSES + OTHER_STORAGE_CLASSES


def storage_contexts(
    sop_classes: Iterable[str], *, compressed: bool = True
) -> list[ContextRequest]:
    """Contexts with the SCP role for each SOP class: uncompressed, then each compressed."""
    syntax_groups: Sequence[tuple[str, ...]] = [UNCOMPRESSED]
    if compressed:
        syntax_groups = [UNCOMPRESSED, *((ts,) for ts in COMPRESSED)]
    return [
        ContextRequest(sop_class, group, scp_role=True)
        for sop_class in dict.fromkeys(sop_classes)
        for group in syntax_groups
    ]


def contexts_per_association(room: int, compressed: bool = True) -> int:
    """How many SOP classes fit in ``room`` contexts with the chosen syntax groups."""
    per_class = 1 + (len(COMPRESSED) if compressed else 0)
    return max(room // per_class, 1)


@functools.cache
def unknown_class_packs() -> tuple[tuple[ContextRequest, ...], ...]:
    """Contexts for instances of unknown classes, in packs tried in order (see above)."""
    contexts = [
        *storage_contexts(ALL_STORAGE_CLASSES, compressed=False),
        *(
            ContextRequest(sop_class, (syntax,), scp_role=True)
            for sop_class in COMMON_STORAGE_CLASSES
            for syntax in COMPRESSED
        ),
    ]
    return tuple(tuple(contexts[i : i + ROOM]) for i in range(0, len(contexts), ROOM))

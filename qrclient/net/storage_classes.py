"""Storage SOP classes and transfer syntaxes to propose when receiving instances.

C-GET delivers instances on our own association, so we must propose a presentation
context (with the SCP role) for every SOP class that may arrive, and for the transfer
syntaxes we are willing to store as they are, so that the peer does not transcode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from qrclient.net.presentation import ContextRequest
from qrclient.net.walk import DEFLATED_LE, EXPLICIT_LE, IMPLICIT_LE

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

MAX_CONTEXTS = 128


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

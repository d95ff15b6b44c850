"""UIDs and limits of the DICOM standard the network core uses, defined once.

Copied from PS3.5, PS3.6 and PS3.7 rather than taken from pydicom, whose import costs
a command's start-up; tests/test_tables_pinned.py checks each against pydicom. The
query/retrieve SOP classes live with the information models they belong to.
"""

from __future__ import annotations

# Transfer syntaxes (PS3.5 10 and annex A).
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"  # retired, still read
DEFLATED_LE = "1.2.840.10008.1.2.1.99"

# SOP classes (PS3.4, PS3.6 annex A).
VERIFICATION = "1.2.840.10008.1.1"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
STORAGE_ROOT = "1.2.840.10008.5.1.4.1.1."  # every storage SOP class starts so
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR: an index of files, not an instance

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # the DICOM application context (PS3.7 A)
# Presentation contexts one association may hold: IDs are the odd numbers 1 to 255.
MAX_CONTEXTS = 128

# Who we are, in every A-ASSOCIATE and in the file meta of what we store.
IMPLEMENTATION_CLASS_UID = "2.25.149827993095918130059247462892582749136"
IMPLEMENTATION_VERSION_NAME = "QRCLIENT_0_1"

"""Data sets on the wire: encoded and decoded in the transfer syntax of their context."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from qrclient.net.errors import ProtocolError


def encode_dataset(dataset: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``dataset`` for a context that accepted ``transfer_syntax``."""
    uid = UID(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = uid.is_little_endian
    buffer.is_implicit_VR = uid.is_implicit_VR
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def decode_dataset(data: bytes, transfer_syntax: str) -> Dataset:
    """Decode a received identifier; a data set that does not parse is a protocol error."""
    uid = UID(transfer_syntax)
    try:
        dataset = read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
        # Force parsing now so a broken data set fails here, not in whoever reads it.
        for _ in dataset:
            pass
    except Exception as exc:
        raise ProtocolError(
            f"the peer sent a data set that does not decode ({exc})",
            "the peer's DICOM stack is broken; a trace (--trace) helps its vendor",
        ) from exc
    return dataset

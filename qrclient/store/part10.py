"""DICOM Part-10 files: the header we write before a received data set, and reading
a stored file's attributes back without decoding it.

The file meta group is encoded by hand: it is eight short elements, and building it
through pydicom for every received instance would cost more than writing the data.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from dataclasses import dataclass

from qrclient.net.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from qrclient.net.walk import Buffer, scan_dataset, scan_values

PREAMBLE = bytes(128) + b"DICM"
_GROUP_LENGTH_END = len(PREAMBLE) + 12  # (0002,0000) UL: tag, VR, 2-byte length, value
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHL")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_AE_CHARS = re.compile(r"[ -\[\]-~]*")  # printable ASCII without backslash

MEDIA_SOP_CLASS, MEDIA_SOP_INSTANCE = 0x00020002, 0x00020003
TRANSFER_SYNTAX, SOURCE_AE = 0x00020010, 0x00020016
_META_WANTED = frozenset((MEDIA_SOP_CLASS, MEDIA_SOP_INSTANCE, TRANSFER_SYNTAX, SOURCE_AE))


def clean_uid(value: str, what: str) -> str:
    """``value`` without padding; ValueError unless it is a UID (digits and dots)."""
    uid = value.strip(" \x00")
    if len(uid) > 64 or not _UID.fullmatch(uid):
        raise ValueError(f"{what} {value!r} is not a UID (digits and dots, at most 64)")
    return uid


# For the SOP class and transfer syntax of each received instance: a handful of values
# repeated thousands of times (a ValueError is not remembered).
clean_repeated_uid = functools.lru_cache(maxsize=256)(clean_uid)


def clean_announced(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
) -> tuple[str, str, str, str]:
    """What a C-STORE announced, cleaned for the file meta: the SOP Class and Instance
    UIDs, transfer syntax, source AE title. ValueError if a UID is not one."""
    return (
        clean_repeated_uid(sop_class_uid, "SOP Class UID"),
        clean_uid(sop_instance_uid, "SOP Instance UID"),
        clean_repeated_uid(transfer_syntax, "transfer syntax"),
        clean_ae_title(source),
    )


def clean_ae_title(value: str) -> str:
    """``value`` stripped if it is a valid AE title, else ``""`` (it is then left out)."""
    title = value.strip(" ")
    return title if 0 < len(title) <= 16 and _AE_CHARS.fullmatch(title) else ""


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
) -> bytes:
    """Preamble, ``DICM`` and the file meta group (arguments already cleaned)."""
    before, after = _meta_around_instance(sop_class_uid, transfer_syntax, source)
    instance = _element(0x0003, b"UI", sop_instance_uid, b"\x00")
    length = len(before) + len(instance) + len(after)
    # (0002,0000) UL and its value fit the long form's layout: tag, VR, 4, the length.
    group_length = _LONG.pack(2, 0x0000, b"UL", 4, length)
    return b"".join((PREAMBLE, group_length, before, instance, after))


@functools.lru_cache(maxsize=64)
def _meta_around_instance(
    sop_class_uid: str, transfer_syntax: str, source: str
) -> tuple[bytes, bytes]:
    """The meta elements before and after the instance UID: within a retrieve only
    the instance changes, so they are encoded once."""
    before = b"".join(
        (
            _LONG.pack(2, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _element(0x0002, b"UI", sop_class_uid, b"\x00"),
        )
    )
    after = b"".join(
        (
            _element(0x0010, b"UI", transfer_syntax, b"\x00"),
            _element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID, b"\x00"),
            _element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME, b" "),
            _element(0x0016, b"AE", source, b" ") if source else b"",
        )
    )
    return before, after


def _element(element: int, vr: bytes, text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    value += pad * (len(value) % 2)
    return _SHORT.pack(2, element, vr, len(value)) + value


@dataclass(frozen=True, slots=True)
class Header:
    """What a stored file says about itself."""

    transfer_syntax: str
    media_sop_class_uid: str
    media_sop_instance_uid: str
    source: str
    values: dict[int, bytes]  # raw top-level values of the tags asked for


def read_dataset_values(
    file: int, data_offset: int, transfer_syntax: str, wanted: frozenset[int]
) -> dict[int, bytes]:
    """Check the data set after ``data_offset`` in the open file ``file`` (a descriptor
    open for reading) is complete; return the ``wanted`` values.

    Raises ValueError (or OSError) for a data set that is truncated or does not parse.
    """
    if os.fstat(file).st_size <= data_offset:
        raise ValueError("the data set is empty")
    with mmap.mmap(file, 0, access=mmap.ACCESS_READ) as mapped:
        return dataset_values(mapped, data_offset, transfer_syntax, wanted)


def dataset_values(
    data: Buffer, data_offset: int, transfer_syntax: str, wanted: frozenset[int]
) -> dict[int, bytes]:
    """As :func:`read_dataset_values`, for a whole file already in memory (or mapped)."""
    if len(data) <= data_offset:
        raise ValueError("the data set is empty")
    return scan_values(data, data_offset, transfer_syntax, wanted)


def read_meta(file: int) -> tuple[dict[int, str], int]:
    """A Part-10 file's meta elements as text, and where its data set starts; ValueError
    if it is not one. ``file`` is a descriptor open for reading."""
    with open(file, "rb", closefd=False) as reader:
        reader.seek(0)
        start = reader.read(_GROUP_LENGTH_END)
        if len(start) < _GROUP_LENGTH_END or not start.startswith(PREAMBLE):
            raise ValueError("not a DICOM Part-10 file")
        group, element, vr, value_length = _SHORT.unpack_from(start, len(PREAMBLE))
        if (group, element, vr, value_length) != (2, 0, b"UL", 4):
            raise ValueError("the file meta group does not start with its group length")
        length = struct.unpack_from("<L", start, _GROUP_LENGTH_END - 4)[0]
        meta_bytes = reader.read(length)
    if len(meta_bytes) < length:
        raise ValueError("the file meta group is truncated")
    meta = scan_dataset(
        meta_bytes, 0, len(meta_bytes), explicit=True, little=True, wanted=_META_WANTED
    )
    text = {tag: value.decode("ascii", "replace").strip(" \x00") for tag, value in meta.items()}
    return text, _GROUP_LENGTH_END + length


def read_header(file: int, wanted: frozenset[int]) -> Header:
    """Read a Part-10 file's meta group and check its data set; ValueError if not one.
    ``file`` is a descriptor open for reading."""
    text, data_offset = read_meta(file)
    transfer_syntax = clean_uid(text.get(TRANSFER_SYNTAX, ""), "TransferSyntaxUID")
    values = read_dataset_values(file, data_offset, transfer_syntax, wanted)
    return Header(
        transfer_syntax,
        text.get(MEDIA_SOP_CLASS, ""),
        text.get(MEDIA_SOP_INSTANCE, ""),
        clean_ae_title(text.get(SOURCE_AE, "")),
        values,
    )

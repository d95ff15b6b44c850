"""Identifiers on the wire: structure checked up front, values decoded lazily."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from qrclient.net import ProtocolError
from qrclient.net.datasets import decode_dataset, encode_dataset

EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def sample() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "山田^太郎"
    ds.PatientID = "PAT006"
    item = Dataset()
    item.CodeValue = "XYZ"
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.StudyDate = "20240101"
    return ds


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT])
def test_round_trip_keeps_values_and_sequences(syntax: str) -> None:
    ds = decode_dataset(encode_dataset(sample(), syntax), syntax)
    assert str(ds.PatientName) == "山田^太郎"
    assert ds.ProcedureCodeSequence[0].CodeValue == "XYZ"
    assert len(ds.ProcedureCodeSequence) == 2
    assert ds.StudyDate == "20240101"


def pieces(syntax: str) -> list[bytes]:
    """The sample's top-level elements encoded one by one (ASCII, so no charset needed)."""
    out = []
    for tag in sample().keys():  # noqa: SIM118 - tags, in order
        if tag == 0x00080005:
            continue
        single = Dataset()
        single[tag] = sample()[tag]
        if tag == 0x00100010:
            single.PatientName = "YAMADA^TARO"
        out.append(encode_dataset(single, syntax))
    return out


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT])
@given(cut=st.integers(min_value=1, max_value=1000))
def test_a_cut_inside_an_element_is_a_protocol_error(syntax: str, cut: int) -> None:
    parts = pieces(syntax)
    data = b"".join(parts)
    cut %= len(data)
    # Cutting exactly after the n-th top-level element leaves a valid, shorter data set.
    boundaries = {len(b"".join(parts[:n])): n for n in range(len(parts) + 1)}
    if cut in boundaries:
        assert len(decode_dataset(data[:cut], syntax)) == boundaries[cut]
    else:
        with pytest.raises(ProtocolError, match="does not decode"):
            decode_dataset(data[:cut], syntax)


def test_defined_length_sequence_in_implicit_vr_decodes() -> None:
    inner = struct.pack("<HHL", 0x0008, 0x0100, 2) + b"AB"
    item = struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner
    sequence = struct.pack("<HHL", 0x0008, 0x1032, len(item)) + item
    patient = struct.pack("<HHL", 0x0010, 0x0020, 4) + b"P001"
    ds = decode_dataset(sequence + patient, IMPLICIT)
    assert ds.ProcedureCodeSequence[0].CodeValue == "AB"
    assert ds.PatientID == "P001"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (struct.pack("<HHL", 0x0010, 0x0020, 10) + b"P001", "claims 10 bytes"),
        (struct.pack("<HHL", 0x0010, 0x0020, 4) + b"P001" + b"\x10\x00", "cut short"),
        (
            struct.pack("<HHL", 0x0008, 0x1032, 0xFFFFFFFF) + b"\x00" * 8,
            "where an item was expected",
        ),
        (struct.pack("<HHL", 0xFFFE, 0xE0DD, 0), r"unexpected \(FFFE,E0DD\)"),
    ],
)
def test_malformed_identifiers_name_the_problem(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        decode_dataset(data, IMPLICIT)

"""DICOM JSON (PS3.18 annex F) straight from raw elements, pydicom's rules, ~10x faster.

pydicom's ``Dataset.to_json_dict`` converts every element to a Python value first; for
the thousands of small identifiers a C-FIND returns, that is most of the run time. Here
the common VRs in the common character sets (ASCII, ISO_IR 100, ISO_IR 192) are turned
into JSON directly from their raw bytes; anything else falls back to pydicom, element by
element, so the output always equals pydicom's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

JsonDict = dict[str, dict[str, object]]

_ENCODINGS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
_SPLIT_TEXT = frozenset(("AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"))
_WHOLE_TEXT = frozenset(("LT", "ST", "UT", "UR"))
_BINARY = {
    "US": struct.Struct("<H"),
    "SS": struct.Struct("<h"),
    "UL": struct.Struct("<L"),
    "SL": struct.Struct("<l"),
    "FL": struct.Struct("<f"),
    "FD": struct.Struct("<d"),
}
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def to_json_dict(dataset: Dataset) -> JsonDict:
    """The data set in the DICOM JSON model, equal to ``dataset.to_json_dict()``."""
    encoding = _encoding(dataset)
    out: JsonDict = {}
    for tag in dataset.keys():  # noqa: SIM118 - iterating the Dataset converts every value
        element = dataset.get_item(tag)
        converted = None
        if encoding and isinstance(element, RawDataElement):
            converted = _raw_to_json(element, encoding)
        if converted is None:
            converted = _fallback(dataset, tag)
        out[f"{tag:08X}"] = converted
    return out


def _encoding(dataset: Dataset) -> str | None:
    element = dataset.get_item(0x00080005)
    if element is None:
        return "ascii"
    if isinstance(element, RawDataElement):
        raw = element.value or b""
        return _ENCODINGS.get(raw.decode("ascii", "replace").strip(" \0"))
    value = element.value
    return _ENCODINGS.get(value if isinstance(value, str) else "")


def _fallback(dataset: Dataset, tag: int) -> dict[str, object]:
    element = dataset[tag]
    if element.VR == "SQ":
        items = [to_json_dict(item) for item in element.value]
        return {"vr": "SQ", "Value": items}
    return element.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1024)


def _raw_to_json(element: RawDataElement, encoding: str) -> dict[str, object] | None:
    """JSON for one raw element, or None where pydicom must decide."""
    vr = element.VR
    if vr is None:
        try:
            vr = dictionary_VR(element.tag)
        except KeyError:
            return None
    raw = element.value
    if raw is None or not isinstance(raw, bytes):
        return None
    if not raw:
        return {"vr": vr} if vr != "SQ" else None
    try:
        convert = _CONVERTERS.get(vr)
        if convert is None:
            return None
        values = convert(raw, encoding)
    except (UnicodeDecodeError, ValueError, struct.error):
        return None
    if values is None:
        return None
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _text(raw: bytes, encoding: str) -> str:
    return raw.decode(encoding).rstrip(" \0")


def _split_text(raw: bytes, encoding: str) -> list[object]:
    text = _text(raw, encoding)
    return list(text.split("\\")) if text else []


def _whole_text(raw: bytes, encoding: str) -> list[object]:
    text = _text(raw, encoding)
    return [text] if text else []


def _person_names(raw: bytes, encoding: str) -> list[object]:
    text = _text(raw, encoding)
    if not text:
        return []
    names: list[object] = []
    for name in text.split("\\"):
        # As pydicom: groups split on '=', trailing empty groups dropped, Alphabetic
        # always present. An empty name in a list becomes {}: pydicom 3.0 raises
        # IndexError there, so there is no reference to follow.
        groups = name.split("=")
        while groups and not groups[-1]:
            groups.pop()
        names.append(dict(zip(_PN_GROUPS, groups, strict=False)))
    return names


def _numbers(convert: Callable[[str], object]) -> Callable[[bytes, str], list[object] | None]:
    """IS and DS: numbers as text; an empty value among several is pydicom's to judge."""

    def parse(raw: bytes, encoding: str) -> list[object] | None:
        text = raw.decode("ascii").strip(" \0")
        if not text:
            return []
        texts = text.split("\\")
        if any(not t.strip() for t in texts):
            return None
        return [convert(t) for t in texts]

    return parse


def _binary(vr: str) -> Callable[[bytes, str], list[object] | None]:
    item = _BINARY[vr]

    def convert(raw: bytes, encoding: str) -> list[object] | None:
        if len(raw) % item.size:
            return None
        return [v[0] for v in item.iter_unpack(raw)]

    return convert


def _tags(raw: bytes, encoding: str) -> list[object] | None:
    if len(raw) % 4:
        return None
    return [f"{g:04X}{e:04X}" for g, e in struct.iter_unpack("<HH", raw)]


_CONVERTERS: dict[str, Callable[[bytes, str], list[object] | None]] = {
    **{vr: _split_text for vr in _SPLIT_TEXT},
    **{vr: _whole_text for vr in _WHOLE_TEXT},
    "PN": _person_names,
    "IS": _numbers(int),
    "DS": _numbers(float),
    "AT": _tags,
    **{vr: _binary(vr) for vr in _BINARY},
}

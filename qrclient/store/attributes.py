"""The few attributes the store reads from a data set, decoded as text.

Values arrive as raw bytes from the structural walk; only these are decoded, with
the data set's Specific Character Set, and never through a full pydicom Dataset.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_dict

SPECIFIC_CHARACTER_SET = 0x00080005

# What the index keeps, by keyword.
INDEX_KEYWORDS = (
    "PatientID",
    "PatientName",
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SOPInstanceUID",
    "SOPClassUID",
)

# Value representations whose values are text, so they can name a directory.
TEXT_VRS = frozenset(
    [
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    ]
)
_DELIMITERS = {0x5C, 0x5E, 0x3D, 0x0D, 0x0A, 0x09, 0x0C}  # where ISO 2022 escapes reset
# The common repertoires, decoded by Python directly (ASCII is read leniently).
_FAST_CODECS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}


def tag_for(keyword: str) -> int | None:
    """The tag of a top-level text attribute's keyword, else None."""
    tag = keyword_dict.get(keyword)
    if tag is None or tag >> 16 == 0x0002:  # file meta is not in the data set
        return None
    try:
        return tag if dictionary_VR(tag) in TEXT_VRS else None
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class Wanted:
    """Tags to collect from a data set, and the keywords they answer."""

    tags: frozenset[int]
    keywords: dict[str, int]

    @classmethod
    def of(cls, keywords: Iterable[str]) -> Wanted:
        by_keyword: dict[str, int] = {}
        for keyword in (*INDEX_KEYWORDS, *keywords):
            tag = tag_for(keyword)
            if tag is None:
                raise ValueError(f"{keyword} is not a top-level text attribute")
            by_keyword[keyword] = tag
        return cls(frozenset((*by_keyword.values(), SPECIFIC_CHARACTER_SET)), by_keyword)

    def decode(self, raw: Mapping[int, bytes]) -> dict[str, str]:
        """Keyword to text (``""`` when absent) for every wanted keyword."""
        charset = raw.get(SPECIFIC_CHARACTER_SET, b"")
        return {kw: _decoded(raw.get(tag, b""), charset) for kw, tag in self.keywords.items()}


@functools.lru_cache(maxsize=4096)
def _decoded(value: bytes, charset: bytes) -> str:
    """``decode_text``, remembered: a study's instances repeat most of their values."""
    terms = [term.strip(b" \x00").decode("ascii", "replace") for term in charset.split(b"\\")]
    return decode_text(value, terms)


def decode_text(value: bytes, charset: list[str]) -> str:
    """One value as text without padding (multiple values stay ``\\``-separated)."""
    if not value:
        return ""
    codec = _FAST_CODECS.get(charset[0]) if len(charset) == 1 else None
    if codec is not None:
        text = value.decode(codec, "replace")
    else:  # ISO 2022 and other repertoires: pydicom knows them all
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a bad repertoire is not worth a warning
                text = decode_bytes(value, convert_encodings(charset), _DELIMITERS)
        except Exception:
            text = value.decode("latin-1")
    return text.strip(" \x00")

"""The few attributes the store reads from a data set, decoded as text.

Values arrive as raw bytes from the structural walk; only these are decoded, with
the data set's Specific Character Set, and never through a full pydicom Dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qrclient.net.dictionary import tag_of, vr_of
from qrclient.net.text import SPECIFIC_CHARACTER_SET, decode_value

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


def tag_for(keyword: str) -> int | None:
    """The tag of a top-level text attribute's keyword, else None."""
    tag = tag_of(keyword)
    if tag is None or tag >> 16 == 0x0002:  # file meta is not in the data set
        return None
    return tag if vr_of(tag) in TEXT_VRS else None


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
        return {kw: decode_value(raw.get(tag, b""), charset) for kw, tag in self.keywords.items()}

"""Text values as received: decoded with the data set's Specific Character Set.

The common repertoires (the default, ISO_IR 100, UTF-8) are decoded by Python
directly; ISO 2022 code extensions and the rest by pydicom, imported only then.
"""

from __future__ import annotations

import functools
import warnings

SPECIFIC_CHARACTER_SET = 0x00080005
_DELIMITERS = {0x5C, 0x5E, 0x3D, 0x0D, 0x0A, 0x09, 0x0C}  # where ISO 2022 escapes reset
# The common repertoires, decoded by Python directly (ASCII is read leniently).
_FAST_CODECS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}


def charset_terms(raw: bytes) -> list[str]:
    """The defined terms of a raw Specific Character Set value."""
    return [term.strip(b" \x00").decode("ascii", "replace") for term in raw.split(b"\\")]


@functools.lru_cache(maxsize=4096)
def decode_value(value: bytes, charset: bytes) -> str:
    """``decode_text`` with the raw charset value, remembered: values repeat a lot."""
    return decode_text(value, charset_terms(charset))


def decode_text(value: bytes, charset: list[str]) -> str:
    """One value as text without padding (multiple values stay ``\\``-separated)."""
    if not value:
        return ""
    codec = _FAST_CODECS.get(charset[0]) if len(charset) == 1 else None
    if codec is not None:
        text = value.decode(codec, "replace")
    else:  # ISO 2022 and other repertoires: pydicom knows them all
        from pydicom.charset import convert_encodings, decode_bytes  # here: slow to import

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a bad repertoire is not worth a warning
                text = decode_bytes(value, convert_encodings(charset), _DELIMITERS)
        except Exception:
            text = value.decode("latin-1")
    return text.strip(" \x00")

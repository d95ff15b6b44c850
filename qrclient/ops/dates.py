"""Dates as people type them, read as DICOM date matching values (PS3.4 C.2.2.2.5).

``2020`` is the whole year, ``2020-03`` the whole month, ``2020-03-14``, ``2020/03/14``
and ``20200314`` one day; a range joins two of those with ``-`` (``2020-01-01-2020-06-30``,
``2019-2021``), and either side may be left open (``2020-``, ``-2020-06``); ``today`` is
today. The command line and the UI's query form read dates with the same code.
"""

from __future__ import annotations

import calendar
import datetime
import re

_DIGITS = re.compile(r"\d{4}(\d{2}(\d{2})?)?")
_SEPARATED = re.compile(r"(\d{4})[-/.](\d{1,2})(?:[-/.](\d{1,2}))?")
EXAMPLES = "2020, 2020-03, 2020-03-14, 20200314, or a range such as 2020-01-01-2020-06-30"


class DateError(ValueError):
    """Not a date or range qrclient can read; the message says what is expected."""


def period(text: str) -> tuple[str, str] | None:
    """The first and last day (YYYYMMDD) of a year, month or day typed as above."""
    text = text.strip()
    if _DIGITS.fullmatch(text):
        year, month, day = text[:4], text[4:6], text[6:8]
    else:
        match = _SEPARATED.fullmatch(text)
        if match is None:
            return None
        year, month, day = match[1], match[2], match[3] or ""
    try:
        first = datetime.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    if day:
        last = first
    elif month:
        last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    else:
        last = first.replace(month=12, day=31)
    return f"{first:%Y%m%d}", f"{last:%Y%m%d}"


def date_bound(text: str, *, end: bool = False) -> str:
    """One end of a range (``end``: its last day): ``""`` for an empty text."""
    if not text.strip():
        return ""
    found = period(text)
    if found is None:
        raise DateError(f"{text.strip()!r} is not a date: expected {EXAMPLES}")
    return found[1] if end else found[0]


def date_range(text: str) -> str:
    """A DICOM date matching value (``YYYYMMDD`` or a range) for what was typed;
    ``today`` is today's date."""
    text = text.strip()
    if text.lower() == "today":
        return f"{datetime.date.today():%Y%m%d}"
    found = period(text)
    if found is not None:
        first, last = found
        return first if first == last else f"{first}-{last}"
    # A range: the one "-" with a date (or nothing) on either side. Dates have dashes of
    # their own, so every dash is tried; more than one way to read it is refused.
    readings = set()
    for index, character in enumerate(text):
        if character != "-":
            continue
        before, after = text[:index].strip(), text[index + 1 :].strip()
        if not (before or after):
            continue
        if (not before or period(before)) and (not after or period(after)):
            readings.add((date_bound(before), date_bound(after, end=True)))
    if len(readings) != 1:
        raise DateError(f"{text!r} is not a date or date range: expected {EXAMPLES}")
    start, end = readings.pop()
    if start and end and start > end:
        raise DateError(f"{text!r}: the range ends before it starts")
    return f"{start}-{end}"

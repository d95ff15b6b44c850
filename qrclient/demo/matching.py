"""C-FIND attribute matching (PS3.4 C.2.2.2), as the demo PACS applies it.

Universal matching (empty value), single values, ``*`` and ``?`` wildcards on text,
ranges on dates and times, ``\\``-separated lists (UIDs included). Person names match
case-insensitively, as Orthanc does by default, so a newcomer's ``doe*`` finds DOE^JANE.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from qrclient.ops.query import WILDCARD_VRS

_RANGE_VRS = frozenset({"DA", "TM", "DT"})

Value = str | int | Sequence[str]


def values_of(value: Value) -> list[str]:
    """A record's value as strings (multi-valued attributes have several)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, int):
        return [str(value)]
    return [str(v) for v in value]


def matches(query: str, vr: str, value: Value) -> bool:
    """Whether a record's ``value`` matches the query value ``query`` (of VR ``vr``)."""
    query = query.strip()
    if not query or query == "*":
        return True  # universal matching
    candidates = values_of(value)
    return any(_one(part.strip(), vr, candidates) for part in query.split("\\"))


def _one(query: str, vr: str, candidates: list[str]) -> bool:
    if vr in _RANGE_VRS and "-" in query:
        low, _, high = query.partition("-")
        return any(_in_range(_digits(c), _digits(low), _digits(high)) for c in candidates)
    if vr in _RANGE_VRS:
        return any(_digits(c) == _digits(query) for c in candidates if c)
    folded = vr == "PN"
    if vr in WILDCARD_VRS and ("*" in query or "?" in query):
        pattern = _wildcard(query.upper() if folded else query)
        return any(pattern.fullmatch(c.upper() if folded else c) for c in candidates)
    if folded:
        return any(c.upper() == query.upper() for c in candidates)
    if vr in ("IS", "DS", "US", "UL", "SS", "SL"):
        return any(_number(c) == _number(query) for c in candidates)
    return any(c.strip() == query for c in candidates)


@lru_cache(maxsize=256)
def _wildcard(query: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in query)
    return re.compile("".join(parts), re.DOTALL)


def _digits(text: str) -> str:
    """20240101 from 2024-01-01, 083000 from 08:30:00.123: comparable as strings."""
    return "".join(ch for ch in text.split(".")[0] if ch.isdigit())


def _in_range(value: str, low: str, high: str) -> bool:
    if not value:
        return False
    # Compare at the bound's precision: "-1000" includes 10:00:59 in TM's HHMM form.
    return (not low or value[: len(low)] >= low) and (not high or value[: len(high)] <= high)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

"""C-FIND attribute matching (PS3.4 C.2.2.2): the demo PACS's, and the check of answers.

Universal matching (empty value), single values, ``*`` and ``?`` wildcards on text,
ranges on dates and times, ``\\``-separated lists (UIDs included). Person names match
case-insensitively, as Orthanc does by default, so a newcomer's ``doe*`` finds DOE^JANE.

``lenient`` matching is the loosest any PACS may apply (every text case- and
accent-insensitively): a returned value that fails it shows the PACS ignored the key.
:class:`AnswerCheck` uses it on C-FIND matches, because matching on keys above the level
asked, or on optional keys, is optional: DCMTK's dcmqrscp ignores them silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from qrclient.net.text import SPECIFIC_CHARACTER_SET, decode_value
from qrclient.ops.query import WILDCARD_VRS, Key, Query

_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_NUMBER_VRS = frozenset({"IS", "DS", "US", "UL", "SS", "SL"})
# What a returned value can be checked in: text as sent (binary numbers are skipped).
# Not DT: its ranges may carry time zone offsets.
_CHECKED_VRS = WILDCARD_VRS | frozenset({"DA", "TM", "UI", "AS", "IS", "DS"})

Value = str | int | Sequence[str]


def values_of(value: Value) -> list[str]:
    """A record's value as strings (multi-valued attributes have several)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, int):
        return [str(value)]
    return [str(v) for v in value]


def matches(query: str, vr: str, value: Value, *, lenient: bool = False) -> bool:
    """Whether a record's ``value`` matches the query value ``query`` (of VR ``vr``)."""
    query = query.strip()
    if not query or query == "*":
        return True  # universal matching
    candidates = values_of(value)
    return any(_one(part.strip(), vr, candidates, lenient) for part in query.split("\\"))


def _one(query: str, vr: str, candidates: list[str], lenient: bool) -> bool:
    if vr in _RANGE_VRS and "-" in query:
        low, _, high = query.partition("-")
        return any(_in_range(_digits(c), _digits(low), _digits(high)) for c in candidates)
    if vr in _RANGE_VRS:
        return any(_digits(c) == _digits(query) for c in candidates if c)
    fold = _loose if lenient and vr in WILDCARD_VRS else str.upper if vr == "PN" else None
    if fold is not None:
        query, candidates = fold(query), [fold(c.strip()) for c in candidates]
    if lenient and vr == "PN":
        # Some PACSs match a name's start, or any of its component groups (alphabetic,
        # ideographic, phonetic): the loosest reading keeps them all.
        candidates = [group for c in candidates for group in (c, *c.split("="))]
        query = query if "*" in query or "?" in query else f"{query}*"
    if vr in WILDCARD_VRS and ("*" in query or "?" in query):
        pattern = _wildcard(query)
        return any(pattern.fullmatch(c) for c in candidates)
    if vr in _NUMBER_VRS:
        return any(_number(c) == _number(query) for c in candidates)
    return any(c.strip() == query for c in candidates)


def _loose(text: str) -> str:
    """Without case, accents or trailing empty name components: DOE^JOSÉ^ as doe^jose."""
    decomposed = unicodedata.normalize("NFKD", text.strip().rstrip("^= "))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


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


class AnswerCheck:
    """Checks each C-FIND match against the query's matching keys, as returned.

    A match whose returned value fails even lenient matching contradicts a key the
    peer ignored: it is not a match of the query. A matching key the peer did not return
    at all cannot be checked: that is only worth a warning. ``warn`` is called once per
    key and kind of finding. Keys whose meaning the peer may have widened are not checked:
    person names under fuzzy matching, and times when dates and times combine.
    """

    def __init__(
        self,
        query: Query,
        warn: Callable[[str], None],
        *,
        fuzzy: bool = False,
        combined_datetime: bool = False,
    ) -> None:
        self._warn = warn
        skipped = {"PN"} if fuzzy else set()
        if combined_datetime:
            skipped.add("TM")
        self.keys = [k for k in query.keys if _checkable(k) and k.vr not in skipped]
        self.tags = frozenset((*(k.tag for k in self.keys), SPECIFIC_CHARACTER_SET))
        self._warned: set[tuple[int, bool]] = set()

    def accepts(self, values: Mapping[int, bytes]) -> bool:
        """Whether a match with these returned values (tag -> raw bytes) may be kept."""
        charset = values.get(SPECIFIC_CHARACTER_SET, b"")
        for key in self.keys:
            raw = values.get(key.tag)
            if raw is None:
                self._once(
                    key,
                    False,
                    f"the peer did not return {key.name}, which the query "
                    "matches on: it may have ignored it (check the matches)",
                )
                continue
            text = decode_value(raw, charset)
            if text and not _may_match(key.value or "", key.vr, text):
                self._once(
                    key,
                    True,
                    f"the peer ignored {key.name}={key.value} (it returned "
                    "matches with other values): those matches are left out",
                )
                return False
        return True

    def _once(self, key: Key, dropped: bool, text: str) -> None:
        if (key.tag, dropped) not in self._warned:
            self._warned.add((key.tag, dropped))
            self._warn(text)


@lru_cache(maxsize=4096)
def _may_match(query: str, vr: str, text: str) -> bool:
    """Lenient matching of a returned value, remembered: values repeat match after match."""
    return matches(query, vr, text.split("\\"), lenient=True)


def _checkable(key: Key) -> bool:
    value = key.value or ""
    return bool(value.strip()) and value.strip() != "*" and key.vr in _CHECKED_VRS

"""A pseudonymised store says so: a record in its own folder, checked by every retrieve.

A store holding both pseudonymised and plain instances would defeat the point of
either: whoever is given it as de-identified would find patients in it. So the first
pseudonymised retrieve into a store (which must then be empty) writes this record,
and from then on a plain retrieve into it is refused, as is a pseudonymised one into
a store that already holds plain instances. There is no option to mix them: use
another store (``--out DIR``).

The record names the store (a random ID, which names its default key file), the
key's fingerprint (never the key) and how dates are treated, so a rerun with another
key or other dates is refused rather than giving the same patient two pseudonyms or
two date shifts. Checking it costs a plain retrieve one stat: this module imports
nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from qrclient.deid.errors import DeidError
from qrclient.store.tree import META_DIR

MARK_NAME = "pseudonymized.json"
_FORMAT = 1
_MAX_MARK = 4096  # bytes read at most
DEFAULT_DATE_SHIFT = 365  # days back at most
MAX_DATE_SHIFT = 36500


@dataclass(frozen=True, slots=True)
class Dates:
    """How dates are treated: kept, or moved back per patient by 1 to ``most`` days."""

    most: int = DEFAULT_DATE_SHIFT  # 0: kept as they are

    @property
    def kept(self) -> bool:
        return self.most == 0

    def describe(self) -> str:
        return "dates kept" if self.kept else f"dates shifted back 1 to {self.most} days"

    def option(self) -> str:
        return "--keep-dates" if self.kept else f"--date-shift {self.most}"


@dataclass(frozen=True, slots=True)
class StoreMark:
    store_id: str  # random; names the store's default key file
    key_fingerprint: str
    dates: Dates

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "pseudonymized": True,
                "store_id": self.store_id,
                "key_fingerprint": self.key_fingerprint,
                "date_shift_days": self.dates.most,
            },
            indent=1,
        )


def mark_path(root: Path) -> Path:
    return root / META_DIR / MARK_NAME


def is_marked(root: Path) -> bool:
    """Whether the store at ``root`` holds pseudonymised instances (one stat)."""
    return os.path.lexists(mark_path(root))


def refuse_plain(root: Path) -> None:
    """DeidError if the store at ``root`` is pseudonymised: plain instances stay out."""
    if is_marked(root):
        raise DeidError(
            f"the store {root} holds pseudonymised instances: plain ones may not join them",
            "retrieve into it with --pseudonymize, or into another store (--out DIR)",
        )


def read_mark(root: Path) -> StoreMark | None:
    """The store's record, None if it has none; DeidError if it is unreadable."""
    path = mark_path(root)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _damaged(path, exc.strerror or str(exc)) from None
    with open(descriptor, "rb") as file:
        content = file.read(_MAX_MARK)
    try:
        data = json.loads(content)
        mark = StoreMark(
            str(data["store_id"]), str(data["key_fingerprint"]), Dates(int(data["date_shift_days"]))
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, f"not the record qrclient writes ({exc})") from None
    if not mark.store_id.isalnum() or not 0 <= mark.dates.most <= MAX_DATE_SHIFT:
        raise _damaged(path, "not the record qrclient writes")
    return mark


def write_mark(root: Path, mark: StoreMark) -> None:
    """Write the record atomically (a temporary file renamed); DeidError on failure."""
    path = mark_path(root)
    temporary = path.with_name(f"{MARK_NAME}.{os.getpid()}.tmp")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(temporary, flags, 0o644), "w", encoding="ascii") as file:
            file.write(mark.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise DeidError(
            f"cannot record in {path} that the store is pseudonymised ({exc.strerror})",
            "check that the store is writable",
        ) from None


def _damaged(path: Path, why: str) -> DeidError:
    return DeidError(
        f"the store's pseudonymisation record {path} cannot be read: {why}",
        "restore it from a backup; without it the store cannot be told pseudonymised",
    )

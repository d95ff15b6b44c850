"""The query history: every query run from the form, kept across runs in the store.

Queries name patients, so they stay with the patient data, in the store's own
``.qrclient/`` folder (never in a home-wide file). One JSON object per line, newest
last; a damaged or foreign line is skipped, the file is read only up to a bound and
kept to the newest :data:`KEEP` entries.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qrclient.present.browse import QueryForm as FormValues
from qrclient.store.tree import META_DIR
from qrclient.vocabulary import Level, Model

NAME = "query-history.jsonl"
KEEP = 200
MAX_BYTES = 1_000_000  # what is read of the file: its end


@dataclass(frozen=True, slots=True)
class Entry:
    node: str
    level: Level
    model: Model
    values: FormValues
    when: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))

    def describe(self) -> str:
        """One line for the history list."""
        fields = [f"{k}={v}" for k, v in asdict(self.values).items() if v]
        what = " ".join(fields) or "everything"
        return f"{self.when}  {self.node}  {self.level.value.lower()}: {what}"

    def to_json(self) -> str:
        data = {
            "when": self.when,
            "node": self.node,
            "level": self.level.value,
            "model": self.model.value,
            "values": asdict(self.values),
        }
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Entry | None:
        try:
            data = json.loads(line)
            values = {k: str(v) for k, v in dict(data["values"]).items()}
            return cls(
                str(data["node"]),
                Level(data["level"]),
                Model(data["model"]),
                FormValues(**values),
                str(data["when"]),
            )
        except (ValueError, KeyError, TypeError):
            return None  # another version's line, or damage: not worth stopping for


class QueryHistory:
    def __init__(self, store_root: Path) -> None:
        self.path = Path(store_root) / META_DIR / NAME

    def load(self) -> list[Entry]:
        """The newest entries, oldest first; none if there is no history (or it is
        unreadable)."""
        return self._entries()[-KEEP:]

    def _entries(self) -> list[Entry]:
        try:
            with open(self.path, "rb", opener=_no_follow) as file:
                size = os.fstat(file.fileno()).st_size
                file.seek(max(0, size - MAX_BYTES))
                data = file.read(MAX_BYTES)
        except OSError:
            return []
        lines = data.decode("utf-8", "replace").splitlines()
        if len(data) == MAX_BYTES:
            lines = lines[1:]  # the first may be cut
        return [e for e in map(Entry.from_json, lines) if e is not None]

    def add(self, entry: Entry) -> None:
        """Append ``entry``; OSError if the store's folder cannot be written."""
        meta = self.path.parent
        if meta.is_symlink():
            raise OSError(f"{meta} is a symbolic link: qrclient keeps it a real folder")
        meta.mkdir(parents=True, exist_ok=True)
        entries = [*self._entries(), entry]
        if len(entries) > 2 * KEEP:  # now and then, keep it small
            partial = meta / f".{NAME}.part-{os.getpid()}"
            with open(partial, "w", encoding="utf-8", opener=_new_private) as out:
                out.writelines(e.to_json() + "\n" for e in entries[-KEEP:])
            os.replace(partial, self.path)
            return
        with open(self.path, "a", encoding="utf-8", opener=_append_private) as out:
            out.write(entry.to_json() + "\n")


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _append_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o600)


def _new_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_EXCL, 0o600)

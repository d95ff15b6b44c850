"""Writing C-FIND matches: table, DICOM JSON (PS3.18 annex F), NDJSON and CSV."""

from __future__ import annotations

import csv
import json
import sys
from typing import Protocol, TextIO

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from rich.cells import cell_len

from qrclient.net.dictionary import tag_of
from qrclient.present.browse import HIDDEN_COLUMNS, text_of
from qrclient.present.dicomjson import to_json_dict
from qrclient.present.printable import printable, printable_json


class MatchWriter(Protocol):
    def add(self, dataset: Dataset) -> None: ...

    def close(self) -> None: ...


class _Columns:
    """One column per return key; a key the peer left out is a blank cell.

    Any PACS may leave out what it does not keep (DCMTK's dcmqrscp: every computed key
    and SeriesDescription), so a missing element is normal, never an error. A nested key
    (``ScheduledProcedureStepSequence.Modality``) is a column of its own, headed by its
    last name where that is unambiguous, its values from every item joined by ``\\``.
    """

    def __init__(self, keywords: list[str]) -> None:
        self.keywords = [k for k in keywords if k not in HIDDEN_COLUMNS]
        self._paths = [tuple(_tag(part) for part in k.split(".")) for k in self.keywords]
        last = [k.rsplit(".", 1)[-1] for k in self.keywords]
        self.headers = [
            short if last.count(short) == 1 else k
            for short, k in zip(last, self.keywords, strict=True)
        ]

    def row(self, dataset: Dataset) -> list[str]:
        return [printable(_text(dataset, path)) for path in self._paths]


def _text(dataset: Dataset, path: tuple[int, ...]) -> str:
    element = _element(dataset, path[0])
    if len(path) == 1:
        return text_of(element)
    if element is None or element.VR != "SQ":
        return ""
    values = (_text(item, path[1:]) for item in element.value)
    return "\\".join(dict.fromkeys(v for v in values if v))


def _tag(name: str) -> int:
    """The tag of a column named by keyword or written ``(gggg,eeee)`` (Key.name)."""
    if name.startswith("("):
        return int(name[1:5] + name[6:10], 16)
    tag = tag_of(name)
    assert tag is not None, name  # the query checked every keyword
    return tag


def _element(dataset: Dataset, tag: int) -> DataElement | None:
    element = dataset.get(tag)
    return element if isinstance(element, DataElement) else None


class TableWriter(_Columns):
    """Aligned columns; rows are held until the end to size the columns."""

    def __init__(self, keywords: list[str], out: TextIO) -> None:
        super().__init__(keywords)
        self._out = out
        self._rows: list[list[str]] = []

    def add(self, dataset: Dataset) -> None:
        self._rows.append(self.row(dataset))

    def close(self) -> None:
        header = self.headers
        widths = [len(h) for h in header]
        for row in self._rows:
            widths = [max(w, cell_len(v)) for w, v in zip(widths, row, strict=True)]
        for row in [header, ["-" * w for w in widths], *self._rows]:
            # Padded to the width on screen: 山田 takes four columns, not two.
            line = "  ".join(v + " " * (w - cell_len(v)) for v, w in zip(row, widths, strict=True))
            self._out.write(line.rstrip() + "\n")
        self._out.flush()


class CsvWriter(_Columns):
    def __init__(self, keywords: list[str], out: TextIO) -> None:
        super().__init__(keywords)
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(self.headers)
        self._out = out

    def add(self, dataset: Dataset) -> None:
        self._writer.writerow(self.row(dataset))

    def close(self) -> None:
        self._out.flush()


class NdjsonWriter:
    """One DICOM JSON object per line, flushed as each match arrives."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def add(self, dataset: Dataset) -> None:
        self._out.write(
            printable_json(json.dumps(to_json_dict(dataset), ensure_ascii=False)) + "\n"
        )
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


class JsonWriter:
    """A JSON array written whole at the end, so it is valid even after a failure."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._items: list[dict[str, dict[str, object]]] = []

    def add(self, dataset: Dataset) -> None:
        self._items.append(to_json_dict(dataset))

    def close(self) -> None:
        self._out.write(printable_json(json.dumps(self._items, ensure_ascii=False, indent=1)))
        self._out.write("\n")
        self._out.flush()


def make_writer(kind: str | None, keywords: list[str], out: TextIO | None = None) -> MatchWriter:
    out = out or sys.stdout
    if kind is None:
        kind = "table" if out.isatty() else "ndjson"
    if kind == "table":
        return TableWriter(keywords, out)
    if kind == "csv":
        return CsvWriter(keywords, out)
    if kind == "json":
        return JsonWriter(out)
    return NdjsonWriter(out)

"""Reading a cohort: one item per row, keyed by the DICOM keywords that find studies.

Accepted, told apart by their first character:
- ``qrclient find``'s ndjson (``{`` per line) or json (``[``): DICOM JSON objects;
- CSV (``qrclient find -f csv``, or a spreadsheet) whose header names DICOM keywords.

Of each row only ``KEYWORDS`` count (other columns, such as find's PatientName, are
left alone); a row needs one of them with a value. StudyDate is a date or a range as
people type it (``ops.dates``); ModalitiesInStudy one or more ``\\``-separated codes.
Values are exact: wildcards would make one row many cohorts. Anything wrong is an
``InputError`` naming the file, row and column, before anything is sent or written.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from qrclient.ops.dates import DateError, date_range
from qrclient.ops.query import QueryError, parse_key

# The keys a row may give, in the order a report shows them.
KEYWORDS = ("AccessionNumber", "PatientID", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy")
_TAGS = {
    "00080050": "AccessionNumber",
    "00100020": "PatientID",
    "0020000D": "StudyInstanceUID",
    "00080020": "StudyDate",
    "00080061": "ModalitiesInStudy",
}
MAX_INPUT = 256 * 1024 * 1024  # bytes read at most: a list of millions of rows still fits
EXPECTED = (
    "expected find's ndjson/json/csv output, or a CSV whose header names "
    f"{', '.join(KEYWORDS[:-1])} or {KEYWORDS[-1]}"
)


class InputError(ValueError):
    """The list cannot be read as a cohort; the message says where and what is expected."""


Item = dict[str, str]


def read_items(source: str) -> list[Item]:
    """The items of the file ``source`` (``-``: standard input)."""
    name = "standard input" if source == "-" else source
    text = _read(source, name)
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{name} is empty: {EXPECTED}")
    if stripped[0] == "[":
        items = _from_json(stripped, name)
    elif stripped[0] == "{":
        items = _from_ndjson(stripped, name)
    else:
        items = _from_csv(text, name)
    if not items:
        raise InputError(f"{name} has no rows with a value in {', '.join(KEYWORDS)}")
    return items


def _read(source: str, name: str) -> str:
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_INPUT + 1)
        else:
            with Path(source).expanduser().open("rb") as file:
                data = file.read(MAX_INPUT + 1)
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT:
        raise InputError(f"{name} is larger than {MAX_INPUT >> 20} MB: split the list")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 CSV"
        ) from None


def _from_csv(text: str, name: str) -> list[Item]:
    lines = text.splitlines()
    delimiter = _delimiter(lines[0] if lines else "")
    rows = csv.reader(lines, delimiter=delimiter)
    try:
        header = [cell.strip() for cell in next(rows)]
    except (StopIteration, csv.Error) as exc:
        raise InputError(f"{name}: not a CSV file ({exc}): {EXPECTED}") from None
    known = {k.lower(): k for k in KEYWORDS}
    columns = {i: known[cell.lower()] for i, cell in enumerate(header) if cell.lower() in known}
    if not columns:
        shown = ", ".join(repr(cell) for cell in header[:5] if cell) or "none"
        raise InputError(
            f"{name}: no column names a key to find studies by (columns: {shown}); {EXPECTED}"
        )
    items: list[Item] = []
    try:
        for number, row in enumerate(rows, start=2):
            values = {keyword: row[i] for i, keyword in columns.items() if i < len(row)}
            item = _item(values, f"{name} line {number}")
            if item:
                items.append(item)
    except csv.Error as exc:
        raise InputError(f"{name}: not a CSV file ({exc})") from None
    return items


def _delimiter(header: str) -> str:
    """``,`` unless the header is clearly separated by ``;`` or tabs (spreadsheets)."""
    if "," in header:
        return ","
    return next((d for d in ("\t", ";") if d in header), ",")


def _from_ndjson(text: str, name: str) -> list[Item]:
    items: list[Item] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{name} line {number}: not JSON ({exc}): {EXPECTED}") from None
        item = _item(_dicom_json(parsed, f"{name} line {number}"), f"{name} line {number}")
        if item:
            items.append(item)
    return items


def _from_json(text: str, name: str) -> list[Item]:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{name}: not JSON ({exc}): {EXPECTED}") from None
    if not isinstance(parsed, list):
        raise InputError(f"{name}: expected a JSON array of DICOM JSON objects")
    items: list[Item] = []
    for number, entry in enumerate(parsed, start=1):
        where = f"{name} item {number}"
        item = _item(_dicom_json(entry, where), where)
        if item:
            items.append(item)
    return items


def _dicom_json(entry: object, where: str) -> dict[str, str]:
    """The values of ``KEYWORDS`` in a DICOM JSON object (PS3.18 F.2), as text."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a DICOM JSON object")
    values: dict[str, str] = {}
    for tag, keyword in _TAGS.items():
        element = entry.get(tag)
        if element is None:
            continue
        listed = element.get("Value", []) if isinstance(element, dict) else None
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise InputError(f"{where}: {keyword} ({tag}) is not a DICOM JSON text element")
        values[keyword] = "\\".join(listed)
    return values


def _item(values: Mapping[str, str], where: str) -> Item:
    """The row's keys checked and normalised; empty if it gives none (a blank row)."""
    item: Item = {}
    for keyword in KEYWORDS:
        value = values.get(keyword, "").strip()
        if value:
            item[keyword] = _checked(keyword, value, where)
    return item


def _checked(keyword: str, value: str, where: str) -> str:
    if keyword == "StudyDate":
        try:
            value = date_range(value)
        except DateError as exc:
            raise InputError(f"{where}: StudyDate {exc}") from None
    elif keyword == "ModalitiesInStudy":
        codes = [code.strip().upper() for code in value.replace("/", "\\").split("\\")]
        value = "\\".join(dict.fromkeys(code for code in codes if code))
    elif any(c in value for c in "*?\\"):
        raise InputError(
            f"{where}: {keyword} {value!r}: expected one exact value (no wildcards or lists: "
            "one row per value)"
        )
    try:
        parse_key(f"{keyword}={value}")
    except QueryError as exc:
        raise InputError(f"{where}: {exc}") from None
    return value


def columns_of(items: Iterable[Mapping[str, str]]) -> list[str]:
    """The keywords the items give, in ``KEYWORDS`` order (a report's key columns)."""
    given = {keyword for item in items for keyword in item}
    return [keyword for keyword in KEYWORDS if keyword in given]

"""``--trace FILE``: the association and DIMSE traffic as JSON Lines, for bug reports.

One JSON object per line: a ``trace-start`` record (qrclient version, command, start
time), then every observer event of the network core with ``t``, the seconds since the
start: A-ASSOCIATE details, PDU types and sizes, DIMSE command sets with their statuses
decoded, release and abort, errors; last a ``trace-end`` record with the exit code.
Data sets are never written, only their sizes, so a trace holds no pixel data and no
patient data beyond what command sets carry (UIDs).

The file is line-buffered: every record is in the file as soon as it happens, so a
trace is complete even when the command fails or is interrupted. Should writing fail
(the disk fills), tracing stops and ``failure`` says why; the command goes on.

The command's arguments are recorded without the values of its query keys (``-k
PatientName=DOE*`` becomes ``-k PatientName=<redacted>``): they may name patients.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import IO

from qrclient import __version__
from qrclient.net.events import PDU_LEVEL, DimseReceived, DimseSent, Event, Observer, record
from qrclient.net.status import Status
from qrclient.present.printable import printable_json

REDACTED = "<redacted>"


class TraceError(OSError):
    """The trace file cannot be written."""


def redact_keys(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``argv`` with the value of each ``KEY=VALUE`` in ``keys`` (the parsed ``-k``
    values) replaced, whichever way it was written: ``-k K=V``, ``-kK=V``,
    ``--key=K=V``, or after other short options (``-qkK=V``). Each such value is the
    end of the argument that carried it; the keyword stays, for the bug report."""
    values = sorted((k for k in keys if k.partition("=")[2]), key=len, reverse=True)
    redacted = []
    for argument in argv:
        for key in values:
            if argument.endswith(key):
                keyword = key.partition("=")[0]
                argument = f"{argument[: -len(key)]}{keyword}={REDACTED}"
                break
        redacted.append(argument)
    return redacted


class Trace:
    """An observer (``Settings.observer``) writing each event as one JSON line."""

    pdu_level = True  # ask the core for PDU sizes too (see qrclient.net.association)

    def __init__(self, file: IO[str], command: str, argv: Sequence[str]) -> None:
        self._file = file
        self._started = time.perf_counter()
        self.also: Observer | None = None  # e.g. the --verbose log
        self.failure = ""  # why writing stopped, if it did
        self._write(
            {
                "event": "trace-start",
                "qrclient": __version__,
                "command": command,
                "argv": list(argv),
                "started": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "python": platform.python_version(),
                "pydicom": _version("pydicom"),
                "pynetdicom": _version("pynetdicom"),
            }
        )

    @classmethod
    def open(cls, path: str | Path, command: str, argv: Sequence[str]) -> Trace:
        try:
            file = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed in close)
        except OSError as exc:
            raise TraceError(f"--trace {path}: cannot write it ({exc.strerror or exc})") from None
        trace = cls(file, command, argv)
        if trace.failure:
            raise TraceError(f"--trace {path}: cannot write it ({trace.failure})")
        return trace

    def __call__(self, event: Event) -> None:
        line: dict[str, object] = {
            "t": round(time.perf_counter() - self._started, 6),
            "event": event.name,
        }
        line.update(_json_safe(record(event)))
        if isinstance(event, DimseSent | DimseReceived):
            _decode_status(line)
        self._write(line)
        # PDU-level events go to the trace only, not to a --verbose log sharing the observer.
        if self.also is not None and not isinstance(event, PDU_LEVEL):
            self.also(event)

    def close(self, exit_code: int) -> None:
        """Write the ``trace-end`` record and close the file (idempotent)."""
        if self._file.closed:
            return
        self._write(
            {
                "t": round(time.perf_counter() - self._started, 6),
                "event": "trace-end",
                "exit_code": exit_code,
            }
        )
        with suppress(OSError):  # the last buffered bytes: failure says so already
            self._file.close()

    def _write(self, record: Mapping[str, object]) -> None:
        if self._file.closed:
            return
        try:
            self._file.write(_dumps(record) + "\n")
        except OSError as exc:
            # An observer must not break the association it watches: stop tracing.
            self.failure = exc.strerror or str(exc)
            with suppress(OSError):
                self._file.close()


def _dumps(record: Mapping[str, object]) -> str:
    # Readable non-ASCII text, but nothing a terminal would obey (`head trace.jsonl`).
    return printable_json(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _decode_status(record: dict[str, object]) -> None:
    """``status`` as hex with its PS3.4 meaning; offending elements as tags."""
    status = record.get("status")
    if isinstance(status, int):
        record["status"] = f"0x{status:04X}"
        decoded = Status.of_command(str(record.get("command", "")), status)
        if decoded is not None:
            record["status_category"] = decoded.category.value
            record["status_meaning"] = decoded.description
    offending = record.get("offending_element")
    if isinstance(offending, list):
        record["offending_element"] = [
            f"({t >> 16:04X},{t & 0xFFFF:04X})" if isinstance(t, int) else t for t in offending
        ]


def _json_safe(details: Mapping[str, object]) -> dict[str, object]:
    return {str(key): _safe(value) for key, value in details.items()}


def _safe(value: object) -> object:
    """Plain JSON values; bytes only by their size, never their content."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": len(value)}
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v) for v in value]
    if isinstance(value, Enum):
        return value.name
    return str(value)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"

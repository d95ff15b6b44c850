"""The local store: received instances as Part-10 files under a root, and their index.

``root/.qrclient/`` holds the index and ``incoming/``, where instances are written
before they are complete. An instance only ever appears in its final place by an
atomic rename of a closed, checked file, and is indexed after that, so neither a
kill nor a full disk leaves a half-written file counted as stored.

One process at a time: opening takes an exclusive lock, because it deletes what a
killed run left in ``incoming/``, which would otherwise be another run's live files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NoReturn

from qrclient.store.attributes import Wanted
from qrclient.store.errors import StoreError, describe_os_error
from qrclient.store.incoming import Incoming, Placement
from qrclient.store.index import Index, Record, StoredInstance, StoreSummary
from qrclient.store.layout import DEFAULT_LAYOUT, Layout
from qrclient.store.part10 import (
    clean_ae_title,
    clean_repeated_uid,
    clean_uid,
    file_meta,
    read_header,
)

if sys.platform != "win32":
    import fcntl

META_DIR = ".qrclient"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Store:
    """Open with ``Store.open(root)``; a context manager that closes it."""

    def __init__(self, root: Path, layout: Layout, index: Index, lock: BinaryIO) -> None:
        self.root = root
        self.layout = layout
        self.removed_leftovers = 0  # temporary files of a killed run, deleted at open
        self._wanted = Wanted.of(layout.keywords)
        self.wanted_tags = self._wanted.tags
        self._index = index
        self._lock_file = lock
        self._root = str(root)
        self._meta = os.path.join(self._root, META_DIR)
        self._root_prefix = os.path.join(self._root, "")  # with its trailing separator
        self._meta_prefix = os.path.join(self._meta, "")
        self._incoming_dir = str(root / META_DIR / "incoming")
        self._pending: set[Incoming] = set()
        self._reserved: dict[str, Incoming] = {}  # relative path -> sealed, not yet placed
        self._directories: set[str] = set()  # known to exist: no mkdir per instance
        self._placing = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, root: Path | str, layout: str = DEFAULT_LAYOUT) -> Store:
        """Open (creating it if need be) the store at ``root``; StoreError if impossible."""
        parsed = Layout.parse(layout)
        root = Path(root).resolve()
        meta = root / META_DIR
        incoming = meta / "incoming"
        try:
            incoming.mkdir(parents=True, exist_ok=True)
            lock = _lock(meta / "lock", root)
        except OSError as exc:
            raise StoreError(f"cannot open the store {root}: {describe_os_error(exc)}") from None
        try:
            removed = _remove_leftovers(incoming)
            index = Index(meta / "index.sqlite")
        except OSError as exc:
            lock.close()
            raise StoreError(f"cannot open the store {root}: {describe_os_error(exc)}") from None
        except BaseException:
            lock.close()
            raise
        store = cls(root, parsed, index, lock)
        store.removed_leftovers = removed
        return store

    def close(self) -> None:
        """Discard instances still being received, close the index, release the lock."""
        if self._closed:
            return
        for incoming in list(self._pending):
            incoming.discard()
        self._closed = True
        self._index.close()
        self._lock_file.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Receiving

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
    ) -> Incoming:
        """Start receiving an instance; write its data set bytes as they arrive."""
        self._check_open()
        try:
            instance_uid = clean_uid(sop_instance_uid, "SOP Instance UID")
            class_uid = clean_repeated_uid(sop_class_uid, "SOP Class UID")
            syntax = clean_repeated_uid(transfer_syntax, "transfer syntax")
        except ValueError as exc:
            raise StoreError(f"cannot store an instance: {exc}") from None
        source = clean_ae_title(source)
        incoming = Incoming(
            self,
            self._incoming_dir,
            file_meta(class_uid, instance_uid, syntax, source),
            sop_class_uid=class_uid,
            sop_instance_uid=instance_uid,
            transfer_syntax=syntax,
            source=source,
        )
        self._pending.add(incoming)
        return incoming

    def check(self, incoming: Incoming, values: dict[int, bytes]) -> Placement:
        """Where a sealed instance will go; StoreError if it cannot be stored.

        For ``Incoming.seal``, which has checked the data set and read ``values``:
        everything that decides the C-STORE answer is checked here, before it is sent.
        """
        self._check_open()
        uid = incoming.sop_instance_uid
        text = self._wanted.decode(values)
        if text["SOPInstanceUID"] not in ("", uid):
            raise StoreError(
                f"{uid} was not stored: its data set has SOP Instance UID "
                f"{text['SOPInstanceUID']}, not the one its C-STORE announced"
            )
        text["SOPInstanceUID"], text["SOPClassUID"] = uid, incoming.sop_class_uid
        relative = self.layout.render(text)
        target = self._target(relative)
        reserved = self._reserved.get(relative)
        if reserved is not None and reserved is not incoming:
            _path_taken(uid, reserved.sop_instance_uid, relative)
        # Held until placed or discarded: another association's instance cannot take
        # the path in between. (The index is asked when placing: every layout holds
        # {SOPInstanceUID}, so a path held by another instance is a defect, not a
        # case worth a query before every answer.)
        self._reserved[relative] = incoming
        return Placement(text, relative, target)

    def place(
        self, incoming: Incoming, placement: Placement, status: os.stat_result
    ) -> StoredInstance:
        """Move a checked, closed temporary file into place and index it."""
        self._check_open()
        uid = incoming.sop_instance_uid
        relative, target = placement.relative, placement.target
        record = _record(
            placement.text,
            incoming.transfer_syntax,
            incoming.source,
            relative,
            status.st_size,
            status.st_mtime_ns,
        )
        with self._placing:
            if self._place_new(incoming, placement, record):
                return record.instance
            previous, owner = self._index.claims(uid, relative)
            if owner not in (None, uid):
                _path_taken(uid, owner, relative)
            assert incoming.path is not None  # place wrote the temporary file
            self._move(incoming.path, target, uid)
            try:
                self._index.put(record)
            except Exception as exc:
                if previous != relative:  # not a stored file: do not leave it unindexed
                    _remove(target)
                raise StoreError(f"{uid} was not stored: the index failed ({exc})") from None
            if previous not in (None, relative):  # stored again elsewhere: drop the old
                _remove(os.path.join(self._root, previous))
        return record.instance

    def _place_new(self, incoming: Incoming, placement: Placement, record: Record) -> bool:
        """The common case: a new instance at a free path, indexed in one statement.

        False (nothing done) if the index knows the instance or another holds its path.
        """
        uid = incoming.sop_instance_uid
        try:
            if not self._index.put_new(record):
                return False
        except Exception as exc:
            raise StoreError(f"{uid} was not stored: the index failed ({exc})") from None
        assert incoming.path is not None  # place wrote the temporary file
        try:
            self._move(incoming.path, placement.target, uid)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # uncommitted: a rollback drops it too
                self._index.remove(uid)
            raise
        self._index.end_put()
        return True

    def forget(self, incoming: Incoming) -> None:
        """For ``Incoming``: it is finished, ``close`` need not discard it."""
        self._pending.discard(incoming)
        placement = incoming.placement
        if placement is not None and self._reserved.get(placement.relative) is incoming:
            del self._reserved[placement.relative]

    def _target(self, relative: str) -> str:
        """The absolute path; refuses anything outside the root (defence in depth)."""
        target = os.path.normpath(os.path.join(self._root, relative))
        # Both sides are normalised absolute paths: a prefix test is a containment test.
        inside = target.startswith(self._root_prefix) and target != self._root
        if not inside or target == self._meta or target.startswith(self._meta_prefix):
            raise StoreError(f"refused to store at {relative!r}: outside the store {self.root}")
        return target

    def _move(self, source: str, target: str, uid: str) -> None:
        directory = os.path.dirname(target)
        try:
            if directory not in self._directories:
                os.makedirs(directory, exist_ok=True)
                self._directories.add(directory)
            try:
                os.replace(source, target)
            except FileNotFoundError:  # its directory was removed meanwhile
                os.makedirs(directory, exist_ok=True)
                os.replace(source, target)
        except OSError as exc:
            self._directories.discard(directory)
            raise StoreError(f"cannot store {uid}: {describe_os_error(exc)}") from None

    # Queries

    def flush(self) -> None:
        """Commit index rows not yet committed (they are, in groups, and on close)."""
        self._check_open()
        self._index.flush()

    def has(self, sop_instance_uid: str) -> bool:
        self._check_open()
        return bool(self._index.present((sop_instance_uid,)))

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]:
        """Those of ``sop_instance_uids`` that are stored."""
        self._check_open()
        return self._index.present(sop_instance_uids)

    def study_counts(self, study_uid: str) -> int:
        """Instances of the study stored here."""
        self._check_open()
        return self._index.count_in_study(study_uid)

    def instances_in_study(self, study_instance_uid: str) -> int:
        """``study_counts`` under the name the retrieve planner uses."""
        return self.study_counts(study_instance_uid)

    def series_counts(self, series_uid: str) -> int:
        """Instances of the series stored here."""
        self._check_open()
        return self._index.count_in_series(series_uid)

    def instances(
        self, study_uid: str | None = None, series_uid: str | None = None
    ) -> list[StoredInstance]:
        self._check_open()
        return self._index.instances(study_uid, series_uid)

    def summary(self) -> StoreSummary:
        self._check_open()
        return self._index.summary()

    # Maintenance

    def rebuild_index(self) -> int:
        """Index every stored file anew from its header; returns how many were indexed.

        Files that are not complete Part-10 files stay out (``verify`` lists them).
        """
        self._check_open()
        with self._placing:
            return self._index.replace_all(self._records_from_files())

    def verify(self) -> list[str]:
        """Index rows whose file is missing or changed, and files the index lacks."""
        self._check_open()
        indexed = self._index.files()
        on_disk = dict(self._files())
        problems = []
        for path, (uid, size) in sorted(indexed.items()):
            if path not in on_disk:
                problems.append(f"missing: {path} (SOP Instance UID {uid})")
            elif on_disk[path] != size:
                problems.append(f"changed: {path} has {on_disk[path]} bytes, not {size}")
        problems.extend(f"stray: {path}" for path in sorted(on_disk.keys() - indexed.keys()))
        return problems

    def _records_from_files(self) -> Iterator[Record]:
        for relative, _ in self._files():
            path = os.path.join(self._root, relative)
            try:
                header = read_header(path, self.wanted_tags)
                status = os.stat(path)
            except (ValueError, OSError):
                continue
            text = self._wanted.decode(header.values)
            uid = header.media_sop_instance_uid or text["SOPInstanceUID"]
            text["SOPInstanceUID"] = uid
            text["SOPClassUID"] = header.media_sop_class_uid or text["SOPClassUID"]
            if uid:
                yield _record(
                    text,
                    header.transfer_syntax,
                    header.source,
                    relative,
                    status.st_size,
                    status.st_mtime_ns,
                )

    def _files(self) -> Iterator[tuple[str, int]]:
        """(relative ``/``-separated path, size) of every file under the root."""
        stack = [""]
        while stack:
            relative = stack.pop()
            with os.scandir(os.path.join(self._root, relative)) as entries:
                for entry in entries:
                    name = f"{relative}/{entry.name}" if relative else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if name != META_DIR:
                            stack.append(name)
                    elif entry.is_file():
                        yield name, entry.stat().st_size

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.root} is closed")


def _path_taken(uid: str, owner: str, relative: str) -> NoReturn:
    raise StoreError(
        f"{uid} was not stored: the layout gives it the path of {owner} "
        f"({relative}); use a layout that keeps {{SOPInstanceUID}} apart"
    )


def _record(
    text: dict[str, str], syntax: str, source: str, relative: str, size: int, mtime_ns: int
) -> Record:
    # The file's modification time is its receive time, and survives rename and rebuild.
    seconds, microseconds = divmod(mtime_ns // 1000, 1_000_000)
    instance = StoredInstance(
        sop_instance_uid=text["SOPInstanceUID"],
        sop_class_uid=text["SOPClassUID"],
        series_instance_uid=text["SeriesInstanceUID"],
        study_instance_uid=text["StudyInstanceUID"],
        patient_id=text["PatientID"],
        transfer_syntax=syntax,
        path=relative,
        size=size,
        source=source,
        received_at=f"{_utc_second(seconds)}.{microseconds:06d}+00:00",
    )
    try:
        series_number: int | None = int(text["SeriesNumber"])
    except ValueError:
        series_number = None
    return Record(
        instance,
        patient_name=text["PatientName"],
        study_date=text["StudyDate"],
        study_description=text["StudyDescription"],
        accession=text["AccessionNumber"],
        modality=text["Modality"],
        series_number=series_number,
        series_description=text["SeriesDescription"],
    )


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """ISO 8601 UTC date and time to the second, without the offset: a retrieve stores
    many instances a second, so each second is formatted once."""
    second = _EPOCH + timedelta(seconds=seconds)
    return second.isoformat(timespec="seconds").removesuffix("+00:00")


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):  # verify reports what stays
        os.unlink(path)


def _remove_leftovers(incoming: Path) -> int:
    removed = 0
    with os.scandir(incoming) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                os.unlink(entry.path)
                removed += 1
    return removed


def _lock(path: Path, root: Path) -> BinaryIO:
    """Hold an exclusive lock on the store until the returned file is closed."""
    file = open(path, "ab")  # noqa: SIM115 - held open for the store's lifetime
    if sys.platform != "win32":
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise StoreError(
                f"the store {root} is in use by another qrclient; wait for it to finish "
                "or use another store"
            ) from None
    return file

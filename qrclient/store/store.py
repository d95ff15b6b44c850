"""The local store: received instances as Part-10 files under a root, and their index.

``root/.qrclient/`` holds the index and ``incoming/``, where instances are written
before they are complete. An instance only ever appears in its final place by an
atomic rename of a closed, checked file, and is indexed after that; a file it replaces
goes once the new row is committed. So neither a kill nor a full disk leaves a
half-written file counted as stored, nor a committed row without its file.

Nothing is created, renamed or deleted outside the root: every path is reached
through directory descriptors that never follow a link (``tree``).

The files are trusted over the index: an instance counts as here only while its file
is (a stat each, no read). One that arrives again is a no-op when it is the same; from
its first source it replaces the stored one (a PACS re-sending a corrected object),
and from another source it is refused unless the store was opened to ``overwrite``.

One process at a time: opening takes an exclusive lock (``lock``), because it deletes
what a killed run left in ``incoming/``, which would otherwise be another run's files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from stat import S_ISREG
from types import TracebackType
from typing import NoReturn

from qrclient.store import maintenance
from qrclient.store.attributes import Wanted
from qrclient.store.errors import (
    StoreConflict,
    StoreDamaged,
    StoreError,
    os_failure,
)
from qrclient.store.incoming import Incoming, Placement
from qrclient.store.index import Index, Record, StoredInstance, StoreSummary, make_record
from qrclient.store.jobs import JobBook
from qrclient.store.layout import DEFAULT_LAYOUT, Layout
from qrclient.store.lock import lock
from qrclient.store.maintenance import INDEX_NAME
from qrclient.store.part10 import clean_announced, file_meta, read_meta
from qrclient.store.tree import META_DIR, Tree, is_link, open_directory, split

INCOMING_DIR = "incoming"


class Store:
    """Open with ``Store.open(root)``; a context manager that closes it."""

    def __init__(
        self,
        root: Path,
        layout: Layout,
        descriptors: _Descriptors,
        index: Index,
        *,
        overwrite: bool,
    ) -> None:
        self.root = root
        self.layout = layout
        self.overwrite = overwrite  # replace an instance from another source if different
        self.removed_leftovers = 0  # temporary files of a killed run, deleted at open
        self._wanted = Wanted.of(layout.keywords)
        self.wanted_tags = self._wanted.tags
        self._descriptors = descriptors
        self._tree = Tree(descriptors.root)
        self._index = index
        index.on_group_end = self._group_ended
        self._pending: set[Incoming] = set()
        self._reserved: dict[str, Incoming] = {}  # relative path -> sealed, not yet placed
        self._receiving: dict[str, Incoming] = {}  # SOP Instance UID -> the same
        # Replaced files, deleted once the group holding their instances' new rows is
        # committed (kept if that commit fails: the old rows still name them).
        self._obsolete: set[str] = set()
        # The tree's descriptors and the index's group are shared: placing, statting
        # and deleting happen under this lock (the UI flushes from a worker thread).
        self._placing = threading.Lock()
        self._closed = False
        self.jobs = JobBook(self._open_index)  # durable jobs, in the index

    def _open_index(self) -> Index:
        self._check_open()
        return self._index

    @classmethod
    def open(
        cls,
        root: Path | str,
        layout: str = DEFAULT_LAYOUT,
        *,
        overwrite: bool = False,
        wait: float = 0.0,
        rebuild: bool = False,
    ) -> Store:
        """Open (creating it if need be) the store at ``root``.

        ``wait``: seconds to wait for another qrclient using it (else StoreBusy at once).
        ``rebuild``: index the files anew first, even if the index is too damaged to
        open. StoreError (a subclass saying what kind)
        if it cannot be opened.
        """
        parsed = Layout.parse(layout)
        root = Path(root).resolve()
        descriptors = _Descriptors()
        try:
            descriptors.open(root, wait)
            meta_path = root / META_DIR
            if rebuild:
                tree = Tree(descriptors.root)
                try:
                    records = maintenance.records_from_files(tree, Wanted.of(parsed.keywords))
                    index = maintenance.build_index(descriptors.meta, meta_path, root, records)
                finally:
                    tree.close()
            else:
                index = Index(meta_path / INDEX_NAME, root)
        except OSError as exc:
            descriptors.close()
            raise _open_failure(root, exc) from None
        except BaseException:
            descriptors.close()
            raise
        store = cls(root, parsed, descriptors, index, overwrite=overwrite)
        store.removed_leftovers = descriptors.removed_leftovers
        return store

    def close(self) -> None:
        """Discard instances still being received, commit and close the index, release
        the lock. StoreError if the last rows cannot be committed (the store is closed
        all the same; their files stay, unindexed)."""
        if self._closed:
            return
        for incoming in list(self._pending):
            incoming.discard()
        self._closed = True
        try:
            with self._placing:
                self._index.close()
        finally:
            self._tree.close()
            self._descriptors.close()

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
            announced = clean_announced(sop_class_uid, sop_instance_uid, transfer_syntax, source)
        except ValueError as exc:
            raise StoreError(f"cannot store an instance: {exc}") from None
        class_uid, instance_uid, syntax, source = announced
        incoming = Incoming(
            self,
            self._descriptors.incoming,
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
        try:
            split(relative)  # defence in depth: the layout's names are safe already
        except ValueError:
            raise StoreError(f"refused to store at {relative!r}: outside the store") from None
        reserved = self._reserved.get(relative)
        if reserved is not None and reserved is not incoming:
            _path_taken(uid, reserved.sop_instance_uid, relative)
        receiving = self._receiving.get(uid)
        if receiving is not None and receiving is not incoming:
            raise StoreError(f"{uid} was not stored: it is being received at the same time")
        kept = self._kept(incoming)
        # Held until placed or discarded: another association's instance cannot take
        # the path in between. (The index is asked when placing: every layout holds
        # {SOPInstanceUID}, so a path held by another instance is a defect, not a
        # case worth a query before every answer.)
        self._reserved[relative] = incoming
        self._receiving[uid] = incoming
        return Placement(text, relative, kept)

    def _kept(self, incoming: Incoming) -> StoredInstance | None:
        """The stored instance if ``incoming`` is the same again (nothing to do), None
        to store it; StoreConflict if a different one from another source is kept."""
        uid = incoming.sop_instance_uid
        stored = self._index.stored(uid)  # one lookup per instance: ~4 us
        if stored is None or (stored.source == incoming.source and not self.overwrite):
            return None  # new, or its own source's again: stored (replacing)
        with self._placing:
            try:
                descriptor = self._tree.open(stored.path)
            except OSError:
                return None  # its file is gone or unreadable: the disk says it is not here
            try:
                same = (
                    stored.transfer_syntax == incoming.transfer_syntax
                    and stored.sop_class_uid == incoming.sop_class_uid
                    and incoming.same_data(descriptor, read_meta(descriptor)[1])
                )
            except (OSError, ValueError):
                return None  # the stored file is not a readable instance: replaced
            finally:
                os.close(descriptor)
        if same:
            return self._index.instances(sop_instance_uid=uid)[0]
        if self.overwrite:
            return None
        raise StoreConflict(
            f"{uid} was not stored: a different instance with this SOP Instance UID is "
            f"kept, received from {stored.source or 'an unnamed AE'} ({stored.path})",
            "to replace it, delete that file and retrieve again (--overwrite replaces such "
            "instances as they arrive)",
        )

    def place(
        self, incoming: Incoming, placement: Placement, status: os.stat_result
    ) -> StoredInstance:
        """Move a checked, closed temporary file into place and index it."""
        self._check_open()
        uid = incoming.sop_instance_uid
        relative = placement.relative
        record = make_record(
            placement.text,
            incoming.transfer_syntax,
            incoming.source,
            relative,
            status.st_size,
            status.st_mtime_ns,
        )
        with self._placing:
            self._obsolete.discard(relative)  # a file about to be here is not to delete
            if self._place_new(incoming, record):
                return record.instance
            previous, owner = self._index.claims(uid, relative)
            if owner not in (None, uid):
                _path_taken(uid, owner, relative)
            self._move(incoming, relative)
            try:
                self._index.put(record)
            except BaseException:
                if previous != relative:  # not a stored file: do not leave it unindexed
                    self._remove(relative)
                raise
            if previous not in (None, relative):  # stored again elsewhere: drop the old
                self._obsolete.add(previous)  # ...once the new row is committed
        return record.instance

    def _place_new(self, incoming: Incoming, record: Record) -> bool:
        """The common case: a new instance at a free path, indexed in one statement.

        False (nothing done) if the index knows the instance or another holds its path.
        """
        if not self._index.put_new(record):
            return False
        try:
            self._move(incoming, record.instance.path)
        except BaseException:
            self._index.remove(incoming.sop_instance_uid)  # uncommitted: a rollback would too
            raise
        self._index.end_put()
        return True

    def forget(self, incoming: Incoming) -> None:
        """For ``Incoming``: it is finished, ``close`` need not discard it."""
        self._pending.discard(incoming)
        placement = incoming.placement
        if placement is not None and self._reserved.get(placement.relative) is incoming:
            del self._reserved[placement.relative]
        if self._receiving.get(incoming.sop_instance_uid) is incoming:
            del self._receiving[incoming.sop_instance_uid]

    def _move(self, incoming: Incoming, relative: str) -> None:
        assert incoming.path is not None  # place wrote the temporary file
        try:
            self._tree.place(self._descriptors.incoming, incoming.path, relative)
        except OSError as exc:
            what = f"cannot store {incoming.sop_instance_uid} at {relative}"
            raise os_failure(what, exc, filename="") from None

    def _remove(self, relative: str) -> None:
        with contextlib.suppress(OSError):  # verify reports what stays
            self._tree.unlink(relative)

    def _group_ended(self, committed: bool) -> None:
        """For the index, under the lock: delete the files its committed rows replaced."""
        obsolete, self._obsolete = self._obsolete, set()
        if committed:
            for relative in obsolete:
                self._remove(relative)

    # Queries: whether an instance is here asks the disk; the rest is the index's word.

    def flush(self) -> None:
        """Commit index rows not yet committed (they are, in groups, and on close)."""
        self._check_open()
        with self._placing:
            self._index.flush()

    def has(self, sop_instance_uid: str) -> bool:
        return bool(self.present((sop_instance_uid,)))

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]:
        """Those of ``sop_instance_uids`` that are stored: indexed, and their file there
        with the size indexed (a deleted or truncated file is fetched again)."""
        self._check_open()
        return self._here(self._index.locate(sop_instance_uids))

    def study_counts(self, study_uid: str) -> int:
        """Instances of the study stored here (their files there)."""
        self._check_open()
        return len(self._here(self._index.files_in_study(study_uid)))

    def instances_in_study(self, study_instance_uid: str) -> int:
        """``study_counts`` under the name the retrieve planner uses."""
        return self.study_counts(study_instance_uid)

    def series_counts(self, series_uid: str) -> int:
        """Instances of the series stored here (their files there)."""
        self._check_open()
        return len(self._here(self._index.files_in_series(series_uid)))

    def _here(self, rows: Iterable[tuple[str, str, int]]) -> set[str]:
        """The UIDs of the (UID, path, size) rows whose path is a regular file of that
        size: a stat each, no read."""
        here = set()
        status_of = self._tree.stat
        with self._placing:
            try:
                for uid, path, size in rows:
                    status = status_of(path)
                    if status is not None and status.st_size == size and S_ISREG(status.st_mode):
                        here.add(uid)
            except OSError as exc:
                raise os_failure(f"cannot read the store {self.root}", exc) from None
        return here

    def instances(
        self, study_uid: str | None = None, series_uid: str | None = None
    ) -> list[StoredInstance]:
        """What the index holds (``verify`` compares it with the files)."""
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
            with contextlib.suppress(StoreError):  # replaced: damaged or not
                self._index.close()  # (committing deletes the files its rows replaced)
            try:
                records = maintenance.records_from_files(self._tree, self._wanted)
                self._index = maintenance.build_index(
                    self._descriptors.meta, self.root / META_DIR, self.root, records
                )
            except BaseException as exc:
                self._closed = True  # no index to go on with: closed, the lock released
                self._tree.close()
                self._descriptors.close()
                if isinstance(exc, OSError):
                    raise os_failure(f"cannot rebuild the index of {self.root}", exc) from None
                raise
            self._index.on_group_end = self._group_ended
            return self._index.summary().instances

    def verify(self) -> list[str]:
        """The index against the files, one line per problem (reads every file): the
        index file damaged, files missing, changed, unreadable, or not indexed."""
        self._check_open()
        with self._placing:
            self._index.flush()
            try:
                return maintenance.verify(self._tree, self._index, self.wanted_tags)
            except OSError as exc:
                raise os_failure(f"cannot read the store {self.root}", exc) from None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.root} is closed")


class _Descriptors:
    """The directories a store works in, and its lock, open from ``open`` to ``close``."""

    def __init__(self) -> None:
        self._open: list[int] = []
        self.removed_leftovers = 0

    def open(self, root: Path, wait: float) -> None:
        root.mkdir(parents=True, exist_ok=True)  # the user's own path: links allowed
        self.root = self._keep(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        self.meta = self._keep(open_directory(META_DIR, self.root, create=True))
        self.lock = self._keep(lock(self.meta, root, wait))
        self.incoming = self._keep(open_directory(INCOMING_DIR, self.meta, create=True))
        for name in (INDEX_NAME, f"{INDEX_NAME}-wal", f"{INDEX_NAME}-shm"):
            if is_link(name, self.meta):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), f"{META_DIR}/{name}")
        self.removed_leftovers = _remove_leftovers(self.incoming)

    def _keep(self, descriptor: int) -> int:
        self._open.append(descriptor)
        return descriptor

    def close(self) -> None:
        while self._open:  # the lock last: released once the rest is closed
            os.close(self._open.pop())


def _open_failure(root: Path, exc: OSError) -> StoreError:
    if exc.errno == errno.ELOOP:
        name = str(exc.filename or META_DIR)
        if name != META_DIR and not name.startswith(f"{META_DIR}/"):
            name = f"{META_DIR}/{name}"  # opened relative to it
        return StoreDamaged(
            f"cannot open the store {root}: {name} is a symbolic link",
            f"qrclient keeps {META_DIR}, its index and lock as real folders and files: "
            "remove the link",
        )
    return os_failure(f"cannot open the store {root}", exc)


def _path_taken(uid: str, owner: str, relative: str) -> NoReturn:
    raise StoreError(
        f"{uid} was not stored: the layout gives it the path of {owner} "
        f"({relative}); use a layout that keeps {{SOPInstanceUID}} apart"
    )


def _remove_leftovers(incoming: int) -> int:
    """Delete what a killed run left in ``incoming`` (files and links, never followed)."""
    removed = 0
    with os.scandir(incoming) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.name, dir_fd=incoming)
                removed += 1
    return removed

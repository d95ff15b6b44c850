"""The store's maintenance: checking the index against the files, and building it anew.

The files are what counts; the index is a cache of what they say. A rebuild writes a
new index file beside the old one and renames it into place, so it also replaces an
index too damaged to open.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from qrclient.store.attributes import Wanted
from qrclient.store.index import Index, Record, make_record
from qrclient.store.part10 import Header, read_header
from qrclient.store.tree import Tree

INDEX_NAME = "index.sqlite"
_NEW_INDEX = "index.sqlite.new"
_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's, beside an index file


def read_file(tree: Tree, relative: str, wanted: frozenset[int]) -> Header:
    """The header of the stored file at ``relative``; ValueError or OSError if it is not
    a complete Part-10 file (or is a link)."""
    descriptor = tree.open(relative)
    try:
        return read_header(descriptor, wanted)
    finally:
        os.close(descriptor)


def records_from_files(tree: Tree, wanted: Wanted) -> Iterator[Record]:
    """A record for every complete Part-10 file under the root; of several files with
    the same SOP Instance UID, the one received last. Links are not followed."""
    newest: dict[str, tuple[int, Record]] = {}
    for relative, status in tree.walk():
        if not stat.S_ISREG(status.st_mode):
            continue
        try:
            header = read_file(tree, relative, wanted.tags)
        except (ValueError, OSError):
            continue  # verify lists it
        text = wanted.decode(header.values)
        uid = header.media_sop_instance_uid or text["SOPInstanceUID"]
        text["SOPInstanceUID"] = uid
        text["SOPClassUID"] = header.media_sop_class_uid or text["SOPClassUID"]
        if not uid or newest.get(uid, (-1,))[0] >= status.st_mtime_ns:
            continue
        record = make_record(
            text,
            header.transfer_syntax,
            header.source,
            relative,
            status.st_size,
            status.st_mtime_ns,
        )
        newest[uid] = (status.st_mtime_ns, record)
    return (record for _, record in newest.values())


def build_index(meta: int, meta_path: Path, root: Path, records: Iterator[Record]) -> Index:
    """A new index of ``records`` in place of the one in ``meta`` (a descriptor of
    ``meta_path``), which must not be open. Raises StoreError or OSError."""
    _remove_index_files(meta, _NEW_INDEX)  # a killed rebuild's
    fresh = Index(meta_path / _NEW_INDEX, root)
    try:
        fresh.fill(records)
        if (meta_path / INDEX_NAME).is_file():  # the jobs are not in the files: kept
            fresh.copy_jobs(meta_path / INDEX_NAME)
    finally:
        fresh.close()  # checkpoints and removes its WAL: one file to rename
    # The old index's WAL must not meet the new file; a kill in between leaves an index
    # that lags the files, which the next rebuild mends.
    for suffix in _SIDE_FILES:
        _remove(meta, INDEX_NAME + suffix)
    os.replace(_NEW_INDEX, INDEX_NAME, src_dir_fd=meta, dst_dir_fd=meta)
    return Index(meta_path / INDEX_NAME, root)


def _remove_index_files(meta: int, name: str) -> None:
    for suffix in ("", *_SIDE_FILES):
        _remove(meta, name + suffix)


def _remove(directory: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=directory)


def verify(tree: Tree, index: Index, wanted: frozenset[int]) -> list[str]:
    """One line per problem: the index file's own damage, then per path a file missing,
    changed in size, unreadable (not a complete Part-10 file, or a link), or not
    indexed. Reads every file."""
    problems = [f"damaged index: {line}" for line in index.damage()]
    indexed = index.files()
    on_disk = dict(tree.walk())
    for path in sorted(indexed.keys() | on_disk.keys()):
        status = on_disk.get(path)
        if status is None:
            uid, _ = indexed[path]
            problems.append(f"missing: {path} (SOP Instance UID {uid})")
            continue
        if path in indexed and stat.S_ISREG(status.st_mode) and status.st_size != indexed[path][1]:
            problems.append(f"changed: {path} has {status.st_size} bytes, not {indexed[path][1]}")
            continue
        why = _unreadable(tree, path, status, wanted)
        if path not in indexed:
            problems.append(f"unindexed: {path} ({why})" if why else f"unindexed: {path}")
        elif why:
            problems.append(f"unreadable: {path} ({why})")
    return problems


def _unreadable(tree: Tree, path: str, status: os.stat_result, wanted: frozenset[int]) -> str:
    """Why the file at ``path`` is not a complete Part-10 file, or ""."""
    if stat.S_ISLNK(status.st_mode):
        return "a symbolic link, not followed"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    try:
        read_file(tree, path, wanted)
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""

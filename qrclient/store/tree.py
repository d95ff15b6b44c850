"""The store's folders, reached only through directory descriptors, never through a link.

Every create, rename, stat and delete under the root is made relative to the
descriptor of its directory, and every directory is opened from its parent's with
``O_NOFOLLOW``: a symbolic link planted anywhere in the store (a patient folder, the
store's own ``.qrclient``) fails the operation instead of leading outside the root.
A path read from the index is checked too: an edited row cannot name ``../x``.

A retrieve stores series after series, so descriptors are kept per directory (a few
dozen, least recently used first out): an instance costs a rename between two open
descriptors, as cheap as the plain rename it replaces.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Iterator

META_DIR = ".qrclient"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KEPT = 64  # open directory descriptors
# A link, or something gone or not a directory where a folder of the path should be.
_UNREACHABLE = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ELOOP))


def open_directory(name: str, parent: int | None, *, create: bool) -> int:
    """A descriptor of the real directory ``name`` in ``parent`` (made if ``create``).

    OSError: ELOOP if a link stands there, ENOTDIR if a file.
    """
    try:
        return _open_directory(name, parent)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # made meanwhile: then it is opened
        os.mkdir(name, 0o777, dir_fd=parent)
    return _open_directory(name, parent)


def _open_directory(name: str, parent: int | None) -> int:
    try:
        return os.open(name, _DIRECTORY, dir_fd=parent)
    except NotADirectoryError:  # what Linux says of a link to a directory, too
        if is_link(name, parent):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def split(relative: str) -> tuple[str, str]:
    """(directory, file name) of a ``/``-separated path under the root; ValueError if it
    could leave the root or reach the store's own folder."""
    parts = relative.split("/")
    if (
        any(part in ("", ".", "..") or "\0" in part for part in parts)
        or parts[0] == META_DIR
        or (os.altsep is not None and os.altsep in relative)
    ):
        raise ValueError(f"{relative!r} is not a path inside the store")
    directory, _, name = relative.rpartition("/")
    return directory, name


def is_link(name: str, directory: int | None) -> bool:
    """Whether ``name`` in ``directory`` is a symbolic link (False if absent)."""
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=directory).st_mode)
    except FileNotFoundError:
        return False


class Tree:
    """Files and folders under the root, by ``/``-separated relative path."""

    def __init__(self, root: int) -> None:
        self._root = root  # the root's descriptor; the store owns and closes it
        self._directories: OrderedDict[str, int] = OrderedDict()

    def close(self) -> None:
        for descriptor in self._directories.values():
            os.close(descriptor)
        self._directories.clear()

    def directory(self, relative: str, *, create: bool = False) -> int:
        """The descriptor of a directory under the root ("" for the root itself)."""
        if not relative:
            return self._root
        kept = self._directories
        descriptor = kept.get(relative)
        if descriptor is not None:
            kept.move_to_end(relative)
            return descriptor
        parent, _, name = relative.rpartition("/")
        descriptor = open_directory(name, self.directory(parent, create=create), create=create)
        kept[relative] = descriptor
        if len(kept) > _KEPT:
            os.close(kept.popitem(last=False)[1])
        return descriptor

    def forget(self, relative: str) -> None:
        """Close a kept directory and those under it (it may have been removed)."""
        prefix = f"{relative}/"
        for kept in [d for d in self._directories if d == relative or d.startswith(prefix)]:
            os.close(self._directories.pop(kept))

    def place(self, source: int, name: str, relative: str) -> None:
        """Rename ``name`` in directory ``source`` to ``relative``, making its folders.

        A link at ``relative`` itself is replaced, not followed (rename never follows).
        """
        directory, target = split(relative)
        try:
            os.replace(
                name, target, src_dir_fd=source, dst_dir_fd=self.directory(directory, create=True)
            )
        except FileNotFoundError:
            # A kept folder was removed meanwhile (ours exists: it is open): anew, once.
            self.forget(directory)
            os.replace(
                name, target, src_dir_fd=source, dst_dir_fd=self.directory(directory, create=True)
            )

    def stat(self, relative: str) -> os.stat_result | None:
        """The file's status, not following a link; None where the path cannot be
        reached (absent, a link on the way, or not a path inside the store)."""
        try:
            directory, name = split(relative)
            return os.stat(name, dir_fd=self.directory(directory), follow_symlinks=False)
        except ValueError:
            return None
        except OSError as exc:
            if exc.errno in _UNREACHABLE:
                return None
            raise

    def unlink(self, relative: str) -> None:
        """Delete a file; nothing if it is absent or unreachable. OSError otherwise."""
        try:
            directory, name = split(relative)
            os.unlink(name, dir_fd=self.directory(directory))
        except ValueError:
            return
        except OSError as exc:
            if exc.errno not in _UNREACHABLE:
                raise

    def open(self, relative: str) -> int:
        """A descriptor to read the file at ``relative``; OSError (ELOOP for a link)."""
        try:
            directory, name = split(relative)
        except ValueError as exc:
            raise OSError(errno.EINVAL, str(exc), relative) from None
        return os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.directory(directory)
        )

    def walk(self) -> Iterator[tuple[str, os.stat_result]]:
        """(relative path, status) of everything under the root that is not a directory
        (links included, not followed), outside the store's own folder."""
        stack = [("", os.dup(self._root))]
        try:
            while stack:
                relative, descriptor = stack.pop()
                try:
                    with os.scandir(descriptor) as entries:
                        found = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
                    for name, status in found:
                        path = f"{relative}/{name}" if relative else name
                        if not stat.S_ISDIR(status.st_mode):
                            yield path, status
                        elif path != META_DIR:
                            with contextlib.suppress(OSError):  # removed meanwhile: nothing
                                stack.append((path, open_directory(name, descriptor, create=False)))
                finally:
                    os.close(descriptor)
        finally:
            for _, descriptor in stack:
                os.close(descriptor)

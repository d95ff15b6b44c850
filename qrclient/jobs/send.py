"""Send jobs: files, folders or store selections to a peer by C-STORE, in parallel.

1. Scan: each file's meta group is read (a few hundred bytes) for its SOP class,
   instance and transfer syntax; nothing is decoded. Files found in folders that are
   not DICOM (a README, a DICOMDIR) are skipped; a file named on its own that is not
   DICOM fails. An instance met twice is sent once.
2. Contexts: one per (SOP class, transfer syntax) found, and one uncompressed per SOP
   class to convert to if the peer refuses a syntax; SOP classes are grouped so each
   association proposes at most 128.
3. Send: up to ``parallel`` associations per group take files from one queue; each file
   ends sent, warned (the peer's status), failed (with the reason) or skipped.

An association that fails ends its worker; the others go on with the queue, and what no
one could send fails with the last network error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

import anyio

from qrclient.net.association import Association, open_association
from qrclient.net.errors import DicomNetworkError, NoAcceptedContext
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest
from qrclient.net.settings import Settings
from qrclient.net.status import Category
from qrclient.net.uids import EXPLICIT_LE, IMPLICIT_LE, MAX_CONTEXTS, MEDIA_DIRECTORY
from qrclient.ops.progress import Progress
from qrclient.ops.store_scu import Instance, NotSent, c_store, file_identity
from qrclient.store.part10 import (
    MEDIA_SOP_CLASS,
    MEDIA_SOP_INSTANCE,
    TRANSFER_SYNTAX,
    clean_uid,
    read_meta,
)
from qrclient.store.tree import META_DIR

_UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE)


class FileState(Enum):
    SENT = "sent"  # the peer answered Success
    WARNING = "warning"  # the peer stored it with a warning status
    FAILED = "failed"
    SKIPPED = "skipped"  # not an instance to send (found in a folder), or met before


class Failure(Enum):
    """Why a file failed: what the exit code follows."""

    INPUT = "input"  # not DICOM, unreadable, changed
    REFUSED = "refused"  # the peer refused it: a status, its SOP class or syntax
    NETWORK = "network"  # the association failed before the peer answered


@dataclass(slots=True)
class FileOutcome:
    """What became of one file; ``detail`` says why it failed, warned or was skipped."""

    path: str
    state: FileState
    detail: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax: str = ""  # the file's
    sent_as: str = ""  # the transfer syntax sent in ("" if not sent)
    status: int | None = None  # the peer's C-STORE status
    failure: Failure | None = None


@dataclass(slots=True)
class SendOutcome:
    files: list[FileOutcome] = field(default_factory=list)
    sent_bytes: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    def count(self, state: FileState) -> int:
        return sum(1 for f in self.files if f.state is state)

    def failures(self, kind: Failure) -> int:
        return sum(1 for f in self.files if f.failure is kind)


# -- scanning ----------------------------------------------------------------------------


@dataclass(slots=True)
class Scan:
    instances: list[Instance] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)  # skipped or failed already


def scan(paths: Iterable[str]) -> Scan:
    """Read the meta group of each file, and of every file in each folder (recursively;
    a store's own ``.qrclient`` folder is left out). Missing paths are the caller's to
    refuse first."""
    result = Scan()
    seen: dict[str, str] = {}
    for path, named in _files(paths):
        try:
            instance = read_instance(path)
        except ValueError as exc:
            if named:
                result.outcomes.append(_failed(path, str(exc), Failure.INPUT))
            else:
                result.outcomes.append(FileOutcome(path, FileState.SKIPPED, str(exc)))
            continue
        if instance.sop_class_uid == MEDIA_DIRECTORY:
            detail = "a DICOMDIR (an index of the files), not an instance"
            result.outcomes.append(FileOutcome(path, FileState.SKIPPED, detail))
            continue
        first = seen.get(instance.sop_instance_uid)
        if first is not None:
            detail = "given twice" if first == path else f"the same SOP Instance UID as {first}"
            result.outcomes.append(_outcome(instance, FileState.SKIPPED, detail))
            continue
        seen[instance.sop_instance_uid] = path
        result.instances.append(instance)
    return result


def _files(paths: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Each file, and whether it was named itself (not found in a folder)."""
    for path in paths:
        if not os.path.isdir(path):
            yield path, True
            continue
        for folder, folders, names in os.walk(path):
            folders[:] = sorted(f for f in folders if f != META_DIR)
            for name in sorted(names):
                yield os.path.join(folder, name), False


def read_instance(path: str) -> Instance:
    """What a Part-10 file's meta group says; ValueError (the reason) if it is not one."""
    try:
        file = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    try:
        meta, offset = read_meta(file)
        status = os.fstat(file)
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(file)
    size = status.st_size - offset
    if size <= 0:
        raise ValueError("a DICOM file without a data set")
    return Instance(
        path,
        clean_uid(meta.get(MEDIA_SOP_CLASS, ""), "its Media Storage SOP Class UID"),
        clean_uid(meta.get(MEDIA_SOP_INSTANCE, ""), "its Media Storage SOP Instance UID"),
        clean_uid(meta.get(TRANSFER_SYNTAX, ""), "its Transfer Syntax UID"),
        offset,
        size,
        file_identity(status),
    )


def _lost(error: DicomNetworkError | None, associated: bool) -> str:
    """Why a file failed with its association: sent or not, as far as we know."""
    if associated or isinstance(error, NoAcceptedContext):
        return str(error)
    return f"not sent: {error}"


def _kind(error: DicomNetworkError | None) -> Failure:
    """A peer that accepts none of the contexts refuses the files; else the network failed."""
    return Failure.REFUSED if isinstance(error, NoAcceptedContext) else Failure.NETWORK


def _outcome(instance: Instance, state: FileState, detail: str = "") -> FileOutcome:
    return FileOutcome(
        instance.path,
        state,
        detail,
        instance.sop_instance_uid,
        instance.sop_class_uid,
        instance.transfer_syntax,
    )


def _failed(path: str, detail: str, failure: Failure) -> FileOutcome:
    return FileOutcome(path, FileState.FAILED, detail, failure=failure)


# -- contexts ----------------------------------------------------------------------------


def contexts_for(instances: Iterable[Instance]) -> list[ContextRequest]:
    """One context per (SOP class, transfer syntax) found, and per SOP class one
    uncompressed to convert to (unless both uncompressed syntaxes have their own)."""
    syntaxes: dict[str, dict[str, None]] = {}
    for instance in instances:
        syntaxes.setdefault(instance.sop_class_uid, {})[instance.transfer_syntax] = None
    contexts = []
    for sop_class, found in syntaxes.items():
        contexts += [ContextRequest(sop_class, (syntax,)) for syntax in found]
        if not set(_UNCOMPRESSED) <= found.keys():
            contexts.append(ContextRequest(sop_class, _UNCOMPRESSED))
    return contexts


def groups(instances: Sequence[Instance]) -> list[list[Instance]]:
    """The instances in groups whose contexts fit in one association (128), by SOP class."""
    by_class: dict[str, list[Instance]] = {}
    for instance in instances:
        by_class.setdefault(instance.sop_class_uid, []).append(instance)
    result: list[list[Instance]] = []
    room = 0
    for members in by_class.values():
        needed = len(contexts_for(members))
        if not result or needed > room:
            result.append([])
            room = MAX_CONTEXTS
        result[-1].extend(members)
        room -= needed
    return result


# -- sending -----------------------------------------------------------------------------


@dataclass
class SendJob:
    """Send the instances of a scan to ``peer`` over up to ``parallel`` associations."""

    peer: Peer
    scan: Scan
    settings: Settings = field(default_factory=Settings)
    parallel: int = 2
    progress: Progress = field(default_factory=Progress)
    outcome: SendOutcome = field(default_factory=SendOutcome)
    _counts: dict[FileState, int] = field(default_factory=dict, init=False, repr=False)
    # SOP Instance UIDs with an outcome: the others were not reached when interrupted.
    _ended: set[str] = field(default_factory=set, init=False, repr=False)
    _last_error: DicomNetworkError | None = field(default=None, init=False, repr=False)

    async def run(self) -> SendOutcome:
        self.outcome.files.extend(self.scan.outcomes)
        self.progress.expect(len(self.scan.instances))
        try:
            for group in groups(self.scan.instances):
                await self._send_group(group)
        except anyio.get_cancelled_exc_class():
            self.outcome.cancelled = True
            raise
        finally:
            self._settle()
        return self.outcome

    async def _send_group(self, instances: list[Instance]) -> None:
        queue = iter(instances)  # one event loop: next() never interleaves between workers
        contexts = contexts_for(instances)

        async def worker() -> None:
            instance = next(queue, None)
            if instance is None:
                return
            associated = False
            try:
                async with open_association(self.peer, contexts, self.settings) as association:
                    associated = True
                    while instance is not None:
                        await self._send_one(association, instance)
                        instance = next(queue, None)
            except DicomNetworkError as exc:  # this worker is done; the others go on
                self._last_error = exc
                if instance is not None:  # in flight (the peer did not answer), or first
                    self._end(
                        _outcome(instance, FileState.FAILED, _lost(exc, associated)), _kind(exc)
                    )

        async with anyio.create_task_group() as group:
            for _ in range(min(self.parallel, len(instances))):
                group.start_soon(worker)
        for instance in queue:  # every worker's association failed
            error = self._last_error
            self._end(_outcome(instance, FileState.FAILED, _lost(error, False)), _kind(error))

    async def _send_one(self, association: Association, instance: Instance) -> None:
        try:
            stored = await c_store(association, instance)
        except NotSent as exc:
            failure = Failure.REFUSED if exc.refused else Failure.INPUT
            self._end(_outcome(instance, FileState.FAILED, exc.reason), failure)
            return
        status = stored.status
        outcome = _outcome(instance, FileState.SENT)
        outcome.sent_as, outcome.status = stored.transfer_syntax, status.code
        self.outcome.sent_bytes += stored.sent_bytes
        self.progress.add(received_bytes=stored.sent_bytes)
        comment = f": {stored.error_comment}" if stored.error_comment else ""
        if status.category is Category.WARNING:
            outcome.state, outcome.detail = FileState.WARNING, f"{status}{comment}"
        elif status.category is not Category.SUCCESS:
            outcome.state, outcome.detail = FileState.FAILED, f"{status}{comment}"
            outcome.failure = Failure.REFUSED
        self._end(outcome)

    def _end(self, outcome: FileOutcome, failure: Failure | None = None) -> None:
        outcome.failure = failure or outcome.failure
        self.outcome.files.append(outcome)
        self._ended.add(outcome.sop_instance_uid)
        counts = self._counts
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
        self.progress.update(
            0,
            completed=counts.get(FileState.SENT, 0),
            warning=counts.get(FileState.WARNING, 0),
            failed=counts.get(FileState.FAILED, 0),
        )

    def _settle(self) -> None:
        """Interrupted: what was not sent is said so."""
        for instance in self.scan.instances:
            if instance.sop_instance_uid not in self._ended:
                detail = "not sent: interrupted"
                self.outcome.files.append(_outcome(instance, FileState.SKIPPED, detail))
        self.outcome.seconds = self.progress.snapshot().elapsed
        self.progress.finish()

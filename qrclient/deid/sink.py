"""A store's sink and index that pseudonymise every instance before it is written.

The plain receive path never decodes: fragments go from the network into the store's
``Incoming``, which reads a few attributes when sealed. This wrapper sits in front of
the store (it is a ``RetrieveStore``), so that path is untouched when pseudonymisation
is off. With it on, each instance is:

1. received into memory, or, past ``MEMORY_LIMIT`` (8 MiB, as the store), into an
   anonymous temporary file in the store's own ``incoming`` folder (O_TMPFILE: it has
   no name, so nothing of it is left if the process dies);
2. at ``seal``, before the C-STORE is answered: decoded by pydicom (elements over
   ``DEFER_SIZE`` are read from that file only when written, so memory holds one big
   element, such as the pixel data, at a time), checked, pseudonymised (``engine``),
   and encoded again in the transfer syntax it arrived in (pixel data untouched);
3. handed to the real store under its pseudonymous SOP Instance UID, which writes,
   checks and indexes it as any instance: the index holds only pseudonymous values;
4. at ``place``: its linkage row is appended (``linkage``), then the store places it.

Whatever fails refuses the instance (the store's 0xA700 path): nothing of it is
stored. The request's scope is checked against the original Study and Series
Instance UIDs (``identifiers``), as the retrieve asked for originals.

As an index, the wrapper answers for originals: ``present`` maps the planned SOP
Instance UIDs to their pseudonyms under the key and asks the store, so a rerun skips
what is stored, as a plain one does.
"""

from __future__ import annotations

import tempfile
import warnings
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO, DicomFileLike, DicomIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from qrclient.deid.engine import Pseudonymizer
from qrclient.deid.linkage import LinkageRow, LinkageWriter
from qrclient.store import Store, StoredInstance, StoreError
from qrclient.store.errors import os_failure
from qrclient.store.incoming import MEMORY_LIMIT
from qrclient.store.incoming import Incoming as StoreIncoming
from qrclient.store.part10 import clean_announced, file_meta
from qrclient.store.store import INCOMING_DIR
from qrclient.store.tree import META_DIR

DEFER_SIZE = 256 * 1024  # elements larger than this are read from the file when written
_COPY = 1 << 20  # bytes copied at a time from a temporary file


class PseudonymizingStore:
    """``store`` as a retrieve's sink and index, pseudonymising every instance."""

    def __init__(
        self, store: Store, pseudonymizer: Pseudonymizer, linkage: LinkageWriter | None
    ) -> None:
        self.store = store
        self.pseudonymizer = pseudonymizer
        self.linkage = linkage
        self.scratch = store.root / META_DIR / INCOMING_DIR
        self._pending: set[PseudonymizingIncoming] = set()

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
    ) -> PseudonymizingIncoming:
        try:
            announced = clean_announced(sop_class_uid, sop_instance_uid, transfer_syntax, source)
        except ValueError as exc:
            raise StoreError(f"cannot store an instance: {exc}") from None
        incoming = PseudonymizingIncoming(self, *announced)
        self._pending.add(incoming)
        return incoming

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]:
        """Those of the original ``sop_instance_uids`` whose pseudonymised instance is stored."""
        by_pseudonym = {self.pseudonymizer.key.uid(uid): uid for uid in sop_instance_uids}
        return {by_pseudonym[uid] for uid in self.store.present(by_pseudonym)}

    def instances_in_study(self, study_instance_uid: str) -> int:
        return self.store.instances_in_study(self.pseudonymizer.key.uid(study_instance_uid))

    def series_counts(self, series_uid: str) -> int:
        """Instances here of the series with the original ``series_uid``."""
        return self.store.series_counts(self.pseudonymizer.key.uid(series_uid))

    def forget(self, incoming: PseudonymizingIncoming) -> None:
        self._pending.discard(incoming)

    def close(self) -> None:
        """Drop instances still being received; write the linkage file out."""
        for incoming in list(self._pending):
            incoming.discard()
        if self.linkage is not None:
            self.linkage.close()


class PseudonymizingIncoming:
    """One instance: received whole, then pseudonymised into the store at ``seal``."""

    def __init__(
        self,
        owner: PseudonymizingStore,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        source: str,
    ) -> None:
        self._owner = owner
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax = transfer_syntax
        self.source = source
        header = file_meta(sop_class_uid, sop_instance_uid, transfer_syntax, source)
        self._fragments: list[bytes | memoryview] | None = [header]
        self._size = len(header)
        self._file: BinaryIO | None = None  # once spilled
        self._stored: StoreIncoming | None = None  # the pseudonymised instance, once sealed
        self._row: LinkageRow | None = None
        self._originals: dict[str, str] | None = None
        self._finished = False

    def write(self, fragment: bytes | memoryview) -> None:
        if self._finished or self._stored is not None:
            raise StoreError(f"{self.sop_instance_uid}: written after it was sealed or finished")
        try:
            if self._fragments is None:
                assert self._file is not None
                self._file.write(fragment)
                return
            self._fragments.append(fragment)
            self._size += len(fragment)
            if self._size > MEMORY_LIMIT:
                # Anonymous (O_TMPFILE), closed by _close_file: it spans many writes.
                self._file = tempfile.TemporaryFile(dir=self._owner.scratch)  # noqa: SIM115
                self._file.writelines(self._fragments)
                self._fragments = None
        except OSError as exc:
            self._fail(exc)

    def seal(self) -> None:
        """Decode, check, pseudonymise and encode the instance; hand it to the store,
        which checks it in turn. StoreError (nothing kept) if any of it fails."""
        if self._finished or self._stored is not None:
            raise StoreError(f"{self.sop_instance_uid}: already sealed or finished")
        with warnings.catch_warnings():
            # pydicom's warnings about odd values quote them: patient data, never shown.
            warnings.simplefilter("ignore")
            self._seal()

    def _seal(self) -> None:
        uid = self.sop_instance_uid
        try:
            dataset = self._decode()
            found = str(dataset.get("SOPInstanceUID", "") or "").strip(" \x00")
        except OSError as exc:
            self._fail(exc)
        except Exception as exc:
            self.discard()
            raise StoreError(f"{uid} was not stored: the data set does not parse ({exc})") from None
        if found not in ("", uid):
            self.discard()
            raise StoreError(
                f"{uid} was not stored: its data set has SOP Instance UID {found}, not the "
                "one its C-STORE announced"
            )
        self._originals = {
            keyword: str(dataset.get(keyword, "") or "").strip(" \x00")
            for keyword in ("StudyInstanceUID", "SeriesInstanceUID")
        }
        try:
            self._row = self._owner.pseudonymizer.apply(dataset)
        except Exception as exc:
            self.discard()
            why = f"it could not be pseudonymised ({exc})"
            raise StoreError(f"{uid} was not stored: {why}") from None
        self._store(dataset)

    def _decode(self) -> Dataset:
        if self._fragments is not None:
            whole = b"".join(self._fragments)
            self._fragments = None
            return pydicom.dcmread(DicomBytesIO(whole))
        assert self._file is not None
        self._file.flush()
        self._file.seek(0)
        return pydicom.dcmread(self._file, defer_size=DEFER_SIZE)

    def _store(self, dataset: Dataset) -> None:
        """Encode ``dataset`` into a new instance of the real store, and seal that."""
        pseudonym = self._owner.pseudonymizer.key.uid(self.sop_instance_uid)
        stored = self._owner.store.begin(
            self.sop_class_uid, pseudonym, self.transfer_syntax, self.source
        )
        try:
            try:
                scratch = None if self._file is None else self._owner.scratch
                _encode(dataset, self.transfer_syntax, stored, scratch)
            except OSError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"{self.sop_instance_uid} was not stored: its pseudonymised data set "
                    f"cannot be encoded ({exc})"
                ) from None
            stored.seal()
        except OSError as exc:
            stored.discard()
            self._fail(exc)
        except BaseException:
            stored.discard()
            self.discard()
            raise
        self._stored = stored
        self._close_file()

    @property
    def identifiers(self) -> Mapping[str, str] | None:
        """The original Study and Series Instance UIDs (None before ``seal``): what the
        retrieve's request names."""
        return self._originals if self._stored is not None else None

    def place(self) -> StoredInstance:
        """Append the instance's linkage row, then let the store place it."""
        stored, row = self._stored, self._row
        if self._finished or stored is None or row is None:
            raise StoreError(f"{self.sop_instance_uid}: placed before it was sealed")
        linkage = self._owner.linkage
        if linkage is not None:
            self._link(linkage, row)
        try:
            placed = stored.place()
        finally:
            self._finish()
        return placed

    def _link(self, linkage: LinkageWriter, row: LinkageRow) -> None:
        try:
            linkage.add(row)
        except OSError as exc:
            self.discard()
            raise os_failure(
                f"{self.sop_instance_uid} was not stored: cannot write the linkage file "
                f"{linkage.path}",
                exc,
            ) from None

    def discard(self) -> None:
        """Drop the instance; harmless once finished."""
        if self._finished:
            return
        if self._stored is not None:
            self._stored.discard()
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        self._fragments = None
        self._stored = None
        self._close_file()
        self._owner.forget(self)

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()  # anonymous: closing deletes it

    def _fail(self, exc: OSError) -> None:
        self.discard()
        raise os_failure(f"cannot store {self.sop_instance_uid}", exc) from exc


def _encode(
    dataset: Dataset, transfer_syntax: str, target: StoreIncoming, scratch: Path | None
) -> None:
    """Write ``dataset``'s elements (not its file meta) to ``target`` in
    ``transfer_syntax``: through memory, or with ``scratch`` (a big instance) through
    an anonymous file there, copied on a megabyte at a time."""
    syntax = UID(transfer_syntax)
    if scratch is None:
        memory = DicomBytesIO()
        _write_elements(memory, dataset, syntax)
        data = memory.getvalue()
        if syntax.is_deflated:
            deflate = zlib.compressobj(wbits=-15)
            data = deflate.compress(data) + deflate.flush()
        target.write(data)
        return
    with tempfile.TemporaryFile(dir=scratch) as file:
        _write_elements(DicomFileLike(file), dataset, syntax)
        file.seek(0)
        streaming = zlib.compressobj(wbits=-15) if syntax.is_deflated else None
        while chunk := file.read(_COPY):
            target.write(streaming.compress(chunk) if streaming is not None else chunk)
        if streaming is not None:
            target.write(streaming.flush())


def _write_elements(file: DicomIO, dataset: Dataset, syntax: UID) -> None:
    file.is_little_endian = syntax.is_little_endian
    file.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(file, dataset)

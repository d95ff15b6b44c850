"""Setting up a pseudonymised retrieve: the store's record, its key, the linkage file.

Everything is checked before anything is written: a store holding plain instances,
another key or other dates than the store was pseudonymised with, an unreadable key
or linkage file are each one DeidError. Then the linkage file is opened, a new
store's key created and its record written, and the store is wrapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qrclient.deid.engine import Pseudonymizer
from qrclient.deid.errors import DeidError
from qrclient.deid.key import PseudonymKey, create_key, default_key_path, load_key
from qrclient.deid.linkage import LinkageWriter
from qrclient.deid.marker import Dates, StoreMark, read_mark, write_mark
from qrclient.deid.sink import PseudonymizingStore
from qrclient.store import Store


@dataclass(frozen=True, slots=True)
class PseudonymizeOptions:
    dates: Dates | None = None  # None: as the store was pseudonymised (new: the default)
    key_file: Path | None = None  # None: the store's own, in the configuration folder
    linkage: Path | None = None  # checked by linkage.check_linkage_path


def default_config_folder() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("qrclient"))


def open_pseudonymizing(
    store: Store, options: PseudonymizeOptions, config_folder: Path | None = None
) -> PseudonymizingStore:
    """``store`` wrapped to pseudonymise what it receives; DeidError if it cannot be."""
    folder = default_config_folder() if config_folder is None else config_folder
    mark = read_mark(store.root)
    if mark is not None:
        dates, key = _check_marked(store, mark, options, folder)
        return PseudonymizingStore(store, Pseudonymizer(key, dates), _open_linkage(options))
    if store.summary().instances:
        raise DeidError(
            f"the store {store.root} holds plain instances: pseudonymised ones may not join them",
            "retrieve with --pseudonymize into a new or empty store (--out DIR)",
        )
    dates = options.dates or Dates()
    store_id = os.urandom(8).hex()
    key_path = options.key_file or default_key_path(folder, store_id)
    given = options.key_file is not None and key_path.exists()
    existing = load_key(key_path, _what(options)) if given else None
    linkage = _open_linkage(options)
    try:
        key = existing or create_key(key_path, _what(options))
        write_mark(store.root, StoreMark(store_id, key.fingerprint, dates))
    except BaseException:
        if linkage is not None:
            linkage.close()
        raise
    return PseudonymizingStore(store, Pseudonymizer(key, dates), linkage)


def _check_marked(
    store: Store, mark: StoreMark, options: PseudonymizeOptions, folder: Path
) -> tuple[Dates, PseudonymKey]:
    """The dates and key to go on with in a pseudonymised store: the store's own."""
    dates = options.dates or mark.dates
    if dates != mark.dates:
        raise DeidError(
            f"the store {store.root} was pseudonymised with {mark.dates.describe()}, "
            f"not {dates.describe()}",
            f"give {mark.dates.option()}, or retrieve into another store (--out DIR)",
        )
    key_path = options.key_file or default_key_path(folder, mark.store_id)
    key = load_key(key_path, _what(options))
    if key.fingerprint != mark.key_fingerprint:
        raise DeidError(
            f"{_what(options)} {key_path}: not the key the store {store.root} was "
            "pseudonymised with (under another key its patients would get other "
            "pseudonyms)",
            "give that key with --pseudonym-key FILE",
        )
    return dates, key


def _what(options: PseudonymizeOptions) -> str:
    return "the store's key" if options.key_file is None else "--pseudonym-key"


def _open_linkage(options: PseudonymizeOptions) -> LinkageWriter | None:
    return None if options.linkage is None else LinkageWriter.open(options.linkage)

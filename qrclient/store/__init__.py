"""The local store: received instances as DICOM Part-10 files, and an index of them."""

from qrclient.store.errors import (
    StoreBusy,
    StoreConflict,
    StoreDamaged,
    StoreError,
    StoreFull,
    StoreUnwritable,
)
from qrclient.store.incoming import Incoming
from qrclient.store.index import StoredInstance, StoreSummary
from qrclient.store.layout import DEFAULT_LAYOUT, PLACEHOLDER, Layout
from qrclient.store.store import Store

__all__ = [
    "DEFAULT_LAYOUT",
    "PLACEHOLDER",
    "Incoming",
    "Layout",
    "Store",
    "StoreBusy",
    "StoreConflict",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreSummary",
    "StoreUnwritable",
    "StoredInstance",
]

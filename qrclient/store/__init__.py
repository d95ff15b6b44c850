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
from qrclient.store.jobs import ItemStatus, Job, JobItem, JobState, read_jobs
from qrclient.store.layout import DEFAULT_LAYOUT, PLACEHOLDER, Layout
from qrclient.store.store import Store

__all__ = [
    "DEFAULT_LAYOUT",
    "PLACEHOLDER",
    "Incoming",
    "ItemStatus",
    "Job",
    "JobItem",
    "JobState",
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
    "read_jobs",
]

"""qrclient: an asynchronous DICOM query/retrieve client.

The names below are imported on first use, so ``import qrclient`` stays cheap (the
command line's ``--help`` never pays for pydicom or pynetdicom).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "echo": "qrclient.api",
    "find": "qrclient.api",
    "Peer": "qrclient.net",
    "Settings": "qrclient.net",
    "Timeouts": "qrclient.net",
    "QueryOptions": "qrclient.net",
    "open_association": "qrclient.net",
    "DicomNetworkError": "qrclient.net",
    "ConnectFailed": "qrclient.net",
    "AssociationRejected": "qrclient.net",
    "AssociationAborted": "qrclient.net",
    "NoAcceptedContext": "qrclient.net",
    "DicomTimeout": "qrclient.net",
    "ProtocolError": "qrclient.net",
    "TlsFailed": "qrclient.net",
    "TlsSettings": "qrclient.net",
    "FailureStatus": "qrclient.net",
    "Level": "qrclient.vocabulary",
    "Model": "qrclient.vocabulary",
    "QueryError": "qrclient.ops.query",
    "build_query": "qrclient.ops.query",
    "FindOutcome": "qrclient.ops.find",
    "FindState": "qrclient.ops.find",
}

__all__ = [  # noqa: RUF022 - grouped as _EXPORTS is
    "__version__",
    "echo",
    "find",
    "Peer",
    "Settings",
    "Timeouts",
    "QueryOptions",
    "open_association",
    "DicomNetworkError",
    "ConnectFailed",
    "AssociationRejected",
    "AssociationAborted",
    "NoAcceptedContext",
    "DicomTimeout",
    "ProtocolError",
    "TlsFailed",
    "TlsSettings",
    "FailureStatus",
    "Level",
    "Model",
    "QueryError",
    "build_query",
    "FindOutcome",
    "FindState",
]

if TYPE_CHECKING:
    from qrclient.api import echo, find
    from qrclient.net import (
        AssociationAborted,
        AssociationRejected,
        ConnectFailed,
        DicomNetworkError,
        DicomTimeout,
        FailureStatus,
        NoAcceptedContext,
        Peer,
        ProtocolError,
        QueryOptions,
        Settings,
        Timeouts,
        TlsFailed,
        TlsSettings,
        open_association,
    )
    from qrclient.ops.find import FindOutcome, FindState
    from qrclient.ops.query import QueryError, build_query
    from qrclient.vocabulary import Level, Model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qrclient' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

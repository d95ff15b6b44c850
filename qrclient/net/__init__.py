"""The network core: DICOM upper layer and DIMSE on anyio, as association requestor."""

from qrclient.net.association import Association, Message, PeerReleased, open_association
from qrclient.net.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectFailed,
    DicomNetworkError,
    DicomTimeout,
    NoAcceptedContext,
    ProtocolError,
    TlsFailed,
)
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest, NegotiatedContext, QueryOptions
from qrclient.net.settings import Settings, Timeouts
from qrclient.net.status import Category, FailureStatus, Service, Status
from qrclient.net.tls import TlsSettings

__all__ = [
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "Category",
    "ConnectFailed",
    "ContextRequest",
    "DicomNetworkError",
    "DicomTimeout",
    "FailureStatus",
    "Message",
    "NegotiatedContext",
    "NoAcceptedContext",
    "Peer",
    "PeerReleased",
    "ProtocolError",
    "QueryOptions",
    "Service",
    "Settings",
    "Status",
    "Timeouts",
    "TlsFailed",
    "TlsSettings",
    "open_association",
]

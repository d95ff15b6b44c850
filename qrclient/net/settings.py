"""Connection settings: our AE title, our limits, the timeouts, TLS and the observer."""

from __future__ import annotations

from dataclasses import dataclass, field

from qrclient.net.events import Observer
from qrclient.net.tls import TlsSettings

DEFAULT_MAX_PDU = 1 << 20
DEFAULT_MAX_INSTANCE = 4 << 30  # bytes: the largest instance received, unless set


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; each is named in the error it raises, after the option that sets it."""

    connect: float = 10.0  # TCP connection established
    association: float = 30.0  # A-ASSOCIATE-AC/RJ after our request
    dimse: float = 60.0  # next DIMSE message (a C-FIND match may take the PACS a while)
    network: float = 30.0  # rest of a PDU once it started; release confirmation


@dataclass(frozen=True, slots=True)
class Settings:
    calling_ae: str = "QRCLIENT"
    max_pdu: int = DEFAULT_MAX_PDU  # the largest P-DATA-TF we accept
    timeouts: Timeouts = field(default_factory=Timeouts)
    observer: Observer | None = None  # told each step (net/events.py): -v, log pane, trace
    tls: TlsSettings | None = None  # None: plain TCP
    max_instance: int = DEFAULT_MAX_INSTANCE  # bytes of one received instance's data set

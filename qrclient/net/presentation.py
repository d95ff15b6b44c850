"""Presentation contexts: what we propose and what the peer accepted (PS3.8 9.3.2.2).

The contexts travel in the A-ASSOCIATE PDUs of :mod:`qrclient.net.acse`; this module
holds extended negotiation for query options, and
readable reasons for rejected contexts. UIDs are plain strings: pydicom is imported
only to name a SOP class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qrclient.net.uids import EXPLICIT_LE, IMPLICIT_LE

# Uncompressed syntaxes every peer supports; explicit first so VRs travel with the data.
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (EXPLICIT_LE, IMPLICIT_LE)

_RESULTS = {
    0: "accepted",
    1: "rejected by the peer's application",
    2: "rejected by the peer (no reason given)",
    3: "abstract syntax not supported",
    4: "none of the proposed transfer syntaxes supported",
}


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """C-FIND extended negotiation (PS3.4 C.5.1.1); proposed only when asked."""

    relational: bool = False
    datetime_matching: bool = False
    fuzzy_matching: bool = False

    @property
    def wanted(self) -> bool:
        return self.relational or self.datetime_matching or self.fuzzy_matching

    def encode(self) -> bytes:
        return bytes((self.relational, self.datetime_matching, self.fuzzy_matching))

    @classmethod
    def decode(cls, data: bytes) -> QueryOptions:
        flags = [bool(b) for b in data[:3]] + [False] * (3 - len(data[:3]))
        return cls(*flags)


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """One presentation context to propose.

    ``scp_role`` asks the peer to let us act as SCP for this SOP class (C-GET storage).
    """

    abstract_syntax: str
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES
    scp_role: bool = False
    query_options: QueryOptions | None = None


@dataclass(frozen=True, slots=True)
class NegotiatedContext:
    """The outcome of negotiating one context, as requestor or as acceptor.

    ``transfer_syntax`` is the accepted one (for a rejected context, whatever the answer
    carried). ``as_scp``: we act as SCP on it, i.e. we receive C-STORE requests.
    """

    context_id: int
    abstract_syntax: str
    result: int
    transfer_syntax: str | None
    as_scp: bool = False

    @property
    def accepted(self) -> bool:
        return self.result == 0

    @property
    def reason(self) -> str:
        return _RESULTS.get(self.result, f"result {self.result}")

    @property
    def name(self) -> str:
        return sop_class_name(self.abstract_syntax)


def sop_class_name(uid: str) -> str:
    """The SOP class's name when pydicom knows it, else the UID itself."""
    from pydicom.uid import UID  # not at the top: only naming needs pydicom, a slow import

    name = UID(uid).name
    return name if name and name != uid else uid

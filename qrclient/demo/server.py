"""The demo PACS: an embedded Q/R SCP (pynetdicom's server side) over the sample archive.

pynetdicom runs each association in a thread of its own; the catalogue is read-only once
built, so the handlers share it without locks. The listening socket gets TCP_NODELAY
once bound, accepted ones through the EVT_CONN_OPEN notification, which pynetdicom
triggers right after accepting (or connecting) and before any PDU is sent. C-MOVE
sub-operations go over qrclient's own associations (``move_store``), which set it too.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from qrclient.demo.catalogue import Catalogue, QueryRefused
from qrclient.demo.move_store import MoveRequest, MoveStoreAssociation, UnreachableDestination
from qrclient.demo.sample import sample_archive, sample_instances
from qrclient.net import Peer

_PATIENT_ROOT = {
    str(PatientRootQueryRetrieveInformationModelFind),
    str(PatientRootQueryRetrieveInformationModelGet),
    str(PatientRootQueryRetrieveInformationModelMove),
}
_QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
_SYNTAXES: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

PENDING = 0xFF00
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900

Log = Callable[[str], None]


@dataclass(frozen=True)
class Destination:
    """A C-MOVE destination the demo PACS knows: AE title, host and port."""

    ae_title: str
    host: str
    port: int


def set_nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _nodelay_on_open(event: Event) -> None:
    wrapper = event.assoc.dul.socket
    if wrapper is not None and wrapper.socket is not None:
        set_nodelay(wrapper.socket)


class _ApplicationEntity(AE):
    """pynetdicom's AE; associations for C-MOVE sub-operations go through qrclient's core.

    The C-MOVE handler passes ``move=`` through the destination it yields; pynetdicom
    hands it on to :meth:`associate` (see ``move_store`` for why).
    """

    def associate(
        self,
        addr: str | tuple[str, int, int],
        port: int,
        *args: Any,
        move: MoveRequest | None = None,
        **kwargs: Any,
    ) -> Association:
        if move is not None:
            host = addr if isinstance(addr, str) else addr[0]
            destination = Peer(str(kwargs["ae_title"]), host, port)
            store = MoveStoreAssociation.open(destination, self.ae_title, move)
            if store is None:  # known, but not reachable: its sub-operations fail
                return cast(Association, UnreachableDestination(destination))
            return cast(Association, store)
        return super().associate(addr, port, *args, **kwargs)


class DemoPacs:
    """The sample archive served on ``host:port`` (port 0: any free port) until stopped.

    ``destinations`` are the C-MOVE destinations it knows, by AE title; ``log`` gets
    one line per request (the ``--serve`` console), or nothing when None.
    """

    def __init__(
        self,
        ae_title: str = "DEMO",
        host: str = "127.0.0.1",
        port: int = 0,
        destinations: Sequence[Destination] = (),
        log: Log | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.destinations: Mapping[str, Destination] = {d.ae_title: d for d in destinations}
        self.archive = sample_archive()
        self.instances = sample_instances(self.archive)
        self.catalogue = Catalogue([i.dataset for i in self.instances], ae_title)
        self._log = log
        self._ae: _ApplicationEntity | None = None
        self._server: ThreadedAssociationServer | None = None

    @property
    def node(self) -> str:
        """The demo PACS as qrclient's NODE argument, ``AET@host:port``."""
        return f"{self.ae_title}@{self.host}:{self.port}"

    def start(self) -> None:
        """Listen (raises OSError if the port is taken) and serve in background threads."""
        ae = _ApplicationEntity(ae_title=self.ae_title)
        ae.require_called_aet = True  # as a real PACS would: NODE's AE title must be ours
        ae.add_supported_context(Verification, _SYNTAXES)
        for sop_class in _QUERY_RETRIEVE:
            ae.add_supported_context(sop_class, _SYNTAXES)
        # C-GET sends the instances back on the requestor's association: accept the
        # SCP role it proposes for each storage class we hold.
        for sop_class in sorted({i.spec.sop_class_uid for i in self.instances}):
            ae.add_supported_context(sop_class, _SYNTAXES, scu_role=True, scp_role=True)
        handlers: list[EventHandlerType] = [
            (evt.EVT_CONN_OPEN, _nodelay_on_open),
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_C_MOVE, self._move),
        ]
        server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        # block=False always returns the running server, with its bound socket.
        assert server is not None
        assert server.socket is not None
        set_nodelay(server.socket)
        self._ae, self._server = ae, server
        self.port = int(server.server_address[1])

    def sockets(self) -> list[socket.socket]:
        """The listening socket and those of the associations open now (diagnostics)."""
        if self._ae is None or self._server is None or self._server.socket is None:
            return []
        wrappers = [assoc.dul.socket for assoc in self._ae.active_associations]
        open_sockets = [w.socket for w in wrappers if w is not None and w.socket is not None]
        open_sockets = [s for s in open_sockets if s.fileno() != -1]  # not closed meanwhile
        return [self._server.socket, *open_sockets]

    def stop(self) -> None:
        """Stop listening and abort any association still open."""
        if self._ae is not None:
            self._ae.shutdown()
        self._ae = self._server = None

    def __enter__(self) -> DemoPacs:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _note(self, event: Event, text: str) -> None:
        if self._log is not None:
            self._log(f"{event.assoc.requestor.ae_title}: {text}")

    def _echo(self, event: Event) -> int:
        self._note(event, "C-ECHO")
        return 0x0000

    def _request(self, event: Event) -> tuple[Dataset, str, str]:
        """The identifier, its level and the model's name; refuses a mismatched level."""
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        patient_root = str(event.request.AffectedSOPClassUID) in _PATIENT_ROOT
        model = "patient root" if patient_root else "study root"
        if level == "PATIENT" and not patient_root:
            raise QueryRefused(
                "PATIENT level needs the Patient Root model", IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
            )
        return identifier, level, model

    def _find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        try:
            identifier, level, model = self._request(event)
            records = list(self.catalogue.matching(identifier, level))
        except QueryRefused as refused:
            self._note(event, f"C-FIND refused: {refused}")
            yield refused.status, None
            return
        sent = 0
        for record in records:
            if event.is_cancelled:
                self._note(event, f"C-FIND {level} cancelled after {sent} matches")
                yield CANCELLED, None
                return
            yield PENDING, self.catalogue.answer(identifier, level, record)
            sent += 1
        self._note(event, f"C-FIND {level} ({model}): {sent} matches")

    def _selection(self, event: Event, service: str) -> list[Dataset] | QueryRefused:
        try:
            identifier, level, model = self._request(event)
            selected = self.catalogue.select(identifier, level)
        except QueryRefused as refused:
            self._note(event, f"{service} refused: {refused}")
            return refused
        self._note(event, f"{service} {level} ({model}): {len(selected)} instances")
        return selected

    def _get(self, event: Event) -> Iterator[int | tuple[int, Dataset | None]]:
        selected = self._selection(event, "C-GET")
        if isinstance(selected, QueryRefused):
            yield 1  # pynetdicom sends a final failure only once sub-operations are counted
            yield selected.status, None
            return
        yield len(selected)
        yield from self._send(event, selected)

    def _move(self, event: Event) -> Iterator[Any]:
        name = (event.move_destination or "").strip()
        destination = self.destinations.get(name)
        if destination is None:
            known = ", ".join(sorted(self.destinations)) or "none"
            self._note(event, f"C-MOVE to unknown destination {name!r} (known: {known})")
            yield None, None  # pynetdicom answers Move Destination Unknown (0xA801)
            return
        selected = self._selection(event, f"C-MOVE to {name}")
        if isinstance(selected, QueryRefused):
            yield destination.host, destination.port
            yield 1
            yield selected.status, None
            return
        classes = sorted({str(ds.SOPClassUID) for ds in selected})
        options = {"move": MoveRequest(event.assoc.requestor.ae_title, classes)}
        yield destination.host, destination.port, options
        yield len(selected)
        yield from self._send(event, selected)

    def _send(self, event: Event, selected: list[Dataset]) -> Iterator[tuple[int, Dataset | None]]:
        for ds in selected:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, ds

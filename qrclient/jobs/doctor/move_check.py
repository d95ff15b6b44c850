"""C-MOVE to us, end to end: our listener runs, the peer is asked to move one instance.

The instance goes to a temporary directory, removed afterwards (never the user's
store). What happened is gathered as evidence first, then diagnosed by a pure function:
delivered; refused by our listener; "it knows our AE title but cannot reach host:port"
(failed sub-operations, or nothing arrives while the PACS keeps trying); or, when the
PACS refuses without counts, the two causes named together: "Move destination unknown"
(0xA801) may mean either on some PACSs, and Orthanc answers 0xC000 in both cases.
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
from pydicom.dataset import Dataset

from qrclient.jobs.doctor.report import Check, State, Stopwatch
from qrclient.jobs.doctor.sample import Sample
from qrclient.jobs.retrieve import move_listener
from qrclient.net.association import open_association
from qrclient.net.errors import DicomNetworkError, ListenFailed
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest
from qrclient.net.settings import Settings
from qrclient.net.status import Category, Status
from qrclient.ops.move import MoveRouter, c_move
from qrclient.ops.progress import Progress
from qrclient.ops.storing import Incoming
from qrclient.vocabulary import STUDY_ROOT_MOVE

NAME = "C-MOVE to us"
_EVERY_INTERFACE = ("0.0.0.0", "::", "")


@dataclass(slots=True)
class MoveEvidence:
    """What one C-MOVE of one instance to our listener showed."""

    status: Status | None = None
    completed: int = 0
    failed: int = 0
    arrived: int = 0
    seconds: float = 0.0
    timed_out: bool = False  # the PACS had not finished within the wait
    connections: list[tuple[str, str]] = field(default_factory=list)  # (calling AE, address)
    refusals: list[str] = field(default_factory=list)
    error: DicomNetworkError | None = None


@dataclass(frozen=True, slots=True)
class Where:
    """Our side, as the PACS must have it registered."""

    our_ae: str
    listen_host: str
    listen_port: int
    local_address: str  # this machine's address towards the PACS
    wait: float

    @property
    def listening(self) -> str:
        if self.listen_host in _EVERY_INTERFACE:
            return f"port {self.listen_port} on all interfaces"
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def address(self) -> str:
        host = self.local_address if self.listen_host in _EVERY_INTERFACE else self.listen_host
        return f"host {host}, port {self.listen_port}"

    @property
    def registration(self) -> str:
        return f"AE title {self.our_ae}, {self.address}"


class _TemporaryFile:
    def __init__(self, path: Path, sink: _TemporarySink) -> None:
        self._file = path.open("wb")
        self._sink = sink

    def write(self, fragment: bytes | memoryview) -> None:
        self._file.write(fragment)

    def seal(self) -> None:
        self._file.close()

    def place(self) -> object:
        self._sink.arrived += 1
        self._sink.event.set()
        return None

    def discard(self) -> None:
        self._file.close()


class _TemporarySink:
    """Keeps received data sets in a temporary directory (counted, never indexed)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.arrived = 0
        self.event = anyio.Event()

    def begin(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source: str
    ) -> Incoming:
        return _TemporaryFile(self._directory / f"{self.arrived}.dcm", self)


class _WatchingRouter(MoveRouter):
    """The retrieve's own router, noting every association the PACS opens to us."""

    def __init__(self, our_ae: str, sink: _TemporarySink) -> None:
        super().__init__(our_ae, sink)
        self.connections: list[tuple[str, str]] = []

    def allows(self, calling_ae: str, address: str) -> bool:
        self.connections.append((calling_ae, address))
        return super().allows(calling_ae, address)


def local_address(peer: Peer) -> str:
    """This machine's address on the route to the peer (a UDP connect sends nothing)."""
    try:
        family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((peer.host, peer.port))
            return str(probe.getsockname()[0])
    except OSError:
        return "this machine's address"


def _identifier(sample: Sample) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = sample.study_uid
    ds.SeriesInstanceUID = sample.series_uid
    ds.SOPInstanceUID = sample.sop_instance_uid
    return ds


async def check_move(peer: Peer, settings: Settings, sample: Sample, where: Where) -> Check:
    """Move ``sample`` to our listener and diagnose what happened."""
    if settings.tls is not None and settings.tls.cert_file is None:
        return Check(
            NAME,
            State.FAILED,
            "not tried: over TLS our storage listener needs a certificate of its own",
            "give --tls-cert FILE (and --tls-key FILE) for the listener",
        )
    with tempfile.TemporaryDirectory(prefix="qrclient-doctor-") as directory:
        sink = _TemporarySink(Path(directory))
        router = _WatchingRouter(where.our_ae, sink)
        evidence: MoveEvidence | None = None
        refusals: list[str] = []
        listen_error: ListenFailed | None = None
        try:
            async with move_listener(
                router, where.listen_host, where.listen_port, settings
            ) as listener:
                assert listener is not None  # a router was given
                where = replace(where, listen_port=listener.port)  # port 0: whichever was free
                evidence = await _move(peer, settings, router, sink, sample, where.wait)
                refusals = [refusal.reason for refusal in listener.refusals]
        except* ListenFailed as failures:
            listen_error = failures.exceptions[0]  # type: ignore[assignment]
    if listen_error is not None or evidence is None:
        message = listen_error.message if listen_error else "our listener did not start"
        hint = listen_error.hint if listen_error else ""
        return Check(NAME, State.FAILED, message, hint)
    evidence.refusals = refusals
    return diagnose(evidence, where, peer.ae_title)


async def _move(
    peer: Peer,
    settings: Settings,
    router: _WatchingRouter,
    sink: _TemporarySink,
    sample: Sample,
    wait: float,
) -> MoveEvidence:
    evidence = MoveEvidence()
    watch = Stopwatch()
    progress = Progress()
    with anyio.move_on_after(wait) as scope:
        try:
            async with open_association(
                peer, [ContextRequest(STUDY_ROOT_MOVE)], settings
            ) as association:
                message_id = association.next_message_id()
                expected = {sample.sop_instance_uid}
                with router.expect(peer.ae_title, message_id, expected, progress):
                    result = await c_move(
                        association,
                        _identifier(sample),
                        STUDY_ROOT_MOVE,
                        settings.calling_ae,
                        progress,
                        message_id=message_id,
                    )
                    evidence.status = result.status
                    evidence.completed = result.completed
                    evidence.failed = result.failed
                    if result.status is not None and not result.status.is_failure:
                        # A PACS that moves asynchronously answers before delivering.
                        await sink.event.wait()
        except DicomNetworkError as exc:
            evidence.error = exc
    evidence.timed_out = scope.cancelled_caught
    evidence.seconds = watch.seconds
    evidence.arrived = sink.arrived
    evidence.connections = list(router.connections)
    return evidence


def diagnose(evidence: MoveEvidence, where: Where, peer_ae: str) -> Check:
    """What the evidence of one C-MOVE to us means, and what to fix."""
    aet = where.our_ae
    seconds = evidence.seconds
    status = evidence.status
    register = (
        f"on the PACS, register {where.registration} as a DICOM destination "
        "(e.g. Orthanc: DicomModalities; DCMTK's dcmqrscp: HostTable in its configuration)"
    )
    reach = (
        f"check the host and port the PACS has for AE title {aet}: they must be "
        f"{where.address}; and that no firewall blocks the PACS "
        f"from connecting to this machine's port {where.listen_port}"
    )
    if evidence.arrived:
        detail = f"the PACS delivered the instance to our listener ({where.listening})"
        if status is not None and status.is_failure:
            return Check(NAME, State.WARNING, f"{detail}, yet answered {status}", "", seconds)
        return Check(NAME, State.OK, detail, "", seconds)
    if evidence.refusals:
        calling = ", ".join(sorted({c for c, _ in evidence.connections})) or "?"
        return Check(
            NAME,
            State.FAILED,
            f"the PACS reached our listener, but it was refused: {evidence.refusals[0]}",
            f"qrclient accepts C-MOVE deliveries from the AE title in NODE ({peer_ae}); "
            f"the PACS connected as {calling}: set NODE's AE title to the one the PACS "
            "uses when it sends",
            seconds,
        )
    if evidence.error is not None and not evidence.timed_out:
        return Check(
            NAME,
            State.FAILED,
            f"the C-MOVE request failed: {evidence.error.message}",
            evidence.error.hint,
            seconds,
        )
    nothing = f"nothing reached our listener ({where.listening})"
    if evidence.timed_out:
        return Check(
            NAME,
            State.FAILED,
            f"the PACS knows {aet} but cannot reach it: {nothing} within {where.wait:g} s "
            "while the PACS was still trying",
            reach,
            seconds,
        )
    if evidence.failed or evidence.connections:
        return Check(
            NAME,
            State.FAILED,
            f"the PACS knows {aet} but cannot deliver to it: {evidence.failed} "
            f"sub-operation(s) failed and {nothing}",
            reach,
            seconds,
        )
    if status is not None and status.is_failure:
        # Even "Move destination unknown" (0xA801) may mean either: some PACSs answer
        # it when the registered host and port cannot be connected to.
        return Check(
            NAME,
            State.FAILED,
            f"the PACS refused to move to {aet} ({status}) and {nothing}: either it does "
            f"not know AE title {aet}, or it knows it with a host or port it cannot reach "
            "(its answer does not say which)",
            f"{register}; if it is registered, {reach}",
            seconds,
        )
    if status is not None and status.category in (Category.SUCCESS, Category.WARNING):
        return Check(
            NAME,
            State.FAILED,
            f"the PACS answered {status} but {nothing}; completed: {evidence.completed}",
            f"check the PACS's log; {reach}",
            seconds,
        )
    return Check(NAME, State.FAILED, f"the C-MOVE ended without a final status; {nothing}", reach)

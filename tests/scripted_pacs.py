"""A scripted Q/R PACS on pynetdicom's server side, for behaviour the real ones never show.

Orthanc and dcmqrscp are conformant in the ways the tests rely on; some PACSs are not,
and some peers are hostile. This one serves a small archive of pydicom data sets with
C-FIND, C-GET and C-MOVE, and each oddity is a switch (:class:`Quirks`): no computed
keys, no SOPClassUID at IMAGE level, no list matching in C-FIND or in C-GET / C-MOVE,
C-FIND keys above the study's own ignored, retrieves that send the whole archive, extra
instances of other studies. pynetdicom does the encoding (never qrclient's codec) and
what a conformant SCP does by itself: it fails the sub-operations of instances it has
no accepted presentation context for, with 0xA702 or 0xB000 and their Failed SOP
Instance UID List.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)
from pynetdicom import AE, build_context, evt
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from qrclient.jobs.retrieve import (
    RetrieveJob,
    RetrieveOutcome,
    RetrieveRequest,
    move_listener,
    note_refusals,
)
from qrclient.net import Peer, Settings
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model

PENDING = 0xFF00
UNABLE_TO_PROCESS = 0xC000
SYNTAXES: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit]
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
OUR_AE = "QRCLIENT"
LIMIT = 60  # seconds for any one job

logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


@dataclass
class Quirks:
    computed_keys: bool = True  # SOPClassesInStudy, NumberOfStudyRelatedInstances
    sop_class_at_image: bool = True  # SOPClassUID returned at IMAGE level
    find_lists: bool = True  # C-FIND matches \-lists of UIDs
    retrieve_lists: bool = True  # C-GET / C-MOVE take \-lists of SOP Instance UIDs
    list_failure: int = 0xA801  # what a retrieve with a list gets without them (as seen)
    study_keys_ignored: bool = False  # STUDY-level C-FIND ignores PatientID, AccessionNumber
    sends_everything: bool = False  # a retrieve sends every instance it holds
    extra: Sequence[Dataset] = ()  # sent besides the matches of every retrieve
    instead: Sequence[Dataset] | None = None  # sent in place of the matches
    move_bind: str = "127.0.0.1"  # the address C-MOVE associations come from


def instance(
    patient: str,
    study: str,
    series: str,
    number: int,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.2",
    *,
    jpeg: bool = False,
) -> Dataset:
    """A small instance (8x8, no real image); ``jpeg``: stored JPEG Baseline encapsulated."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(f"{UID_ROOT}.", entropy_srcs=[study, series, str(number)])
    ds.PatientID = patient
    ds.PatientName = f"{patient}^TEST"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.AccessionNumber = f"ACC{patient}"
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    if jpeg:
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = bytes(range(64))
    return ds


def series_of(
    patient: str, study: str, series: str, count: int, sop_class: str = "1.2.840.10008.5.1.4.1.1.2"
) -> list[Dataset]:
    return [instance(patient, study, series, n, sop_class) for n in range(1, count + 1)]


def study_uid(name: str) -> str:
    return generate_uid(f"{UID_ROOT}.", entropy_srcs=["study", name])


def series_uid(name: str) -> str:
    return generate_uid(f"{UID_ROOT}.", entropy_srcs=["series", name])


def uids(datasets: Sequence[Dataset]) -> set[str]:
    return {str(ds.SOPInstanceUID) for ds in datasets}


@dataclass
class Seen:
    """What the PACS was asked: requests by service and level, contexts proposed."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    proposed: list[int] = field(default_factory=list)  # contexts per association
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, service: str, level: str, identifier: dict[str, str]) -> None:
        with self.lock:
            self.requests.append((service, level, identifier))

    def of(self, service: str) -> list[tuple[str, dict[str, str]]]:
        with self.lock:
            return [(level, ids) for s, level, ids in self.requests if s == service]


_KEYS = {  # matching keys honoured at each level
    "STUDY": ("StudyInstanceUID", "PatientID", "AccessionNumber"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
_UNIQUE = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}


class ScriptedPacs:
    """``instances`` served on loopback (a free port) while the ``with`` block runs.

    ``destinations`` maps C-MOVE destination AE titles to (host, port); it may be
    filled in after start (our listener's port is known only once it listens).
    """

    def __init__(
        self,
        instances: Sequence[Dataset],
        quirks: Quirks | None = None,
        *,
        ae_title: str = "SCRIPTED",
        destinations: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self.instances = list(instances)
        self.quirks = quirks or Quirks()
        self.ae_title = ae_title
        self.destinations = destinations if destinations is not None else {}
        self.seen = Seen()
        self._ae: AE | None = None
        self.port = 0

    @property
    def peer(self) -> Peer:
        return Peer(self.ae_title, "127.0.0.1", self.port)

    def __enter__(self) -> ScriptedPacs:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = 32
        for model in (
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
        ):
            ae.add_supported_context(model, SYNTAXES[:2])
        sent = [*self.instances, *self.quirks.extra, *(self.quirks.instead or ())]
        classes = sorted({str(ds.SOPClassUID) for ds in sent})
        for sop_class in classes:
            ae.add_supported_context(sop_class, SYNTAXES, scu_role=True, scp_role=True)
        handlers: list[EventHandlerType] = [
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_C_MOVE, self._move),
        ]
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        assert server is not None
        self.port = int(server.server_address[1])
        self._ae = ae
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._ae is not None:
            self._ae.shutdown()

    # -- handlers (pynetdicom's threads) -------------------------------------------------

    def _requested(self, event: Event) -> None:
        with self.seen.lock:
            self.seen.proposed.append(len(event.assoc.requestor.requested_contexts))

    def _find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier, level = self._request(event, "C-FIND")
        values = _values(identifier)
        if not self.quirks.find_lists and any("\\" in v for v in values.values()):
            yield UNABLE_TO_PROCESS, None
            return
        honoured = [k for k in _KEYS.get(level, ()) if k in values]
        if self.quirks.study_keys_ignored and level == "STUDY":
            honoured = [k for k in honoured if k == "StudyInstanceUID"]
        matches = [ds for ds in self.instances if _matches(ds, values, honoured)]
        seen: set[str] = set()
        for ds in matches:
            unique = str(ds.get(_UNIQUE.get(level, "SOPInstanceUID"), ""))
            if unique in seen:
                continue
            seen.add(unique)
            yield PENDING, self._answer(identifier, level, ds)

    def _answer(self, identifier: Dataset, level: str, ds: Dataset) -> Dataset:
        answer = Dataset()
        answer.QueryRetrieveLevel = level
        for element in identifier:
            keyword = element.keyword
            if keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                continue
            value: Any = ds.get(keyword, "")
            if keyword == "SOPClassesInStudy" and self.quirks.computed_keys:
                value = sorted({str(i.SOPClassUID) for i in self._study(ds)})
            elif keyword == "NumberOfStudyRelatedInstances" and self.quirks.computed_keys:
                value = str(len(self._study(ds)))
            elif keyword == "SOPClassUID" and not self.quirks.sop_class_at_image:
                value = ""
            elif keyword in ("SOPClassesInStudy", "NumberOfStudyRelatedInstances"):
                continue
            answer.add_new(element.tag, element.VR, value)
        return answer

    def _study(self, ds: Dataset) -> list[Dataset]:
        return [i for i in self.instances if i.StudyInstanceUID == ds.StudyInstanceUID]

    def _selection(self, event: Event, service: str) -> list[Dataset] | int:
        identifier, level = self._request(event, service)
        values = _values(identifier)
        if not self.quirks.retrieve_lists and "\\" in values.get("SOPInstanceUID", ""):
            return self.quirks.list_failure
        if self.quirks.instead is not None:
            selected = list(self.quirks.instead)
        elif self.quirks.sends_everything:
            selected = list(self.instances)
        else:
            honoured = [k for k in _KEYS.get(level, ()) if k in values and k != "PatientID"]
            honoured = [k for k in honoured if k != "AccessionNumber"]
            selected = [ds for ds in self.instances if _matches(ds, values, honoured)]
        return [*selected, *self.quirks.extra]

    def _get(self, event: Event) -> Iterator[Any]:
        selected = self._selection(event, "C-GET")
        if isinstance(selected, int):
            yield 1
            yield selected, None
            return
        yield len(selected)
        for ds in selected:
            yield PENDING, ds

    def _move(self, event: Event) -> Iterator[Any]:
        selected = self._selection(event, "C-MOVE")
        destination = self.destinations.get(str(event.move_destination or "").strip())
        if destination is None:
            yield None, None  # pynetdicom answers 0xA801
            return
        if isinstance(selected, int):
            yield destination
            yield 1
            yield selected, None
            return
        classes = sorted({str(ds.SOPClassUID) for ds in selected})
        contexts = [build_context(c, SYNTAXES) for c in classes]
        options = {"contexts": contexts, "bind_address": (self.quirks.move_bind, 0)}
        yield (*destination, options)
        yield len(selected)
        for ds in selected:
            yield PENDING, ds

    def _request(self, event: Event, service: str) -> tuple[Dataset, str]:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        self.seen.note(service, level, _values(identifier))
        return identifier, level


def _values(identifier: Dataset) -> dict[str, str]:
    """Keyword to value text (several values \\-joined) for every non-empty key."""
    found: dict[str, str] = {}
    for element in identifier:
        if element.VR == "SQ" or element.VM == 0:
            continue
        value = element.value
        text = "\\".join(str(v) for v in value) if element.VM > 1 else str(value)
        if text.strip():
            found[element.keyword] = text.strip()
    return found


def _matches(ds: Dataset, values: dict[str, str], keys: Sequence[str]) -> bool:
    for keyword in keys:
        wanted = {v.strip() for v in values[keyword].split("\\")}
        if str(ds.get(keyword, "")).strip() not in wanted:
            return False
    return True


async def retrieve_from(
    pacs: ScriptedPacs,
    store: Store,
    level: Level,
    keys: list[str],
    *,
    method: Method = Method.GET,
    parallel: int = 2,
    move_from: tuple[str, ...] = (),
) -> RetrieveOutcome:
    """A retrieve job from ``pacs`` into ``store``, with our listener for a C-MOVE."""
    request = RetrieveRequest.parse(level, Model.STUDY, keys)
    settings = Settings(calling_ae=OUR_AE)
    job = RetrieveJob.into_store(
        pacs.peer, request, store, settings, parallel=parallel, method=method, move_from=move_from
    )
    with anyio.fail_after(LIMIT):
        async with move_listener(job.router, "127.0.0.1", 0, settings) as listener:
            if listener is not None:
                pacs.destinations[OUR_AE] = ("127.0.0.1", listener.port)
            outcome = await job.run()
        if listener is not None:
            note_refusals(outcome, listener.refusals)
    return outcome

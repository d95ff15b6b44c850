"""A scripted backend for snapshot tests: the same answers every time, no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

from qrclient.jobs.doctor import Check, State
from qrclient.jobs.doctor import Report as DoctorReport
from qrclient.jobs.retrieve import RetrieveOutcome, RetrieveRequest
from qrclient.net import ConnectFailed
from qrclient.net.events import (
    AssociateAccepted,
    AssociateRequested,
    Connected,
    DimseReceived,
    DimseSent,
    Event,
    Observer,
    ProposedContextInfo,
    Released,
    ReleaseRequested,
    SettledContextInfo,
)
from qrclient.ops.find import FindOutcome, FindState
from qrclient.ops.progress import Snapshot
from qrclient.ops.query import Query
from qrclient.present.browse import Row
from qrclient.store import StoreDamaged
from qrclient.store.jobs import ItemStatus
from qrclient.store.jobs import Job as DurableJob
from qrclient.store.jobs import JobState as DurableState
from qrclient.store.overview import SeriesHolding, StudyHolding
from qrclient.tui.backend import EchoResult, Node, ProgressCallback
from qrclient.vocabulary import Level

PATIENTS = [("DOE^JOHN", "PAT001"), ("MÜLLER^JÜRGEN", "PAT005"), ("山田^太郎", "PAT006")]
STUDIES = [
    ("PAT001", "DOE^JOHN", "2019-03-14", "CT", "CT CHEST", "2", "5"),
    ("PAT001", "DOE^JOHN", "2021-06-07", "MR", "MR BRAIN", "3", "9"),
    ("PAT005", "MÜLLER^JÜRGEN", "2020-09-30", "CT", "CT HEAD", "2", "4"),
    ("PAT006", "山田^太郎", "2021-01-01", "US", "US THYROID", "1", "2"),
]


def _study_uid(number: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.{number + 1}"


def _events(matches: int) -> list[Event]:
    """What the core reports for one C-FIND on its own association."""
    find = "Study Root Query/Retrieve Information Model - FIND"
    syntaxes = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    events: list[Event] = [
        Connected("ORTHANC@pacs.example.org:4242", 0.0008),
        AssociateRequested(
            "QRCLIENT", "ORTHANC", 1048576, 250, (ProposedContextInfo(1, find, syntaxes),)
        ),
        AssociateAccepted(
            size=200,
            peer_implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
            peer_implementation_version_name="OFFIS_DCMTK_367",
            peer_max_pdu=16384,
            contexts=(SettledContextInfo(1, find, "accepted", "1.2.840.10008.1.2.1"),),
        ),
        DimseSent({"command": "C-FIND-RQ", "message_id": 1, "priority": 0}),
    ]
    pending = {"command": "C-FIND-RSP", "status": 0xFF00, "message_id_being_responded_to": 1}
    events += [DimseReceived(pending)] * matches
    final = {"command": "C-FIND-RSP", "status": 0x0000, "message_id_being_responded_to": 1}
    events += [DimseReceived(final), ReleaseRequested(), Released()]
    return events


class FakeMatches:
    def __init__(self, rows: list[dict[str, str]]) -> None:
        self._rows = rows
        self.outcome = FindOutcome()

    async def __aiter__(self) -> AsyncIterator[Row]:
        for row in self._rows:
            self.outcome.count += 1
            yield row
        self.outcome.state = FindState.SUCCESS


class FakeBackend:
    """Four studies of three patients; a retrieve that can be held half-way."""

    def __init__(self, *, hold_retrieve: bool = False) -> None:
        self.hold_retrieve = hold_retrieve
        self.durable: list[DurableJob] = []  # the store's cohort jobs
        self.durable_failure = False
        self.resumed: list[int] = []
        self.hold_resume = False
        self.files: list[tuple[str, Path]] = []  # (SOP Instance UID, file) in the store
        self.observer: Observer | None = None  # set by the app, as the real backend's
        self.queries: list[Query] = []
        self.retrieved: list[RetrieveRequest] = []
        self.here: dict[str, int] = {_study_uid(0): 5, _study_uid(1): 4}
        self.store_failures = 0  # local_counts raises this many times first
        self.retrieve_error: BaseException | None = None  # what retrieve raises, if anything

    @property
    def store_root(self) -> Path:
        return Path("/data/qrclient/store")

    async def echo(self, node: Node) -> EchoResult:
        if node.peer.port != 4242:
            raise ConnectFailed(
                f"connection refused by {node.peer.host}:{node.peer.port}",
                "nothing listens on that port: check the PACS's DICOM port and that it is running",
            )
        return EchoResult(1.8, 0.3, "OFFIS_DCMTK_367", "1.2.276.0.7230010.3.0.3.6.7", 16384)

    def find(self, node: Node, query: Query) -> AbstractAsyncContextManager[FakeMatches]:
        self.queries.append(query)
        return self._find(query)

    @asynccontextmanager
    async def _find(self, query: Query) -> AsyncIterator[FakeMatches]:
        rows = self.rows(query)
        for event in _events(len(rows)):
            if self.observer is not None:
                self.observer(event)
        yield FakeMatches(rows)

    def rows(self, query: Query) -> list[dict[str, str]]:
        matching = {k.keyword: k.value for k in query.keys if k.value}
        if query.level is Level.PATIENT:
            return [
                {
                    "PatientName": name,
                    "PatientID": pid,
                    "PatientSex": "M",
                    "NumberOfPatientRelatedStudies": str(sum(s[0] == pid for s in STUDIES)),
                }
                for name, pid in PATIENTS
            ]
        if query.level is Level.STUDY:
            rows = []
            for number, (pid, name, date, mod, desc, series, inst) in enumerate(STUDIES):
                if matching.get("PatientID", pid) != pid:
                    continue
                rows.append(
                    {
                        "PatientName": name,
                        "PatientID": pid,
                        "StudyDate": date,
                        "StudyTime": "08:30:00",
                        "AccessionNumber": f"ACC{number:04d}",
                        "ModalitiesInStudy": mod,
                        "StudyDescription": desc,
                        "NumberOfStudyRelatedSeries": series,
                        "NumberOfStudyRelatedInstances": inst,
                        "StudyInstanceUID": _study_uid(number),
                    }
                )
            return rows
        study = matching.get("StudyInstanceUID", _study_uid(0))
        if query.level is Level.SERIES:
            return [
                {
                    "StudyInstanceUID": study,
                    "SeriesNumber": str(n),
                    "Modality": "CT",
                    "SeriesDescription": desc,
                    "NumberOfSeriesRelatedInstances": str(count),
                    "SeriesInstanceUID": f"{study}.{n}",
                }
                for n, desc, count in ((1, "AXIAL 5MM", 3), (2, "CORONAL", 2))
            ]
        series = matching.get("SeriesInstanceUID", f"{study}.1")
        return [
            {
                "StudyInstanceUID": study,
                "SeriesInstanceUID": series,
                "InstanceNumber": str(n),
                "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
                "SOPInstanceUID": f"{series}.{n}",
            }
            for n in range(1, 4)
        ]

    async def retrieve(
        self, node: Node, request: RetrieveRequest, on_progress: ProgressCallback
    ) -> RetrieveOutcome:
        self.retrieved.append(request)
        on_progress(
            Snapshot(remaining=3, completed=2, received=2, received_bytes=1_048_576, elapsed=0.5)
        )
        if self.retrieve_error is not None:
            raise self.retrieve_error
        if self.hold_retrieve:
            await asyncio.Event().wait()
        on_progress(
            Snapshot(
                remaining=0,
                completed=5,
                received=5,
                received_bytes=2_621_440,
                elapsed=1.0,
                finished=True,
            )
        )
        return RetrieveOutcome(planned=5, received=5, received_bytes=2_621_440, seconds=1.0)

    def local_counts(self, level: Level, uids: list[str]) -> dict[str, int]:
        if self.store_failures:
            self.store_failures -= 1
            raise StoreDamaged("cannot read the store: database is locked")
        return {uid: self.here.get(uid, 0) for uid in uids}

    def holdings(self) -> list[StudyHolding]:
        root = self.store_root
        return [
            StudyHolding(
                _study_uid(0),
                "PAT001",
                "DOE^JOHN",
                "2019-03-14",
                "CT CHEST",
                "ACC0000",
                (
                    SeriesHolding(
                        f"{_study_uid(0)}.1",
                        "CT",
                        1,
                        "AXIAL 5MM",
                        3,
                        1_572_864,
                        f"{root}/PAT001/{_study_uid(0)}/{_study_uid(0)}.1",
                    ),
                    SeriesHolding(
                        f"{_study_uid(0)}.2",
                        "CT",
                        2,
                        "CORONAL",
                        2,
                        1_048_576,
                        f"{root}/PAT001/{_study_uid(0)}/{_study_uid(0)}.2",
                    ),
                ),
            ),
            StudyHolding(
                _study_uid(1),
                "PAT001",
                "DOE^JOHN",
                "2021-06-07",
                "MR BRAIN",
                "ACC0001",
                (
                    SeriesHolding(
                        f"{_study_uid(1)}.1",
                        "MR",
                        1,
                        "T1 SAG",
                        4,
                        2_097_152,
                        f"{root}/PAT001/{_study_uid(1)}/{_study_uid(1)}.1",
                    ),
                ),
            ),
        ]

    async def remote_totals(self, node: Node, study_uids: list[str]) -> dict[str, int]:
        return {
            _study_uid(0): 5,
            f"{_study_uid(0)}.1": 3,
            f"{_study_uid(0)}.2": 2,
            _study_uid(1): 9,
            f"{_study_uid(1)}.1": 4,
        }

    async def doctor(self, node: Node) -> DoctorReport:
        report = DoctorReport(str(node.peer), "QRCLIENT")
        report.add(Check("TCP connection", State.OK, "connected", seconds=0.0008))
        report.add(Check("association", State.OK, "accepted, OFFIS_DCMTK_367", seconds=0.002))
        report.add(
            Check(
                "C-MOVE to us",
                State.FAILED,
                "the PACS does not know QRCLIENT as a move destination (0xA801)",
                fix="register QRCLIENT with this machine's address and port 11113 on the PACS",
            )
        )
        return report

    def stored_files(self, level: Level, uid: str) -> list[Path]:
        return [path for key, path in self.files if key == uid or key.startswith(uid + ".")]

    def durable_jobs(self) -> list[DurableJob]:
        if self.durable_failure:
            raise StoreDamaged("cannot read the store's jobs: database is locked")
        return list(self.durable)

    async def resume(self, job_id: int) -> tuple[int, str]:
        self.resumed.append(job_id)
        if self.hold_resume:
            await asyncio.Event().wait()
        self.durable = [
            replace(job, state=DurableState.FINISHED, counts={ItemStatus.RETRIEVED: job.total})
            if job.id == job_id
            else job
            for job in self.durable
        ]
        return 0, ""

    async def aclose(self) -> None:
        return None

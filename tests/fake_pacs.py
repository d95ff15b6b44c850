"""A small fake PACS on ``tests.fakepeer`` (not pynetdicom), for what no real PACS here does.

It answers C-ECHO, C-FIND at every level from a list of instances, C-GET with a failure
status, and C-MOVE with "Move destination unknown" (0xA801) both for an AE title it does
not know and, as some PACSs do, for one it knows but cannot connect to (it really tries
the registered address first). With ``study_per_instance`` it answers a STUDY-level
query with one response per instance, as some PACSs do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
from anyio.from_thread import start_blocking_portal
from pydicom.dataset import Dataset

from tests.fakepeer import PeerConnection, fake_peer, response

RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
C_ECHO_RQ, C_FIND_RQ, C_GET_RQ, C_MOVE_RQ, C_CANCEL_RQ = 0x0030, 0x0020, 0x0010, 0x0021, 0x0FFF
_UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_LEVEL_DEPTH = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}


@dataclass(frozen=True)
class Instance:
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str


def instances(studies: int, per_study: int) -> list[Instance]:
    """``studies`` studies of one series each, with ``per_study`` instances each."""
    return [
        Instance("PAT1", f"2.25.1{s}", f"2.25.2{s}", f"2.25.3{s}{i}")
        for s in range(studies)
        for i in range(per_study)
    ]


@dataclass
class FakePacs:
    archive: list[Instance]
    study_per_instance: bool = False  # one STUDY-level response per instance
    get_status: int = 0xC000  # every C-GET is answered with this failure
    destinations: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    moves: list[str] = field(default_factory=list)  # what each C-MOVE met
    finds: list[int] = field(default_factory=list)  # responses sent per C-FIND

    async def serve(self, connection: PeerConnection) -> None:
        await connection.accept()
        while True:
            try:
                context_id, command, identifier = await connection.read_message()
            except EOFError:
                if connection.log[-1] == "pdu-05":  # A-RELEASE-RQ
                    await connection.send_raw(RELEASE_RP)
                return
            # C-CANCEL needs no answer: every answer is complete before the next request.
            if int(command.CommandField) != C_CANCEL_RQ:
                for answer, dataset in await self._answer(command, identifier):
                    await connection.send_message(context_id, answer, dataset)

    async def _answer(
        self, command: Dataset, identifier: Dataset | None
    ) -> list[tuple[Dataset, Dataset | None]]:
        """The responses to one request, in order."""
        request = int(command.CommandField)
        sop_class = str(command.AffectedSOPClassUID)
        message_id = int(command.MessageID)
        if request == C_ECHO_RQ:
            return [(response(0x8030, message_id, 0, sop_class), None)]
        if request == C_FIND_RQ:
            assert identifier is not None
            found = [
                (response(0x8020, message_id, 0xFF00, sop_class), match)
                for match in self._matches(identifier)
            ]
            self.finds.append(len(found))
            return [*found, (response(0x8020, message_id, 0, sop_class), None)]
        if request == C_GET_RQ:
            refusal = response(0x8010, message_id, self.get_status, sop_class)
            refusal.ErrorComment = "C-GET is not allowed here"
            return [(refusal, None)]
        assert request == C_MOVE_RQ, hex(request)
        await self._move(str(command.MoveDestination).strip())
        return [(response(0x8021, message_id, 0xA801, sop_class), None)]

    async def _move(self, destination: str) -> None:
        address = self.destinations.get(destination)
        if address is None:
            self.moves.append(f"{destination}: unknown")
            return
        try:
            stream = await anyio.connect_tcp(*address)
        except OSError:
            self.moves.append(f"{destination}: cannot connect to {address[0]}:{address[1]}")
            return
        await stream.aclose()
        self.moves.append(f"{destination}: connected")

    def _matches(self, identifier: Dataset) -> Iterator[Dataset]:
        level = str(identifier.QueryRetrieveLevel)
        depth = _LEVEL_DEPTH[level]
        wanted = {
            key: str(identifier.get(key, "") or "").split("\\")
            for key in _UID_KEYS
            if identifier.get(key, "")
        }
        seen: set[tuple[str, ...]] = set()
        for instance in self.archive:
            values = {
                "PatientID": instance.patient_id,
                "StudyInstanceUID": instance.study_uid,
                "SeriesInstanceUID": instance.series_uid,
                "SOPInstanceUID": instance.sop_uid,
            }
            if any(values[key] not in allowed for key, allowed in wanted.items()):
                continue
            path = (instance.patient_id, *(values[k] for k in _UID_KEYS))[: depth + 1]
            if path in seen and not (level == "STUDY" and self.study_per_instance):
                continue
            seen.add(path)
            yield self._match(identifier, values, depth)

    def _match(self, identifier: Dataset, values: dict[str, str], depth: int) -> Dataset:
        match = Dataset()
        study = [i for i in self.archive if i.study_uid == values["StudyInstanceUID"]]
        known = {
            **{k: v for k, v in values.items() if list(values).index(k) <= depth},
            "SOPClassUID": CT_IMAGE_STORAGE,
            "NumberOfStudyRelatedInstances": str(len(study)),
        }
        for element in identifier:  # every key asked, with its value where known
            keyword = element.keyword
            value = known.get(keyword, "") if keyword != "QueryRetrieveLevel" else element.value
            match.add_new(element.tag, element.VR, value or None)
        return match


@contextmanager
def fake_pacs_in_thread(pacs: FakePacs) -> Iterator[str]:
    """``pacs`` served from a background event loop; yields its node (AE@host:port)."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(fake_peer(pacs.serve)) as (port, _),
    ):
        yield f"FAKE@127.0.0.1:{port}"

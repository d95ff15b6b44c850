"""The C-STORE sub-operations of the demo's C-MOVEs, sent on qrclient's own network core.

pynetdicom's C-MOVE SCP sends each C-STORE from the handler's thread over a requestor
association whose reactor thread polls the same message queue; now and then the reactor
takes the C-STORE response first, the sub-operation waits out the DIMSE timeout and
fails (pynetdicom issues #435, #875). The demo's AE hands pynetdicom this object instead
of that association: it has the three members pynetdicom's C-MOVE SCP uses
(``is_established``, ``send_c_store``, ``release``) and sends over one of qrclient's
associations, driven from the handler's thread through an anyio blocking portal. It also
names the move's requestor as Move Originator (pynetdicom names itself), which is what
PS3.7 C.4.2.1 asks and what qrclient's listener routes by.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass

from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from qrclient.net import ContextRequest, DicomNetworkError, Peer, Settings, open_association
from qrclient.net.association import Association
from qrclient.net.datasets import encode_dataset
from qrclient.net.dimse import Command, CommandField, Priority, expect_response

SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))


@dataclass(frozen=True)
class MoveRequest:
    """What the sub-operations need beyond the destination: who asked, which classes."""

    originator: str
    sop_classes: Sequence[str]


class MoveStoreAssociation:
    """An open association to a C-MOVE destination, usable from a pynetdicom thread."""

    is_established = True

    def __init__(
        self, stack: ExitStack, portal: BlockingPortal, association: Association, originator: str
    ) -> None:
        self._stack = stack
        self._portal = portal
        self._association = association
        self._originator = originator

    @classmethod
    def open(
        cls, destination: Peer, calling_ae: str, move: MoveRequest
    ) -> MoveStoreAssociation | None:
        """Associate with ``destination``; None if that fails (pynetdicom then reports it)."""
        contexts = [ContextRequest(uid, SYNTAXES) for uid in move.sop_classes]
        stack = ExitStack()
        try:
            portal = stack.enter_context(start_blocking_portal())
            opening = open_association(destination, contexts, Settings(calling_ae))
            association = stack.enter_context(portal.wrap_async_context_manager(opening))
        except DicomNetworkError:
            stack.close()
            return None
        except BaseException:
            stack.close()  # never leave the portal's event-loop thread running
            raise
        return cls(stack, portal, association, move.originator)

    def send_c_store(
        self,
        dataset: Dataset,
        msg_id: int = 1,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """One sub-operation; the response's status as pynetdicom expects it.

        ``originator_aet`` (pynetdicom's own AE title) is replaced by the requestor's.
        A network failure raises, which pynetdicom counts as a failed sub-operation.
        """
        status = self._portal.call(self._store, dataset, msg_id, originator_id)
        response = Dataset()
        response.Status = status
        return response

    async def _store(self, dataset: Dataset, message_id: int, originator_id: int | None) -> int:
        context = self._association.accepted_context(str(dataset.SOPClassUID))
        assert context.transfer_syntax is not None  # accepted contexts always have one
        command = Command(
            CommandField.C_STORE_RQ,
            message_id=message_id,
            affected_sop_class_uid=str(dataset.SOPClassUID),
            affected_sop_instance_uid=str(dataset.SOPInstanceUID),
            priority=Priority.MEDIUM,
            move_originator_ae_title=self._originator,
            move_originator_message_id=originator_id,
        )
        encoded = encode_dataset(dataset, context.transfer_syntax)
        await self._association.send(context.context_id, command, encoded)
        _, response = await self._association.receive_command("C-STORE response")
        expect_response(response, CommandField.C_STORE_RSP, message_id)
        return response.status if response.status is not None else 0xC000

    def release(self) -> None:
        """Release the association (abort it if that fails) and stop the portal."""
        with suppress(DicomNetworkError):  # the sub-operations are counted already
            self._stack.close()


class UnreachableDestination:
    """A known destination the demo cannot connect to, as pynetdicom's C-MOVE SCP sees it.

    Every sub-operation fails, so the move ends as real PACSs end it (DCMTK's dcmqrscp:
    0xA702 with every sub-operation counted as failed), not with "Move destination
    unknown" (0xA801), which would point the user at the wrong fix.
    """

    is_established = True

    def __init__(self, destination: Peer) -> None:
        self._destination = destination

    def send_c_store(self, dataset: Dataset, *args: object, **kwargs: object) -> Dataset:
        raise ConnectionError(f"cannot connect to the C-MOVE destination {self._destination}")

    def release(self) -> None:
        """Nothing is open."""

"""Which move an incoming C-STORE belongs to (no network: the routing rule alone)."""

from __future__ import annotations

from qrclient.net.dimse import Command, CommandField
from qrclient.ops.move import MoveRouter
from qrclient.ops.progress import Progress

OURS, PACS = "QRCLIENT", "PACS"


def c_store(originator: str | None, message_id: int | None, uid: str = "1.2.3.4") -> Command:
    return Command(
        CommandField.C_STORE_RQ,
        affected_sop_instance_uid=uid,
        move_originator_ae_title=originator,
        move_originator_message_id=message_id,
    )


def test_a_c_store_is_routed_by_message_id_and_calling_ae() -> None:
    router = MoveRouter(OURS, sink=None)  # type: ignore[arg-type]  # routing needs no sink
    with router.expect(PACS, 7, None, Progress()) as move, router.expect(PACS, 8, None, Progress()):
        assert router.route(PACS, c_store(OURS, 7)) is move
        assert router.route(PACS, c_store(None, 7)) is move
        # pynetdicom-based PACSs name themselves as the originator: still ours by ID.
        assert router.route(PACS, c_store(PACS, 7)) is move
        assert router.route(PACS, c_store(OURS, 9)) is None  # no such move
        assert router.route("OTHER", c_store(OURS, 7)) is None  # not the PACS we asked
        assert router.route(PACS, c_store("THIRDAE", 7)) is None  # someone else's move
    assert router.route(PACS, c_store(OURS, 7)) is None  # the move has ended


def test_without_an_originator_the_expected_uids_decide() -> None:
    router = MoveRouter(OURS, sink=None)  # type: ignore[arg-type]
    with router.expect(PACS, 3, {"1.2.3.4"}, Progress()) as move:
        assert router.route(PACS, c_store(None, None)) is move
        assert router.route(PACS, c_store(None, None, uid="1.2.3.5")) is None

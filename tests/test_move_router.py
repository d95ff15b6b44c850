"""Who may deliver to our listener, and which move an incoming C-STORE belongs to
(no network: the rules alone)."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import anyio
import pytest

from qrclient.net.dimse import Command, CommandField
from qrclient.ops.move import MoveRouter, Senders, resolve_senders
from qrclient.ops.progress import Progress
from qrclient.ops.storing import Scope

OURS, PACS = "QRCLIENT", "PACS"
FROM_PACS = Senders(PACS, frozenset(), ())


def c_store(originator: str | None, message_id: int | None, uid: str = "1.2.3.4") -> Command:
    return Command(
        CommandField.C_STORE_RQ,
        affected_sop_instance_uid=uid,
        move_originator_ae_title=originator,
        move_originator_message_id=message_id,
    )


def router() -> MoveRouter:
    return MoveRouter(OURS, sink=None)  # type: ignore[arg-type]  # routing needs no sink


def test_a_c_store_is_routed_by_message_id_and_calling_ae() -> None:
    moves = router()
    with moves.expect(PACS, 7, None, Progress()) as move, moves.expect(PACS, 8, None, Progress()):
        assert moves.route(PACS, c_store(OURS, 7)) is move
        assert moves.route(PACS, c_store(None, 7)) is move
        # pynetdicom-based PACSs name themselves as the originator: still ours by ID.
        assert moves.route(PACS, c_store(PACS, 7)) is move
        assert moves.route(PACS, c_store(OURS, 9)) is None  # no such move
        assert moves.route("OTHER", c_store(OURS, 7)) is None  # not the PACS we asked
        assert moves.route(PACS, c_store("THIRDAE", 7)) is None  # someone else's move
    assert moves.route(PACS, c_store(OURS, 7)) is None  # the move has ended


def test_without_an_originator_the_only_move_or_the_expected_uids_decide() -> None:
    moves = router()
    with moves.expect(PACS, 3, {"1.2.3.4"}, Progress()) as move:
        # The one move from this sender takes it; its scope then refuses what is not its.
        assert moves.route(PACS, c_store(None, None, uid="1.2.3.5")) is move
        with moves.expect(PACS, 4, {"1.2.3.6"}, Progress()) as other:
            assert moves.route(PACS, c_store(None, None)) is move
            assert moves.route(PACS, c_store(None, None, uid="1.2.3.6")) is other
            assert moves.route(PACS, c_store(None, None, uid="1.2.3.5")) is None


def test_only_the_pacs_addresses_may_connect_and_only_while_a_move_runs() -> None:
    moves = router()
    addresses = frozenset((ip_address("10.0.0.5"), ip_address("::1")))
    senders = Senders(PACS, addresses, (ip_network("10.9.0.0/16"),))
    assert not moves.allows(PACS, "10.0.0.5")  # no move runs
    with moves.expect(senders, 1, Scope(), Progress()):
        assert moves.allows(PACS, "10.0.0.5")
        assert moves.allows(PACS, "::ffff:10.0.0.5")  # the same, from a dual-stack socket
        assert moves.allows(PACS, "::1")
        assert moves.allows(PACS, "10.9.200.1")  # a move_from network
        assert not moves.allows(PACS, "10.0.0.6")  # another address, the same AE title
        assert not moves.allows("OTHER", "10.0.0.5")  # the right address, another AE title
        assert not moves.allows(PACS, "not an address")
        # An instance from another address is not routed either, even with the right ID.
        assert moves.route(PACS, c_store(OURS, 1), "10.0.0.6") is None
        assert moves.route(PACS, c_store(OURS, 1), "10.0.0.5") is not None
    assert not moves.allows(PACS, "10.0.0.5")


def test_message_ids_are_random_and_never_those_of_running_moves() -> None:
    moves = router()
    with moves.expect(FROM_PACS, 1, None, Progress()):
        ids = {moves.message_id() for _ in range(200)}
    assert 1 not in ids
    assert len(ids) > 150  # not a counter: drawn from 1 to 65535
    assert all(1 <= i <= 0xFFFF for i in ids)


@pytest.mark.anyio
async def test_senders_are_the_hosts_addresses_and_move_from(anyio_backend: str) -> None:
    with anyio.fail_after(10):
        senders, notes = await resolve_senders(PACS, "localhost", ["192.0.2.7", "198.51.100.0/24"])
    assert senders.admits(PACS, "127.0.0.1")
    assert senders.admits(PACS, "192.0.2.7")
    assert senders.admits(PACS, "198.51.100.99")
    assert not senders.admits(PACS, "192.0.2.8")
    assert notes == []

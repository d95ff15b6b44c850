"""C-MOVE: the peer sends the instances to a destination AE over its own associations.

When the destination is us, :class:`MoveRouter` is the handler of our storage listener.
It accepts an association only while one of our moves is running, and only from that
move's :class:`Senders`: the PACS's AE title, calling from an address its host name
resolves to or one the node's ``move_from`` lists. The AE title alone proves nothing
(anyone can send any), nor does the Move Originator Message ID the PACS copies onto
its sub-operations: ours are random, not a counter, yet only 16 bits. Each incoming
C-STORE is routed to its move by that ID, else (a PACS that leaves it out) to the one
move expecting it, and must belong to that move's request (its ``Scope``): anything
else is refused and counted, never stored.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from qrclient.net.association import Association
from qrclient.net.datasets import encode_dataset
from qrclient.net.dimse import Command, CommandField, Priority, expect_response
from qrclient.net.identifier import Identifier
from qrclient.net.status import Service
from qrclient.ops.cancel import cancel_request
from qrclient.ops.get import CANCEL_GRACE, SubOperations
from qrclient.ops.progress import Progress
from qrclient.ops.storing import Arrival, InstanceSink, Refusals, Scope, receive_instance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=256)
def parse_address(text: str) -> Address | None:
    """An address as a socket reports it; an IPv4-mapped IPv6 one as IPv4 (remembered:
    every instance of a move is checked, from a few addresses)."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Senders:
    """Who may deliver a move's instances: its AE title, from these addresses.

    ``addresses`` None admits any address (a diagnosis that only watches who calls).
    """

    ae_title: str
    addresses: frozenset[Address] | None = None
    networks: tuple[Network, ...] = ()

    def admits(self, calling_ae: str, address: str) -> bool:
        if calling_ae != self.ae_title:
            return False
        if self.addresses is None:
            return True
        parsed = parse_address(address)
        if parsed is None:
            return False
        return parsed in self.addresses or any(parsed in n for n in self.networks)

    def describe(self) -> str:
        if self.addresses is None:
            return f"{self.ae_title} from any address"
        where = sorted(str(a) for a in self.addresses) + [str(n) for n in self.networks]
        return f"{self.ae_title} from {', '.join(where) or 'nowhere'}"


async def resolve_senders(
    ae_title: str, host: str, move_from: Sequence[str]
) -> tuple[Senders, list[str]]:
    """The addresses of ``host`` and of ``move_from`` (addresses, networks such as
    10.1.2.0/24, host names); and a note for each entry that does not resolve."""
    addresses: set[Address] = set()
    networks: list[Network] = []
    notes: list[str] = []
    for entry in (host, *move_from):
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            pass
        else:
            if network.num_addresses == 1:
                addresses.add(network.network_address)
            else:
                networks.append(network)
            continue
        try:
            infos = await anyio.getaddrinfo(entry, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            notes.append(f"move_from: {entry!r} does not resolve ({exc}): not accepted")
            continue
        for info in infos:
            parsed = parse_address(str(info[4][0]))
            if parsed is not None:
                addresses.add(parsed)
    return Senders(ae_title, frozenset(addresses), tuple(networks)), notes


@dataclass(slots=True)
class _Move:
    senders: Senders
    scope: Scope | None
    progress: Progress
    errors: list[str] = field(default_factory=list)
    refusals: Refusals = field(default_factory=Refusals)
    arrived: int = 0  # C-STOREs routed to this move (stored or not)


class MoveRouter:
    """Storage handler for moves to us: who may connect, and where each instance goes."""

    def __init__(self, our_ae: str, sink: InstanceSink) -> None:
        self.our_ae = our_ae
        self.sink = sink
        self._moves: dict[int, _Move] = {}
        self.unexpected = Refusals()  # instances no running move of ours was waiting for
        # Set while a listener that binds on demand serves this router: awaited before
        # the first move to us.
        self.start_listening: Callable[[], Awaitable[None]] | None = None

    def message_id(self) -> int:
        """A random message ID for a new move, none of the running moves'."""
        while True:  # os.urandom: the secrets module costs 3 ms to import
            candidate = int.from_bytes(os.urandom(2)) % 0xFFFF + 1
            if candidate not in self._moves:
                return candidate

    @contextmanager
    def expect(
        self,
        senders: Senders | str,
        message_id: int,
        expected: Scope | set[str] | None,
        progress: Progress,
    ) -> Iterator[_Move]:
        """Accept the instances of the move ``message_id`` while the block runs.

        ``senders`` as a bare AE title admits any address; ``expected`` as a set names
        SOP Instance UIDs only.
        """
        if isinstance(senders, str):
            senders = Senders(senders)
        scope = Scope(instances=frozenset(expected)) if isinstance(expected, set) else expected
        move = _Move(senders, scope, progress)
        self._moves[message_id] = move
        try:
            yield move
        finally:
            del self._moves[message_id]

    def allows(self, calling_ae: str, address: str) -> bool:
        return any(move.senders.admits(calling_ae, address) for move in self._moves.values())

    def route(self, calling_ae: str, command: Command, address: str | None = None) -> _Move | None:
        """The move an incoming C-STORE belongs to, or None (then it is refused).

        ``address`` None: not checked (the association was admitted already).
        """
        candidates = [
            (message_id, move)
            for message_id, move in self._moves.items()
            if move.senders.ae_title == calling_ae
            and (address is None or move.senders.admits(calling_ae, address))
        ]
        # The originator should be us; pynetdicom-based PACSs put their own AE title
        # there. Either way the message ID must then be one of our moves'.
        originator = command.move_originator_message_id
        if command.move_originator_ae_title in (None, self.our_ae, calling_ae):
            by_id = next((m for i, m in candidates if i == originator), None)
            if by_id is not None:
                return by_id
            if originator is None and len(candidates) == 1:
                return candidates[0][1]
        # A move someone else asked for, or several moves of ours: by the expected UIDs.
        uid = command.affected_sop_instance_uid or ""
        return next(
            (m for _, m in candidates if m.scope is not None and uid in m.scope.instances),
            None,
        )

    async def store(self, association: Association, context_id: int, command: Command) -> Arrival:
        move = self.route(association.peer.ae_title, command, association.peer.host)
        if move is None:
            return await receive_instance(
                association,
                context_id,
                command,
                None,
                Progress(),
                [],
                refusals=self.unexpected,
                refuse="no move of ours from this sender is waiting for it",
            )
        move.arrived += 1
        return await receive_instance(
            association,
            context_id,
            command,
            self.sink,
            move.progress,
            move.errors,
            scope=move.scope,
            refusals=move.refusals,
        )


async def c_move(
    association: Association,
    identifier: Dataset | Identifier,
    sop_class: str,
    destination: str,
    progress: Progress | None = None,
    *,
    message_id: int | None = None,
    grace: float = CANCEL_GRACE,
) -> SubOperations:
    """Send one C-MOVE and follow its responses.

    Pass ``message_id`` (``MoveRouter.message_id()``) when the listener must be told
    about the move before its first instance can arrive.
    """
    progress = progress or Progress()
    context = association.accepted_context(sop_class)
    message_id = message_id or association.next_message_id()
    request = Command(
        command_field=CommandField.C_MOVE_RQ,
        message_id=message_id,
        affected_sop_class_uid=sop_class,
        priority=Priority.MEDIUM,
        move_destination=destination,
    )
    await association.send(
        context.context_id, request, encode_dataset(identifier, str(context.transfer_syntax))
    )
    result = SubOperations(message_id=message_id)

    async def handle_response() -> bool:
        message = await association.receive_message("C-MOVE response")
        return _note(message.command, message_id, result, progress)

    try:
        while True:
            await anyio.lowlevel.checkpoint_if_cancelled()
            if await handle_response():
                return result
    except anyio.get_cancelled_exc_class():
        result.cancelled = True
        result.aborted = await cancel_request(
            association, context.context_id, message_id, grace, handle_response
        )
        raise


def _note(command: Command, message_id: int, result: SubOperations, progress: Progress) -> bool:
    """Record one C-MOVE response; True when it is the final one."""
    expect_response(command, CommandField.C_MOVE_RSP, message_id)
    return result.note(command, Service.MOVE, progress)

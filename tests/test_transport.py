"""The socket stream and listener under the network core, on both anyio backends.

Plain sockets on the loopback stand in for the peer: what is tested is the stream's
own behaviour (partial sends, end of stream, closing, cancellation, yielding), which
a real PACS would only show by chance.
"""

from __future__ import annotations

import socket

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from fixtures.orthanc import free_ports
from qrclient.net.transport import (
    YIELD_EVERY,
    SocketStream,
    _literal_address,
    connect_tcp,
    listening_socket,
    serve_connections,
)

pytestmark = pytest.mark.anyio


def stream_pair() -> tuple[SocketStream, socket.socket]:
    ours, theirs = socket.socketpair()
    return SocketStream(ours), theirs


async def test_a_large_send_arrives_whole_through_a_full_socket_buffer() -> None:
    stream, theirs = stream_pair()
    payload = bytes(range(256)) * 40_000  # 10 MB: far beyond the socket buffers
    received = bytearray()

    def drain() -> None:
        while len(received) < len(payload):
            chunk = theirs.recv(1 << 16)
            if not chunk:
                break
            received.extend(chunk)

    async with anyio.create_task_group() as group:
        group.start_soon(anyio.to_thread.run_sync, drain)
        await stream.send(payload)
    assert bytes(received) == payload
    await stream.aclose()
    theirs.close()


async def test_receive_returns_what_was_sent_then_end_of_stream() -> None:
    stream, theirs = stream_pair()
    theirs.sendall(b"hello")
    theirs.shutdown(socket.SHUT_WR)
    assert await stream.receive() == b"hello"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    await stream.aclose()
    theirs.close()


async def test_receive_waits_for_data() -> None:
    stream, theirs = stream_pair()

    async def later() -> None:
        await anyio.sleep(0.05)
        theirs.sendall(b"late")

    async with anyio.create_task_group() as group:
        group.start_soon(later)
        with anyio.fail_after(5):
            assert await stream.receive() == b"late"
    await stream.aclose()
    theirs.close()


async def test_closing_wakes_a_waiting_receive() -> None:
    stream, theirs = stream_pair()
    outcome: list[type[BaseException]] = []

    async def receive() -> None:
        try:
            await stream.receive()
        except anyio.ClosedResourceError as exc:
            outcome.append(type(exc))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(receive)
            await anyio.sleep(0.05)
            await stream.aclose()
    assert outcome == [anyio.ClosedResourceError]
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"x")
    theirs.close()


async def test_a_waiting_receive_is_cancelled_by_its_scope() -> None:
    stream, theirs = stream_pair()
    with anyio.move_on_after(0.05) as scope:
        await stream.receive()
    assert scope.cancelled_caught
    theirs.sendall(b"still usable")
    assert await stream.receive() == b"still usable"
    await stream.aclose()
    theirs.close()


async def test_a_ready_stream_still_lets_other_tasks_run() -> None:
    """Data always waiting means no wait ever yields: the stream must yield itself."""
    stream, theirs = stream_pair()
    theirs.sendall(b"x" * 4096)
    ticks = 0
    calls = 4 * YIELD_EVERY

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        before = ticks
        for _ in range(calls):
            assert await stream.receive(1) == b"x"
        during = ticks - before
        group.cancel_scope.cancel()
    assert 1 <= during <= calls
    await stream.aclose()
    theirs.close()


async def test_a_ready_stream_sees_cancellation_within_a_few_calls() -> None:
    stream, theirs = stream_pair()
    theirs.sendall(b"x" * 64)
    calls = 0
    with anyio.CancelScope() as scope:
        scope.cancel()
        while calls <= YIELD_EVERY:
            await stream.receive(1)
            calls += 1
    assert scope.cancelled_caught
    assert calls < YIELD_EVERY


async def test_receive_within_times_out_only_a_wait() -> None:
    stream, theirs = stream_pair()
    theirs.sendall(b"ready")
    assert await stream.receive_within(0) == b"ready"  # no wait: no timeout
    with pytest.raises(TimeoutError):
        await stream.receive_within(0.05)
    theirs.sendall(b"after")
    assert await stream.receive_within(1) == b"after"
    await stream.aclose()
    theirs.close()


async def test_send_within_times_out_only_when_the_peer_takes_nothing() -> None:
    stream, theirs = stream_pair()
    await stream.send_within(b"fits", 0)  # the kernel took it at once: no timeout
    assert theirs.recv(16) == b"fits"
    blocked = b"\x00" * (64 << 20)  # far beyond both socket buffers; never read
    with anyio.fail_after(5), pytest.raises(TimeoutError):
        await stream.send_within(blocked, 0.2)
    await stream.aclose()
    theirs.close()


async def test_a_peer_reset_is_a_broken_resource() -> None:
    stream, theirs = stream_pair()
    theirs.close()

    async def send_until_it_breaks() -> None:
        for _ in range(100):  # the first sends may still be buffered
            await stream.send(b"x" * 65536)

    with pytest.raises(anyio.BrokenResourceError):
        await send_until_it_breaks()
    await stream.aclose()


async def test_connect_to_a_closed_port_is_refused() -> None:
    (port,) = free_ports(1)
    with pytest.raises(ConnectionRefusedError):
        await connect_tcp("127.0.0.1", port)


async def test_connect_to_an_unknown_host_is_a_resolver_error() -> None:
    with pytest.raises(socket.gaierror):
        await connect_tcp("no-such-host.invalid", 104)


async def test_listener_serves_connections_concurrently() -> None:
    listener = listening_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    both_inside = anyio.Event()
    inside = 0

    async def handle(stream: SocketStream) -> None:
        nonlocal inside
        data = await stream.receive()
        inside += 1
        if inside == 2:
            both_inside.set()
        await both_inside.wait()  # only passes if the other connection is served too
        await stream.send(data.upper())

    with anyio.fail_after(10), listener:
        async with anyio.create_task_group() as group:
            group.start_soon(serve_connections, listener, handle)
            first = await connect_tcp("127.0.0.1", port)
            second = await connect_tcp("localhost", port)
            await first.send(b"one")
            await second.send(b"two")
            assert await first.receive() == b"ONE"
            assert await second.receive() == b"TWO"
            # The handler's stream is closed after it returns.
            with pytest.raises(anyio.EndOfStream):
                await first.receive()
            await first.aclose()
            await second.aclose()
            group.cancel_scope.cancel()


def test_listening_on_a_port_in_use_fails() -> None:
    with listening_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="Address already in use"):
            listening_socket("127.0.0.1", port)


def test_ip_literals_need_no_resolver() -> None:
    """An address goes straight to connect: the resolver would start a worker thread."""
    assert _literal_address("127.0.0.1", 104) == [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 104))
    ]
    assert _literal_address("::1", 104)[0][4] == ("::1", 104, 0, 0)
    assert _literal_address("localhost", 104) == []
    assert _literal_address("fe80::1%eth0", 104) == []  # scoped: left to the resolver


async def test_connect_by_name_and_by_address() -> None:
    listener = listening_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    with listener:
        for host in ("127.0.0.1", "localhost"):
            stream = await connect_tcp(host, port)
            assert stream.extra(anyio.abc.SocketAttribute.remote_port) == port
            await stream.aclose()

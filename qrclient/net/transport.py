"""A TCP byte stream straight on a non-blocking socket.

anyio's own socket stream goes through an asyncio transport and protocol: every
``receive`` resumes and pauses reading (two epoll changes), waits on an event and
yields to the event loop, and every ``send`` yields again. A retrieve in lock step
(one C-STORE, one answer) paid that several times per instance. This stream tries
the socket first and waits for readiness only when the kernel has nothing, which is
rare while a peer streams instances. It works on any anyio backend, and TLS wraps
it like any other byte stream.

Not waiting means not yielding: so that other tasks (progress, other associations)
still run and cancellation is seen, every few calls that did not wait yield to the
event loop (a checkpoint). Callers that must see cancellation at once check for it
themselves (the DIMSE operations do, once per message).
"""

from __future__ import annotations

import errno
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from anyio.abc import ByteStream, SocketAttribute

RECEIVE_SIZE = 65536
YIELD_EVERY = 8  # calls that found the socket ready before one yields anyway


class SocketStream(ByteStream):
    """A connected TCP socket (TCP_NODELAY set) as an anyio byte stream."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Without it every DIMSE round trip waits for a delayed ACK (about 40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._closed = False
        self._ready_calls = 0

    async def receive(self, max_bytes: int = RECEIVE_SIZE) -> bytes:
        return await self.receive_within(math.inf, max_bytes)

    async def receive_within(self, seconds: float, max_bytes: int = RECEIVE_SIZE) -> bytes:
        """``receive``, raising TimeoutError if nothing came within ``seconds``.

        Only a wait is timed: data already there costs no cancel scope.
        """
        await self._checkpoint()
        while True:
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                with anyio.fail_after(seconds):
                    await self._wait(anyio.wait_readable)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            if not data:
                raise EndOfStream
            return data

    async def send(self, item: bytes | bytearray | memoryview) -> None:
        await self.send_within(item, math.inf)

    async def send_within(self, item: bytes | bytearray | memoryview, seconds: float) -> None:
        """``send``, raising TimeoutError unless all of it is sent within ``seconds``.

        Only a wait looks at the clock: a send the kernel takes at once costs nothing more.
        """
        await self._checkpoint()
        view = memoryview(item)
        deadline = 0.0
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                now = time.monotonic()
                deadline = deadline or now + seconds
                with anyio.fail_after(deadline - now):
                    await self._wait(anyio.wait_writable)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        if self._closed:
            raise ClosedResourceError
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._broken(exc) from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._sock)  # wakes a task waiting on it
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._sock
        return {
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: sock.getsockname,
            SocketAttribute.local_port: lambda: sock.getsockname()[1],
            SocketAttribute.raw_socket: lambda: sock,
            SocketAttribute.remote_address: sock.getpeername,
            SocketAttribute.remote_port: lambda: sock.getpeername()[1],
        }

    async def _checkpoint(self) -> None:
        if self._closed:
            raise ClosedResourceError
        self._ready_calls += 1
        if self._ready_calls >= YIELD_EVERY:
            self._ready_calls = 0
            await anyio.lowlevel.checkpoint()

    async def _wait(self, wait: Callable[[socket.socket], Any]) -> None:
        self._ready_calls = 0  # waiting yields
        await wait(self._sock)
        if self._closed:
            raise ClosedResourceError

    def _broken(self, exc: OSError) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return ClosedResourceError()
        return BrokenResourceError()


async def connect_tcp(host: str, port: int) -> SocketStream:
    """Connect to the first of ``host``'s addresses that accepts; OSError if none does.

    The addresses are tried in turn (the resolver's order); the caller's deadline
    bounds all of them.
    """
    addresses = _literal_address(host, port) or await anyio.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    failure: OSError | None = None
    for family, kind, protocol, _, address in addresses:
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                await anyio.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return SocketStream(sock)
    raise failure or OSError(errno.EADDRNOTAVAIL, f"no address for {host}")


def _literal_address(host: str, port: int) -> list[Any]:
    """``host`` as an address if it is an IP literal, else nothing.

    The resolver runs in a worker thread; an address needs none (and no thread).
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        address = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
    return []


def listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port`` (port 0: any free one).

    ``host`` is an address of this machine (IPv4 or IPv6) or a name for one; OSError
    (socket.gaierror for an unknown name) if it cannot be bound.
    """
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(address, family=family, backlog=128)
    sock.setblocking(False)
    return sock


async def serve_connections(
    listener: socket.socket, handle: Callable[[SocketStream], Awaitable[object]]
) -> None:
    """Accept connections on ``listener`` forever, each handled in its own task."""
    async with anyio.create_task_group() as group:
        while True:
            await anyio.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:  # another waiter took it, or the client gave up
                continue
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # that connection failed (ECONNABORTED, ...); others may not
                await anyio.sleep(0.1)  # out of descriptors: let running handlers finish
                continue
            group.start_soon(_handle_and_close, handle, SocketStream(sock))


async def _handle_and_close(
    handle: Callable[[SocketStream], Awaitable[object]], stream: SocketStream
) -> None:
    try:
        await handle(stream)
    finally:
        await anyio.aclose_forcefully(stream)

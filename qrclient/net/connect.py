"""Why a connection to a peer failed, or dropped before it answered, in words a user
can act on: a wrong host name, a closed port, a web port, a refused TLS certificate."""

from __future__ import annotations

import errno
import socket
import ssl

from qrclient.net.errors import (
    AssociationAborted,
    ConnectFailed,
    ConnectionDropped,
    DicomNetworkError,
    ProtocolError,
    TlsFailed,
)
from qrclient.net.tls import TlsSettings, handshake_failure


def connect_failure(host: str, port: int, exc: OSError) -> ConnectFailed:
    """What a failed TCP connect (``exc``, perhaps a group of them) means."""
    where = f"{host}:{port}"
    causes: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        item = pending.pop()
        if item is None:
            continue
        causes.append(item)
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        pending.append(item.__cause__)
    codes = {c.errno for c in causes if isinstance(c, OSError)}
    if any(isinstance(c, socket.gaierror) for c in causes):
        return ConnectFailed(
            f"cannot resolve host name {host!r}", "check the spelling, or use an IP address"
        )
    if errno.ECONNREFUSED in codes:
        return ConnectFailed(
            f"connection refused by {where}",
            "nothing listens on that port: check the PACS's DICOM port and that it is running",
        )
    if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return ConnectFailed(
            f"no route to {where}", "check the address and this machine's network connection"
        )
    return ConnectFailed(f"cannot connect to {where} ({exc})", "check host and port")


def connect_timeout(host: str, port: int, seconds: float) -> ConnectFailed:
    return ConnectFailed(
        f"no answer from {host}:{port} within {seconds:g} s",
        "the host may be down or a firewall drops the packets; check host and port",
    )


def dropped_at_start(
    exc: BaseException, host: str, port: int, tls: TlsSettings | None
) -> DicomNetworkError:
    """The connection dropped before any answer to our request: say what it likely means.

    Over TLS 1.3 the server checks our certificate after the handshake, so a refusal
    arrives as an alert (or, if our request crossed it, as a reset) on the first read.
    """
    where = f"{host}:{port}"
    cause = exc.__cause__ if isinstance(exc, ConnectionDropped) else exc
    if tls is None:
        return AssociationAborted(
            f"{where} closed the connection before answering our association request",
            "check the peer's log; if this port expects DICOM over TLS, add --tls",
        )
    if isinstance(cause, ssl.SSLError):
        return handshake_failure(cause, where, host)
    if tls.cert_file is None:
        hint = (
            "the PACS probably requires a client certificate: give ours with --tls-cert/--tls-key"
        )
    else:
        hint = "the PACS probably does not trust our client certificate: register it (or its CA)"
    return TlsFailed(f"{where} closed the TLS connection before answering", hint)


def http_instead(answer: bytes, host: str, port: int) -> ProtocolError | None:
    """A port that answered our A-ASSOCIATE-RQ with HTTP (someone gave the PACS's web
    port), else None. DICOM PDUs start with a type byte of 1 to 7, HTTP with "HTTP/"."""
    if not answer.startswith(b"HTTP/"):
        return None
    status = answer.split(b"\r\n", 1)[0][:60].decode("ascii", "replace")
    return ProtocolError(
        f"{host}:{port} speaks HTTP, not DICOM (it answered {status!r})",
        "that is a web port (perhaps the PACS's web interface or REST API): give the "
        "PACS's DICOM port (often 104, 4242 or 11112)",
    )

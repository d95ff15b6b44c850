"""A peer (``AET@host:port``), parsing and checking it, AE titles and our listen address."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    """Where the PACS listens and the AE title it answers to."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class NodeError(ValueError):
    """Bad node or AE title; the message is one line naming the value and what is expected."""


_HOST_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def check_ae_title(value: str, what: str = "AE title") -> str:
    """Return the AE title stripped, or raise NodeError saying what PS3.5 allows."""
    stripped = value.strip(" ")
    if not stripped:
        raise NodeError(f"empty {what}: expected 1 to 16 characters, e.g. QRCLIENT")
    if len(stripped) > 16:
        raise NodeError(f"{what} {value!r} has {len(stripped)} characters: at most 16 are allowed")
    if not stripped.isascii() or any(c == "\\" or not c.isprintable() for c in stripped):
        raise NodeError(
            f"{what} {value!r}: only printable ASCII characters other than backslash are allowed"
        )
    return stripped


def check_port(text: str, what: str = "port") -> int:
    if not (text.isascii() and text.isdigit()):
        raise NodeError(f"{what} {text!r} is not a number: expected 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise NodeError(f"{what} {port} is out of range: expected 1 to 65535")
    return port


def check_host(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise NodeError(f"host {text!r}: brackets hold an IPv6 address, e.g. [::1]") from None
    host = text
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_RE.fullmatch(host):
        raise NodeError(f"host {text!r} is not a host name or IP address")
    return host


def check_sender(text: str, what: str = "move_from") -> str:
    """An address, a network (``10.1.2.0/24``) or a host name a PACS may send from."""
    stripped = text.strip()
    try:
        ipaddress.ip_network(stripped, strict=False)
    except ValueError:
        pass
    else:
        return stripped
    if not _HOST_RE.fullmatch(stripped):
        raise NodeError(
            f"{what} {text!r} is not an address, a network (e.g. 10.1.2.0/24) or a host name"
        )
    return stripped


def parse_node(text: str) -> Peer:
    """Parse ``AET@host:port`` (IPv6 hosts in brackets: ``PACS@[::1]:104``)."""
    ae_title, at, address = text.rpartition("@")
    if not at:
        raise NodeError(f"node {text!r}: expected AET@host:port, e.g. ORTHANC@127.0.0.1:4242")
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise NodeError(f"node {text!r} has no port: expected AET@host:port")
    if ":" in host and not host.startswith("["):
        raise NodeError(f"node {text!r}: write an IPv6 address in brackets, e.g. AET@[::1]:104")
    return Peer(check_ae_title(ae_title, "called AE title"), check_host(host), check_port(port))


DEFAULT_LISTEN_HOST = "0.0.0.0"  # our storage listener: the PACS connects from elsewhere
DEFAULT_LISTEN_PORT = 11113


def parse_listen(text: str, what: str = "--listen port") -> tuple[str, int]:
    """``PORT``, ``:PORT`` or ``HOST:PORT`` (``[IPv6]:PORT``) for our storage listener."""
    host, colon, port = text.rpartition(":")
    return (check_host(host) if colon and host else DEFAULT_LISTEN_HOST), check_port(port, what)

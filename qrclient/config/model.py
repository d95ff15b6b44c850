"""What a configuration says: our AE title, the store, defaults and named nodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qrclient.net.events import Observer
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, NodeError, Peer, parse_node
from qrclient.net.settings import DEFAULT_MAX_INSTANCE, DEFAULT_MAX_PDU, Settings, Timeouts
from qrclient.net.tls import TlsSettings
from qrclient.vocabulary import Method, Model

DEFAULT_AE_TITLE = "QRCLIENT"
DEFAULT_PARALLEL = 2
MAX_PARALLEL = 16


def format_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address(peer: Peer) -> str:
    """``AET@host:port`` as it is typed: an IPv6 host in brackets."""
    return f"{peer.ae_title}@{format_listen(peer.host, peer.port)}"


@dataclass(frozen=True, slots=True)
class NodeDefaults:
    """Settings a node inherits unless it sets its own (the file's top level)."""

    model: Model = Model.STUDY
    method: Method = Method.AUTO
    listen_host: str = DEFAULT_LISTEN_HOST
    listen_port: int = DEFAULT_LISTEN_PORT
    parallel: int = DEFAULT_PARALLEL
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A peer with how to talk to it; every field is the effective value."""

    name: str  # the configured name; for AET@host:port given directly, that text
    peer: Peer
    model: Model = Model.STUDY
    method: Method = Method.AUTO
    destination: str | None = None  # C-MOVE destination; None: our own AE title
    listen_host: str = DEFAULT_LISTEN_HOST
    listen_port: int = DEFAULT_LISTEN_PORT
    parallel: int = DEFAULT_PARALLEL
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TlsSettings | None = None
    configured: bool = True  # False: AET@host:port given directly, not a named node
    # Our AE title toward this node (sites register a different one with each PACS);
    # None: the file's ae_title. ``peer.ae_title`` is the PACS's own.
    calling_ae: str | None = None
    # Where else its C-MOVE deliveries may come from (addresses, networks, host names).
    move_from: tuple[str, ...] = ()
    # Where its C-FIND answers stop without saying so (a cohort's look-up then splits).
    find_cap: int | None = None

    @property
    def listen(self) -> str:
        return format_listen(self.listen_host, self.listen_port)

    def settings(
        self,
        calling_ae: str = DEFAULT_AE_TITLE,
        max_pdu: int = DEFAULT_MAX_PDU,
        observer: Observer | None = None,
        max_instance: int = DEFAULT_MAX_INSTANCE,
    ) -> Settings:
        return Settings(calling_ae, max_pdu, self.timeouts, observer, self.tls, max_instance)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None = None  # the file read, or that would be read (None: built in)
    ae_title: str = DEFAULT_AE_TITLE  # our calling AE title
    store: Path | None = None  # the local store (None: qrclient's default)
    max_pdu: int = DEFAULT_MAX_PDU
    max_instance: int = DEFAULT_MAX_INSTANCE  # bytes: a larger received instance is refused
    defaults: NodeDefaults = field(default_factory=NodeDefaults)
    nodes: Mapping[str, NodeConfig] = field(default_factory=dict)

    def resolve(self, text: str) -> NodeConfig:
        """A configured node by name, or ``AET@host:port`` with the configured defaults."""
        text = text.strip()
        if text in self.nodes:
            return self.nodes[text]
        if "@" in text:
            return self.ad_hoc(parse_node(text))
        where = f" in {self.path}" if self.path else ""
        known = ", ".join(sorted(self.nodes)) if self.nodes else "none"
        raise NodeError(
            f"node {text!r} is neither a configured name{where} (configured: {known}) "
            "nor AET@host:port, e.g. ORTHANC@127.0.0.1:4242"
        )

    def ad_hoc(self, peer: Peer) -> NodeConfig:
        d = self.defaults
        return NodeConfig(
            address(peer),
            peer,
            d.model,
            d.method,
            None,
            d.listen_host,
            d.listen_port,
            d.parallel,
            d.timeouts,
            None,
            configured=False,
        )

    def calling_ae(self, node: NodeConfig, given: str | None = None) -> str:
        """Our AE title toward ``node``: ``given`` (--aet), else the node's calling_ae,
        else the file's ae_title (else QRCLIENT)."""
        return given or node.calling_ae or self.ae_title

    def settings(self, node: NodeConfig, observer: Observer | None = None) -> Settings:
        """Association settings for ``node``: our AE title and max PDU, its timeouts and TLS."""
        return node.settings(self.calling_ae(node), self.max_pdu, observer, self.max_instance)

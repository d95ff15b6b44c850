"""Which node the user means: a configured name, or ``AET@host:port`` with the defaults."""

from __future__ import annotations

from pathlib import Path

from qrclient.config import Config, NodeConfig, load_config
from qrclient.net.peer import NodeError
from qrclient.tui.backend import Node


class NodeBook:
    """The configuration's named nodes and defaults (built-in ones when there is no file)."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        calling_ae: str | None = None,
        listen: tuple[str, int] | None = None,
    ) -> None:
        self.config = config or Config()
        self.given_ae = calling_ae  # --aet: wins over every node's own calling_ae
        self.calling_ae = calling_ae or self.config.ae_title
        self.listen = listen  # --listen: where our listener waits, whatever the node says

    @classmethod
    def load(
        cls,
        config_path: str | Path | None = None,
        *,
        calling_ae: str | None = None,
        listen: tuple[str, int] | None = None,
        missing_ok: bool = False,
    ) -> NodeBook:
        """The user's configuration; ConfigError (a ValueError, one line) if unusable.
        ``missing_ok``: a named file that does not exist yet is the defaults."""
        config = load_config(config_path, missing_ok=missing_ok)
        return cls(config, calling_ae=calling_ae, listen=listen)

    @property
    def default_listen(self) -> tuple[str, int]:
        """Where our listener waits for nodes without an address of their own."""
        defaults = self.config.defaults
        return self.listen or (defaults.listen_host, defaults.listen_port)

    @property
    def names(self) -> list[str]:
        return sorted(self.config.nodes)

    @property
    def store(self) -> Path | None:
        return self.config.store

    def resolve(self, text: str) -> Node:
        """A Node for a name or ``AET@host:port``; NodeError naming the value otherwise."""
        if not text.strip():
            raise NodeError("no node: type AET@host:port (e.g. ORTHANC@127.0.0.1:4242)")
        return self.node(self.config.resolve(text))

    def node(self, config: NodeConfig) -> Node:
        defaults = self.config.defaults
        own = (config.listen_host, config.listen_port)
        has_own = own != (defaults.listen_host, defaults.listen_port)
        return Node(
            config.peer,
            config.method,
            config.name if config.configured else "",
            settings=config.settings(
                self.config.calling_ae(config, self.given_ae), self.config.max_pdu
            ),
            destination=config.destination,
            listen=own if has_own and self.listen is None else None,
            move_from=config.move_from,
        )

"""The options every network command shares, as one typed value (see cli.arguments)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """The --tls* options as given (None: not given)."""

    tls: bool | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    no_verify: bool | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> TlsOptions:
        return cls(
            args.tls, args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name,
            args.tls_no_verify,
        )  # fmt: skip

    @property
    def given(self) -> bool:
        return any((self.tls, self.ca, self.cert, self.key, self.server_name, self.no_verify))


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """NODE, --config and the association options as given (None: not given)."""

    node: str
    config: str | None = None
    aet: str | None = None
    max_pdu: int | None = None
    connect_timeout: float | None = None
    association_timeout: float | None = None
    dimse_timeout: float | None = None
    network_timeout: float | None = None
    tls: TlsOptions = TlsOptions()
    verbose: bool = False
    quiet: bool = False
    trace: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> ConnectionOptions:
        return cls(
            args.node,
            args.config if args.config is not None else args.global_config,  # before the command
            args.aet,
            args.max_pdu,
            args.connect_timeout,
            args.association_timeout,
            args.dimse_timeout,
            args.network_timeout,
            TlsOptions.from_namespace(args),
            args.verbose,
            args.quiet,
            args.trace,
        )

    def timeouts(self) -> dict[str, float | None]:
        return {
            "connect": self.connect_timeout,
            "association": self.association_timeout,
            "dimse": self.dimse_timeout,
            "network": self.network_timeout,
        }

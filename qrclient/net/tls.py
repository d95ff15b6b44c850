"""DICOM over TLS: what a node's TLS settings are (the SSL contexts are built from them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS for an association or our storage listener; verification is on by default.

    ``ca_file``: certificates to trust (None: the system's); ``cert_file``/``key_file``:
    our certificate (a client certificate when we connect, the server's when we listen);
    ``server_name``: the name to check the peer's certificate against (default: host).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None

"""The --tls* options over a node's own TLS settings, checked before anything connects."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qrclient.net.peer import NodeError, check_host
from qrclient.net.tls import TlsSettings, TlsSetupError, check_files

_FILE_OPTIONS = (
    ("tls_ca", "--tls-ca", "a PEM file of CA certificates"),
    ("tls_cert", "--tls-cert", "a PEM certificate file"),
    ("tls_key", "--tls-key", "a PEM private key file"),
)
_ALL = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "tls_no_verify")


class TlsOptionError(ValueError):
    """A --tls* option that cannot be used (one line, exit code 2)."""


def tls_from_options(
    args: argparse.Namespace, configured: TlsSettings | None
) -> TlsSettings | None:
    """TLS settings from the options (any --tls* turns TLS on) over ``configured``.

    Each option given replaces the node's value; None means plain TCP. Every file is
    checked now (exists, is PEM, key matches): raises TlsOptionError naming the option.
    """
    server_name = getattr(args, "tls_server_name", None)
    if server_name is not None:
        try:
            check_host(server_name)
        except NodeError as exc:
            raise TlsOptionError(f"--tls-server-name: {exc}") from None
    if not any(getattr(args, name, None) for name in _ALL):
        tls = configured
    else:
        base = configured or TlsSettings()
        cert = getattr(args, "tls_cert", None)
        key = getattr(args, "tls_key", None)
        if cert is None and key is not None and base.cert_file is None:
            raise TlsOptionError(f"--tls-key {key}: give the certificate too with --tls-cert FILE")
        tls = TlsSettings(
            ca_file=getattr(args, "tls_ca", None) or base.ca_file,
            # A new certificate brings its own key (or has it in the same file).
            cert_file=cert or base.cert_file,
            key_file=key if cert is not None else key or base.key_file,
            verify=base.verify and not getattr(args, "tls_no_verify", None),
            server_name=getattr(args, "tls_server_name", None) or base.server_name,
        )
    if tls is None:
        return None
    for name, option, expected in _FILE_OPTIONS:
        path = getattr(args, name, None)
        if path is not None and not Path(path).is_file():
            why = "no such file" if not Path(path).exists() else "not a file"
            raise TlsOptionError(f"{option} {path}: {why}; expected {expected}")
    try:
        check_files(tls)
    except TlsSetupError as exc:
        raise TlsOptionError(str(exc)) from None
    return tls


def warn_if_unverified(tls: TlsSettings | None) -> None:
    """Say loudly, on every run, that the peer is not authenticated."""
    if tls is not None and not tls.verify:
        sys.stderr.write(
            "qrclient: warning: TLS certificate verification is OFF (--tls-no-verify): the "
            "connection is encrypted but anyone on the network path can impersonate the peer\n"
        )

"""Arguments several commands share, added to their parsers.

Only argparse here: ``qrclient --help`` imports this module (dataclasses alone would
cost it some 15 ms).
"""

from __future__ import annotations

import argparse

TIMEOUTS = (
    ("connect", 10.0, "TCP connection"),
    ("association", 30.0, "the peer's answer to our association request"),
    ("dimse", 60.0, "each DIMSE response"),
    ("network", 30.0, "the rest of a PDU, and release"),
)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the configuration file (default: $QRCLIENT_CONFIG, else qrclient's config.toml)",
    )


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only what was asked for (results, JSON) and errors: no summary, progress, "
        "notes or warnings; the exit code tells the outcome",
    )


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """NODE and the association options. Defaults are None: a value not given comes
    from the node or the configuration file."""
    parser.add_argument(
        "node", metavar="NODE", help="a configured node name, or the peer as AET@host:port"
    )
    add_config_argument(parser)
    group = parser.add_argument_group("association")
    group.add_argument(
        "--aet",
        help="our calling AE title (default: the node's calling_ae, else the file's "
        "ae_title, else QRCLIENT)",
    )
    group.add_argument(
        "--max-pdu",
        type=int,
        metavar="BYTES",
        help="largest PDU we accept (default 1048576)",
    )
    for name, default, what in TIMEOUTS:
        group.add_argument(
            f"--{name}-timeout",
            type=float,
            metavar="SECONDS",
            help=f"wait at most this long for {what} (default {default:g})",
        )
    add_tls_arguments(parser)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log negotiation and DIMSE messages to stderr"
    )
    add_quiet_argument(parser)
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="write the association and DIMSE traffic to FILE as JSON Lines (no data sets), "
        "for a bug report",
    )


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    # Any of them turns TLS on; each replaces the node's own TLS setting.
    group = parser.add_argument_group("DICOM over TLS (any --tls-* option implies --tls)")
    group.add_argument(
        "--tls", action="store_true", default=None, help="DICOM over TLS (1.2 or newer)"
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM CA certificates to trust for the peer (default: the system's)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="our PEM certificate: client certificate, and our storage listener's",
    )
    group.add_argument(
        "--tls-key", metavar="FILE", help="its PEM private key (default: in --tls-cert's file)"
    )
    group.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the peer's certificate must carry (default: the host of NODE)",
    )
    group.add_argument(
        "--tls-no-verify",
        action="store_true",
        default=None,
        help="INSECURE: do not check the peer's certificate (anyone on the path can "
        "impersonate it); only to diagnose",
    )


def add_wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to this long for another qrclient using the store (default: fail at once)",
    )

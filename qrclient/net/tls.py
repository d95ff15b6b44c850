"""DICOM over TLS: a node's TLS settings, the SSL contexts built from them, the handshake.

Verification is on unless turned off: the client checks the peer's certificate against
the CA file (or the system's store) and its name against ``server_name`` or the host;
our storage listener asks every peer for a certificate signed by that CA, and only that
CA: any system CA would let anyone with a certificate for any name deliver instances
into the store, so without a CA file the listener refuses every peer. TLS 1.2 is
the oldest version either side accepts. Failures become :class:`TlsFailed` naming the
cause and the option that fixes it.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio import BrokenResourceError, EndOfStream
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from qrclient.net.errors import TlsFailed


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS for an association or our storage listener; verification is on by default.

    ``ca_file``: certificates to trust (None: the system's); ``cert_file``/``key_file``:
    our certificate (a client certificate when we connect, the server's when we listen;
    the key may be in ``cert_file`` too); ``server_name``: the name to check the peer's
    certificate against (default: host).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None


class TlsSetupError(ValueError):
    """A TLS file cannot be used (missing, unreadable, not PEM, key not matching)."""


_NO_VERIFY_HINT = "--tls-no-verify skips the check (insecure: only to diagnose)"


@functools.lru_cache(maxsize=16)
def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """The context for our associations (cached: loading a CA store takes milliseconds)."""
    if tls.ca_file is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # the system's CAs
    else:
        # Only the CA given is trusted, not the system's store as well.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None:
        _load_certificate(context, tls.cert_file, tls.key_file)
    elif tls.key_file is not None:
        raise TlsSetupError(f"TLS key file {tls.key_file!r} without a certificate file")
    return context


@functools.lru_cache(maxsize=16)
def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The context for our storage listener: our certificate, and peers' certificates
    required and signed by the CA file (unless verification is off)."""
    if tls.cert_file is None:
        raise TlsSetupError(
            "our storage listener needs a certificate for TLS: give a certificate and key file"
        )
    if tls.verify and tls.ca_file is None:
        raise TlsSetupError(
            "our storage listener trusts only the CA given for the PACS's certificate, "
            "not the system's: give a CA file"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_certificate(context, tls.cert_file, tls.key_file)
    if tls.ca_file is not None and tls.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_ca(context, tls.ca_file)
    return context


def check_files(tls: TlsSettings) -> None:
    """Raise TlsSetupError now for a file that cannot be used, before any connection."""
    client_context(tls)


def _readable(path: str, what: str) -> None:
    file = Path(path)
    if not file.exists():
        raise TlsSetupError(f"TLS {what} {path!r}: no such file")
    if not file.is_file():
        raise TlsSetupError(f"TLS {what} {path!r}: not a file")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise TlsSetupError(f"TLS {what} {path!r}: cannot read it ({exc.strerror})") from None


def _load_ca(context: ssl.SSLContext, ca_file: str) -> None:
    _readable(ca_file, "CA file")
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsSetupError(
            f"TLS CA file {ca_file!r}: expected PEM certificates ({_reason(exc)})"
        ) from None


def _load_certificate(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    _readable(cert_file, "certificate file")
    if key_file is not None:
        _readable(key_file, "key file")
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            what = "the key does not belong to the certificate"
        elif key_file is None:
            what = "expected a PEM certificate with its private key in the same file"
        else:
            what = "expected a PEM certificate and an unencrypted PEM private key"
        files = repr(cert_file) + (f" / key {key_file!r}" if key_file else "")
        raise TlsSetupError(f"TLS certificate {files}: {what} ({reason})") from None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


# -- the handshake ---------------------------------------------------------------------


async def wrap_client(
    stream: ByteStream, where: str, host: str, tls: TlsSettings, seconds: float
) -> TLSStream:
    """TLS handshake as the client within ``seconds``; TlsFailed says what went wrong."""
    context = client_context(tls)
    name = tls.server_name or host
    try:
        with anyio.fail_after(seconds):
            # standard_compatible=False: DICOM ends with A-RELEASE, and peers commonly
            # close without TLS close_notify; that must not read as an error.
            return await TLSStream.wrap(
                stream, hostname=name, ssl_context=context, standard_compatible=False
            )
    except TimeoutError:
        raise TlsFailed(
            f"TLS handshake with {where} did not finish within {seconds:g} s",
            "the peer may not speak TLS on this port: check its TLS port; "
            "raise --connect-timeout if it is just slow",
        ) from None
    except ssl.SSLError as exc:
        raise handshake_failure(exc, where, name) from None
    except (EndOfStream, BrokenResourceError, OSError):
        raise TlsFailed(
            f"{where} closed the connection during the TLS handshake",
            "it may not speak TLS on this port, or refused our TLS version or certificate; "
            "its log says why",
        ) from None


async def wrap_server(stream: ByteStream, tls: TlsSettings, seconds: float) -> TLSStream:
    """TLS handshake as our listener; raises TlsFailed (the caller refuses the peer)."""
    try:
        context = server_context(tls)
    except TlsSetupError as exc:
        raise TlsFailed(
            str(exc),
            "give the listener's certificate with --tls-cert and --tls-key, and the CA that "
            "signed the PACS's certificate with --tls-ca",
        ) from None
    try:
        with anyio.fail_after(seconds):
            return await TLSStream.wrap(
                stream, server_side=True, ssl_context=context, standard_compatible=False
            )
    except TimeoutError:
        raise TlsFailed(f"no TLS handshake within {seconds:g} s") from None
    except ssl.SSLError as exc:
        raise TlsFailed(f"TLS handshake failed: {_describe_ssl(exc)}") from None
    except (EndOfStream, BrokenResourceError, OSError):
        raise TlsFailed("the peer closed the connection during the TLS handshake") from None


def handshake_failure(exc: ssl.SSLError, where: str, name: str) -> TlsFailed:
    """Name the cause of a failed handshake (or of an alert right after it) and its fix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = f"TLS with {where}: certificate verify failed: {exc.verify_message}"
        code = exc.verify_code
        if code in (62, 64):  # host name / IP address mismatch
            return TlsFailed(
                message + f" (not issued for {name!r})",
                "connect by a name the PACS's certificate is issued for, or give that name "
                "with --tls-server-name; " + _NO_VERIFY_HINT,
            )
        if code in (9, 10):  # not yet valid, expired
            return TlsFailed(
                message, "the PACS needs a valid certificate (or this machine's clock is wrong)"
            )
        return TlsFailed(
            message,
            "give the CA that signed the PACS's certificate (or the certificate itself if it "
            "is self-signed) with --tls-ca FILE; " + _NO_VERIFY_HINT,
        )
    reason = _reason(exc).upper()
    if "CERTIFICATE_REQUIRED" in reason or ("HANDSHAKE_FAILURE" in reason and "ALERT" in reason):
        return TlsFailed(
            f"TLS with {where}: the peer refused the handshake ({_describe_ssl(exc)})",
            "the PACS probably requires a client certificate: give ours with --tls-cert "
            "and --tls-key (and register it on the PACS)",
        )
    if any(alert in reason for alert in ("UNKNOWN_CA", "BAD_CERTIFICATE", "DECRYPT_ERROR")):
        return TlsFailed(
            f"TLS with {where}: the peer does not accept our client certificate "
            f"({_describe_ssl(exc)})",
            "register our certificate (or the CA that signed it) on the PACS as trusted",
        )
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH" in reason:
        return TlsFailed(
            f"TLS with {where}: the peer does not answer in TLS ({_describe_ssl(exc)})",
            "this port speaks plain DICOM: drop --tls, or use the PACS's TLS port",
        )
    if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
        return TlsFailed(
            f"TLS with {where}: no common TLS version ({_describe_ssl(exc)})",
            "qrclient speaks TLS 1.2 and newer only; the PACS must enable TLS 1.2 or 1.3",
        )
    return TlsFailed(
        f"TLS with {where} failed: {_describe_ssl(exc)}",
        "check the TLS settings on both sides (certificates, CA, TLS versions)",
    )


def _describe_ssl(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return _reason(exc).lower().replace("_", " ")

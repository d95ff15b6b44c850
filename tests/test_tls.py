"""DICOM over TLS against a real Orthanc with DicomTlsEnabled and generated certificates.

Orthanc (1.10.1) checks our client certificate against DicomTlsTrustedCertificates (the
test CA) and, for C-MOVE to a modality with UseDicomTls, connects to our listener over
TLS presenting its own certificate, which our listener checks against the same CA.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import pydicom
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from fixtures.dataset import Archive, test_archive
from fixtures.orthanc import OrthancServer, free_ports
from fixtures.tls import Pki, make_pki
from qrclient import api
from qrclient.cli import exit_codes
from qrclient.cli.main import main
from qrclient.jobs.doctor.move_check import Where, check_move
from qrclient.jobs.doctor.report import State
from qrclient.jobs.doctor.sample import Sample
from qrclient.jobs.retrieve import RetrieveJob, RetrieveRequest, RetrieveState
from qrclient.net import (
    AssociationAborted,
    AssociationRejected,
    ContextRequest,
    Peer,
    Settings,
    Timeouts,
    TlsFailed,
    TlsSettings,
    open_association,
)
from qrclient.net.listener import StorageListener
from qrclient.net.tls import TlsSetupError, client_context, server_context
from qrclient.net.uids import VERIFICATION
from qrclient.ops.echo import echo
from qrclient.ops.move import MoveRouter
from qrclient.store import Store
from qrclient.vocabulary import Level, Method, Model
from tests.conftest import OUR_AE, start_orthanc

pytestmark = pytest.mark.anyio
TIMEOUT = 60.0


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def small_archive() -> Archive:
    return test_archive(big_count=0)


@pytest.fixture(scope="module")
def tls_listen_port() -> int:
    return free_ports(1)[0]


def _tls_config(pki: Pki, **more: object) -> dict[str, object]:
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(pki.server.cert),
        "DicomTlsPrivateKey": str(pki.server.key),
        "DicomTlsTrustedCertificates": str(pki.ca.cert),
        **more,
    }


@pytest.fixture(scope="module")
def tls_orthanc(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    small_archive: Archive,
    tls_listen_port: int,
) -> Iterator[OrthancServer]:
    """Orthanc speaking only TLS and requiring a client certificate (its default);
    it knows our AE title as a C-MOVE destination reached over TLS."""
    modality = {"AET": OUR_AE, "Host": "127.0.0.1", "Port": tls_listen_port, "UseDicomTls": True}
    config = _tls_config(pki, DicomModalities={"qrclient": modality}, DicomAssociationCloseDelay=0)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-tls"), small_archive, **config)
    yield server
    server.stop(graceful=False)


@pytest.fixture(scope="module")
def optional_cert_orthanc(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[OrthancServer]:
    """Orthanc over TLS that does not require a client certificate."""
    config = _tls_config(pki, DicomTlsRemoteCertificateRequired=False)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-tls-optional"), None, **config)
    yield server
    server.stop(graceful=False)


@pytest.fixture
def tls_peer(tls_orthanc: OrthancServer) -> Peer:
    return Peer(tls_orthanc.aet, tls_orthanc.host, tls_orthanc.dicom_port)


def trusted(pki: Pki, **changes: object) -> TlsSettings:
    """Our usual settings: the test CA, our client certificate."""
    values: dict[str, object] = {
        "ca_file": str(pki.ca.cert),
        "cert_file": str(pki.client.cert),
        "key_file": str(pki.client.key),
        **changes,
    }
    return TlsSettings(**values)  # type: ignore[arg-type]


async def echo_with(peer: Peer, tls: TlsSettings | None) -> float:
    settings = Settings(tls=tls, timeouts=Timeouts(connect=10.0))
    async with open_association(peer, [ContextRequest(VERIFICATION)], settings) as assoc:
        return await echo(assoc)


def archive_study_uids(archive: Archive) -> set[str]:
    return {
        study.study_instance_uid
        for patient in archive
        for study in patient.studies
        if any(series.instances for series in study.series)
    }


def assert_store_holds(store: Store, expected: set[str]) -> None:
    stored = {i.sop_instance_uid: i for i in store.instances()}
    assert set(stored) == expected
    for uid, item in stored.items():
        assert pydicom.dcmread(store.root / item.path).SOPInstanceUID == uid
    assert store.verify() == []


# -- the client association ----------------------------------------------------------


async def test_echo_over_verified_tls_keeps_tcp_nodelay(tls_peer: Peer, pki: Pki) -> None:
    settings = Settings(tls=trusted(pki))
    async with open_association(tls_peer, [ContextRequest(VERIFICATION)], settings) as assoc:
        assert await echo(assoc) > 0
        stream = assoc._stream
        assert stream.extra(TLSAttribute.tls_version) in ("TLSv1.2", "TLSv1.3")
        assert stream.extra(TLSAttribute.peer_certificate) is not None  # it was checked
        raw = stream.extra(SocketAttribute.raw_socket)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_find_over_tls_returns_every_study(
    tls_peer: Peer, pki: Pki, small_archive: Archive
) -> None:
    settings = Settings(tls=trusted(pki))
    async with api.find(tls_peer, "study", ["StudyInstanceUID"], settings=settings) as matches:
        found = {str(ds.StudyInstanceUID) async for ds in matches}
    assert found == archive_study_uids(small_archive)
    assert matches.outcome.count == len(found)


async def test_server_name_is_checked(tls_peer: Peer, pki: Pki) -> None:
    assert await echo_with(tls_peer, trusted(pki, server_name="localhost")) > 0
    with pytest.raises(TlsFailed) as caught:
        await echo_with(tls_peer, trusted(pki, server_name="pacs.example.org"))
    assert "certificate verify failed" in caught.value.message
    assert "--tls-server-name" in caught.value.hint


async def test_unknown_ca_fails_with_a_hint(tls_peer: Peer, pki: Pki) -> None:
    with pytest.raises(TlsFailed) as caught:
        await echo_with(tls_peer, trusted(pki, ca_file=str(pki.other_ca.cert)))
    assert "certificate verify failed" in caught.value.message
    assert "--tls-ca" in caught.value.hint


async def test_no_verify_accepts_an_unknown_ca(tls_peer: Peer, pki: Pki) -> None:
    # No CA file: the system store does not know the test CA either.
    with pytest.raises(TlsFailed):
        await echo_with(tls_peer, trusted(pki, ca_file=None))
    assert await echo_with(tls_peer, trusted(pki, ca_file=None, verify=False)) > 0


async def test_required_client_certificate_missing_or_untrusted(tls_peer: Peer, pki: Pki) -> None:
    with pytest.raises(TlsFailed) as missing:
        await echo_with(tls_peer, TlsSettings(ca_file=str(pki.ca.cert)))
    assert "client certificate" in missing.value.hint
    assert "--tls-cert" in missing.value.hint
    stranger = trusted(pki, cert_file=str(pki.stranger.cert), key_file=str(pki.stranger.key))
    with pytest.raises(TlsFailed) as untrusted:
        await echo_with(tls_peer, stranger)
    assert "client certificate" in untrusted.value.hint or "client certificate" in str(
        untrusted.value
    )


async def test_client_certificate_optional(optional_cert_orthanc: OrthancServer, pki: Pki) -> None:
    peer = Peer(optional_cert_orthanc.aet, "127.0.0.1", optional_cert_orthanc.dicom_port)
    assert await echo_with(peer, TlsSettings(ca_file=str(pki.ca.cert))) > 0
    assert await echo_with(peer, trusted(pki)) > 0


async def test_tls_to_a_plain_port_and_plain_to_a_tls_port(
    peer: Peer, tls_peer: Peer, pki: Pki
) -> None:
    with pytest.raises(TlsFailed) as to_plain:
        await echo_with(peer, trusted(pki))
    assert "TLS" in to_plain.value.message
    with pytest.raises(AssociationAborted) as to_tls:
        await echo_with(tls_peer, None)
    assert "--tls" in to_tls.value.hint


# -- retrieving over TLS --------------------------------------------------------------


def a_study(archive: Archive) -> tuple[str, set[str]]:
    study = max((s for p in archive for s in p.studies), key=lambda s: len(s.series))
    uids = {i.sop_instance_uid for series in study.series for i in series.instances}
    return study.study_instance_uid, uids


async def test_c_get_over_tls_into_the_store(
    tls_peer: Peer, pki: Pki, small_archive: Archive, tmp_path: Path
) -> None:
    study_uid, expected = a_study(small_archive)
    request = RetrieveRequest.parse(Level.STUDY, Model.STUDY, [f"StudyInstanceUID={study_uid}"])
    with Store.open(tmp_path / "store") as store:
        job = RetrieveJob.into_store(
            tls_peer, request, store, Settings(tls=trusted(pki)), method=Method.GET
        )
        outcome = await job.run()
        assert outcome.state is RetrieveState.COMPLETE, outcome.errors
        assert outcome.received == len(expected)
        assert_store_holds(store, expected)


@pytest.fixture
async def tls_router(
    tmp_path: Path, pki: Pki, tls_listen_port: int
) -> AsyncIterator[tuple[MoveRouter, StorageListener, Store]]:
    """Our storage listener over TLS, on the port Orthanc knows with UseDicomTls."""
    with Store.open(tmp_path / "store") as store:
        router = MoveRouter(OUR_AE, store)
        settings = Settings(calling_ae=OUR_AE, tls=trusted(pki))
        listener = StorageListener(
            OUR_AE, router, host="127.0.0.1", port=tls_listen_port, settings=settings
        )
        async with anyio.create_task_group() as group:
            await group.start(listener.serve)
            yield router, listener, store
            group.cancel_scope.cancel()


async def test_c_move_to_our_tls_listener(
    tls_peer: Peer,
    pki: Pki,
    small_archive: Archive,
    tls_router: tuple[MoveRouter, StorageListener, Store],
) -> None:
    router, listener, store = tls_router
    study_uid, expected = a_study(small_archive)
    request = RetrieveRequest.parse(Level.STUDY, Model.STUDY, [f"StudyInstanceUID={study_uid}"])
    settings = Settings(calling_ae=OUR_AE, tls=trusted(pki))
    job = RetrieveJob.into_store(
        tls_peer, request, store, settings, method=Method.MOVE, router=router
    )
    outcome = await job.run()
    assert outcome.state is RetrieveState.COMPLETE, (outcome.errors, listener.refusals)
    assert outcome.received == len(expected)
    assert listener.refusals == []
    assert_store_holds(store, expected)


async def test_tls_listener_refuses_an_untrusted_certificate(
    pki: Pki, tls_router: tuple[MoveRouter, StorageListener, Store], tls_listen_port: int
) -> None:
    _, listener, store = tls_router
    ourselves = Peer(OUR_AE, "127.0.0.1", tls_listen_port)
    stranger = trusted(pki, cert_file=str(pki.stranger.cert), key_file=str(pki.stranger.key))
    with pytest.raises(TlsFailed):
        await echo_with(ourselves, stranger)
    with pytest.raises(AssociationAborted):
        await echo_with(ourselves, None)  # plain DICOM to a TLS port
    assert len(listener.refusals) == 2
    assert all("TLS" in refusal.reason for refusal in listener.refusals)
    assert list(store.instances()) == []
    # A trusted certificate gets through TLS, to the AE title check (we move from no one).
    with pytest.raises(AssociationRejected, match="calling AE title"):
        await echo_with(ourselves, trusted(pki))
    assert len(listener.refusals) == 3


# -- the command line -----------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def node(server: OrthancServer) -> str:
    return f"{server.aet}@127.0.0.1:{server.dicom_port}"


def client_options(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]


def test_cli_echo_and_find_over_tls(
    tls_orthanc: OrthancServer, pki: Pki, small_archive: Archive
) -> None:
    tls = ["--tls-ca", str(pki.ca.cert), *client_options(pki)]
    done = run_cli("echo", node(tls_orthanc), *tls)
    assert done.returncode == exit_codes.OK, done.stderr
    assert "echo 1:" in done.stdout
    done = run_cli("find", node(tls_orthanc), "-l", "study", "-f", "ndjson", "-q", *tls)
    assert done.returncode == exit_codes.OK, done.stderr
    found = {json.loads(line)["0020000D"]["Value"][0] for line in done.stdout.splitlines()}
    assert found == archive_study_uids(small_archive)


def test_cli_wrong_ca_exits_3_with_a_hint(tls_orthanc: OrthancServer, pki: Pki) -> None:
    done = run_cli(
        "echo", node(tls_orthanc), "--tls-ca", str(pki.other_ca.cert), *client_options(pki)
    )
    assert done.returncode == exit_codes.NETWORK
    lines = done.stderr.splitlines()
    assert lines[0].startswith("qrclient: error: TLS with")
    assert "certificate verify failed" in lines[0]
    assert lines[1].startswith("qrclient: hint:")
    assert "--tls-ca" in lines[1]
    assert "Traceback" not in done.stderr


def test_cli_no_verify_works_and_warns(tls_orthanc: OrthancServer, pki: Pki) -> None:
    done = run_cli("echo", node(tls_orthanc), "--tls-no-verify", *client_options(pki))
    assert done.returncode == exit_codes.OK, done.stderr
    assert "verification is OFF" in done.stderr


def test_cli_bad_tls_files_exit_2(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    target = "ORTHANC@127.0.0.1:1"  # never reached: files are checked first
    cases = [
        (["--tls-ca", str(tmp_path / "missing.pem")], "--tls-ca"),
        (["--tls-ca", str(not_pem)], "expected PEM"),
        (["--tls-cert", str(tmp_path)], "--tls-cert"),
        (
            ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.stranger.key)],
            "does not belong",
        ),
        (["--tls-key", str(pki.client.key)], "--tls-cert"),
    ]
    for options, needle in cases:
        done = run_cli("echo", target, *options)
        assert done.returncode == exit_codes.USAGE, (options, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert needle in done.stderr
        assert done.stderr.startswith("qrclient: error:")
    done = run_cli("move", target, "--tls", "-k", "StudyInstanceUID=1.2.3")
    assert done.returncode == exit_codes.USAGE
    assert "--tls-cert" in done.stderr


def test_contexts_refuse_tls_older_than_1_2_and_verify_by_default(pki: Pki) -> None:
    client = client_context(trusted(pki))
    server = server_context(trusted(pki))
    assert client.minimum_version is ssl.TLSVersion.TLSv1_2
    assert server.minimum_version is ssl.TLSVersion.TLSv1_2
    assert client.verify_mode is ssl.CERT_REQUIRED
    assert client.check_hostname
    assert server.verify_mode is ssl.CERT_REQUIRED  # the PACS must present a certificate
    insecure = client_context(trusted(pki, verify=False))
    assert insecure.verify_mode is ssl.CERT_NONE
    with pytest.raises(TlsSetupError, match="needs a certificate"):
        server_context(TlsSettings(ca_file=str(pki.ca.cert)))


def test_moves_to_us_over_tls_need_our_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before connecting where our listener surely runs: ``move``, and
    ``retrieve`` on a node set to move."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[nodes.pacs]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 9\n'
        'method = "move"\ntls = true\n'
    )
    for command in ("move", "retrieve"):
        argv = ["--config", str(config), command, "pacs", "-k", "StudyInstanceUID=1.2.3"]
        assert main([*argv, "--out", str(tmp_path / "store")]) == 2, command
        assert "--tls-cert" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


@pytest.mark.anyio
async def test_doctor_fails_only_its_move_check_without_our_certificate() -> None:
    settings = Settings("QRCLIENT", tls=TlsSettings())
    where = Where("QRCLIENT", "0.0.0.0", 0, "127.0.0.1", 1.0)
    check = await check_move(Peer("PACS", "127.0.0.1", 9), settings, Sample("1", "2", "3"), where)
    assert check.state is State.FAILED
    assert "--tls-cert" in check.fix


# -- what our listener trusts -----------------------------------------------------------


def test_the_listener_trusts_only_the_ca_given(pki: Pki) -> None:
    ours = TlsSettings(cert_file=str(pki.server.cert), key_file=str(pki.server.key))
    with pytest.raises(TlsSetupError, match="trusts only the CA given"):
        server_context(ours)
    context = server_context(replace(ours, ca_file=str(pki.ca.cert)))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "qrclient test CA"),),)
    ]
    anyone = server_context(replace(ours, verify=False))
    assert anyone.verify_mode is ssl.CERT_NONE  # --tls-no-verify: said loudly on every run


async def test_a_listener_without_a_ca_refuses_peers_a_system_ca_vouches_for(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test CA stands in for a system CA: before, our listener let such a peer in."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca.cert))
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.ca.cert.parent / "none"))
    listener = StorageListener(
        OUR_AE,
        MoveRouter(OUR_AE, None),  # type: ignore[arg-type]  # nothing gets that far
        host="127.0.0.1",
        port=0,
        settings=Settings(
            OUR_AE, tls=TlsSettings(cert_file=str(pki.server.cert), key_file=str(pki.server.key))
        ),
    )
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as group:
            port = await group.start(listener.serve)
            peer = Peer(OUR_AE, "127.0.0.1", port)
            with pytest.raises((TlsFailed, AssociationAborted)):
                await echo_with(peer, trusted(pki, server_name="localhost"))
            group.cancel_scope.cancel()
    [refusal] = listener.refusals
    assert "trusts only the CA given" in refusal.reason


def test_moves_to_us_over_tls_need_the_pacs_ca(pki: Pki, tmp_path: Path) -> None:
    """Where our listener surely runs (``move``, ``retrieve`` on a node set to move),
    TLS without a CA for the PACS's certificate is refused before connecting."""
    ours = ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    config = tmp_path / "config.toml"
    config.write_text(
        '[nodes.pacs]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 9\nmethod = "move"\n'
        f'tls = {{ cert = "{pki.client.cert}", key = "{pki.client.key}" }}\n'
    )
    out = str(tmp_path / "store")
    for argv in (
        ["move", "PACS@127.0.0.1:9", *ours],
        ["--config", str(config), "retrieve", "pacs"],
        ["--config", str(config), "move", "pacs"],
    ):
        done = run_cli(*argv, "-k", "StudyInstanceUID=1.2.3", "--out", out)
        assert done.returncode == exit_codes.USAGE, (argv, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "--tls-ca FILE (or the node's tls.ca)" in done.stderr
    assert not (tmp_path / "store").exists()
    (listen,) = free_ports(1)
    trusting = [*ours, "--tls-ca", str(pki.ca.cert), "--listen", f"127.0.0.1:{listen}", "--out"]
    trusting.append(str(tmp_path / "other-store"))
    with_ca = run_cli("move", "PACS@127.0.0.1:9", *trusting, "-k", "StudyInstanceUID=1.2.3")
    assert "--tls-ca" not in with_ca.stderr  # past the check: then nothing listens on port 9
    assert with_ca.returncode == exit_codes.NETWORK, with_ca.stderr

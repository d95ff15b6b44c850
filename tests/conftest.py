"""Session fixtures: one real Orthanc loaded with the synthetic archive, shared by tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from fixtures.dataset import Archive, test_archive
from fixtures.dcmqrscp import DcmqrscpServer, dcmqrscp_available
from fixtures.lanes import peers_off
from fixtures.orthanc import OrthancServer, free_ports, orthanc_available
from qrclient.net import Peer

# Property tests check correctness, not speed: on a busy 2-core CI machine, Hypothesis's
# timing checks (per-example deadline, slow data generation) fail runs at random.
settings.register_profile("qrclient", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qrclient")


# Fixtures that start a real peer (or need one running): a test using any of them, even
# through another fixture, is marked ``peers``; ``pytest -m "not peers"`` is the pure lane.
PEER_FIXTURES = frozenset(
    {
        "orthanc",
        "dcmqrscp",
        "real_pacs",
        "wlmscpfs",
        "module_pacs",  # test_faults
        "tls_orthanc",  # test_tls
        "optional_cert_orthanc",  # test_tls
        "target",  # test_send
        "strict",  # test_send
    }
)


def pytest_configure(config: pytest.Config) -> None:
    if peers_off():
        return  # the pure lane: any test that still asks for a real peer fails loudly
    # A missing Orthanc must fail loudly: CI installs it, and skipped tests hide gaps.
    if not orthanc_available():
        raise pytest.UsageError("Orthanc is not installed: apt-get install orthanc dcmtk")
    if not dcmqrscp_available():
        raise pytest.UsageError("DCMTK's dcmqrscp is not installed: apt-get install dcmtk")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PEER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session")
def archive() -> Archive:
    return test_archive(big_count=300)


def start_orthanc(workdir: Path, archive: Archive | None, **config: object) -> OrthancServer:
    server = OrthancServer(workdir, config=config)
    server.start()
    try:
        if archive is not None:
            server.upload_archive(archive)
    except BaseException:
        server.stop(graceful=False)
        raise
    return server


OUR_AE = "QRCLIENT"
THIRD_PARTY_AE = "THIRDPARTY"


@pytest.fixture(scope="session")
def listen_ports() -> tuple[int, int]:
    """Ports for our storage listener and a third-party destination, known to Orthanc."""
    ours, third_party = free_ports(2)
    return ours, third_party


@pytest.fixture(scope="session")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, archive: Archive, listen_ports: tuple[int, int]
) -> Iterator[OrthancServer]:
    """The main test PACS: checks the called AE title (so rejections can be tested) and
    knows our AE title and a third-party AE as C-MOVE destinations."""
    ours, third_party = listen_ports
    server = start_orthanc(
        tmp_path_factory.mktemp("orthanc"),
        archive,
        DicomCheckCalledAet=True,
        DicomModalities={
            "qrclient": [OUR_AE, "127.0.0.1", ours],
            "thirdparty": [THIRD_PARTY_AE, "127.0.0.1", third_party],
        },
        DicomAssociationCloseDelay=0,
        # Orthanc serves 4 DICOM operations at once by default and queues the rest;
        # test_load runs 24 jobs (up to 28 associations) that must really overlap.
        DicomThreadsCount=32,
    )
    yield server
    server.stop(graceful=False)


@pytest.fixture
def peer(orthanc: OrthancServer) -> Peer:
    return Peer(orthanc.aet, orthanc.host, orthanc.dicom_port)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Core tests run under both backends the network core promises to support."""
    return str(request.param)


@pytest.fixture(scope="session")
def dcmqrscp(
    tmp_path_factory: pytest.TempPathFactory, archive: Archive, listen_ports: tuple[int, int]
) -> Iterator[DcmqrscpServer]:
    """The second real PACS: DCMTK's dcmqrscp with the same archive and the same C-MOVE
    destinations as the session Orthanc. No computed keys, no list matching in C-FIND, no
    SOPClassUID at IMAGE level, keys above the level asked ignored, 16 KB PDUs."""
    ours, third_party = listen_ports
    server = DcmqrscpServer(
        tmp_path_factory.mktemp("dcmqrscp"),
        destinations={OUR_AE: ("127.0.0.1", ours), THIRD_PARTY_AE: ("127.0.0.1", third_party)},
    )
    server.load(archive)
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class RealPacs:
    """One of the real PACSs the tests run against, with what it is known to do."""

    kind: str  # "orthanc" or "dcmqrscp"
    peer: Peer
    computed_keys: bool  # answers SOPClassesInStudy, NumberOf...Related...
    list_matching_in_find: bool  # C-FIND accepts \-separated UID lists

    @property
    def node(self) -> str:
        return str(self.peer)


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def real_pacs(request: pytest.FixtureRequest) -> RealPacs:
    """Each real PACS in turn: flows that must work on any conformant PACS use this."""
    if request.param == "orthanc":
        server: OrthancServer = request.getfixturevalue("orthanc")
        return RealPacs("orthanc", Peer(server.aet, server.host, server.dicom_port), True, True)
    qr: DcmqrscpServer = request.getfixturevalue("dcmqrscp")
    return RealPacs("dcmqrscp", Peer(qr.aet, qr.host, qr.dicom_port), False, False)

"""The built-in demo PACS answering qrclient's own echo, find, get, move and retrieve."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

import qrclient
from fixtures.orthanc import free_ports
from qrclient.demo.sample import sample_archive, sample_instances
from qrclient.demo.server import DemoPacs, Destination
from qrclient.demo.synthetic import (
    US_IMAGE_STORAGE,
    Archive,
    PatientSpec,
    StudySpec,
    all_series,
    all_studies,
    encode_part10,
    find_patient,
)
from qrclient.jobs.retrieve import RetrieveJob, RetrieveRequest, run_with_listener
from qrclient.net import ContextRequest, Peer, Settings, open_association
from qrclient.net.uids import VERIFICATION
from qrclient.ops.find import FindState
from qrclient.ops.get import c_get
from qrclient.ops.matching import matches
from qrclient.store import Store
from qrclient.vocabulary import STUDY_ROOT_GET, Level, Method, Model

OUR_AE = "QRCLIENT"
ARCHIVE: Archive = sample_archive()


@pytest.fixture(scope="module")
def move_port() -> int:
    """The port of our storage listener, which the demo knows as QRCLIENT's address."""
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def demo(move_port: int) -> Iterator[DemoPacs]:
    (nobody_listens,) = free_ports(1)
    destinations = [
        Destination(OUR_AE, "127.0.0.1", move_port),
        Destination("GHOST", "127.0.0.1", nobody_listens),
    ]
    with DemoPacs("DEMO", "127.0.0.1", 0, destinations) as pacs:
        yield pacs


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qrclient", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def study_instances(study: StudySpec) -> set[str]:
    return {i.sop_instance_uid for s in study.series for i in s.instances}


def patient_instances(patient: PatientSpec) -> set[str]:
    return {uid for study in patient.studies for uid in study_instances(study)}


def stored(root: Path) -> dict[str, Dataset]:
    files = [p for p in root.rglob("*.dcm") if ".qrclient" not in p.parts]
    datasets = [pydicom.dcmread(p) for p in files]
    return {str(ds.SOPInstanceUID): ds for ds in datasets}


def assert_same_as_sample(received: dict[str, Dataset], expected: set[str]) -> None:
    """Exactly the expected instances, each with the sample's pixels and names."""
    assert set(received) == expected
    sample = {i.spec.sop_instance_uid: i.dataset for i in sample_instances(ARCHIVE)}
    for uid, ds in received.items():
        assert ds.PixelData == sample[uid].PixelData
        assert str(ds.PatientName) == str(sample[uid].PatientName)
        assert ds.file_meta.MediaStorageSOPInstanceUID == uid


async def find_all(
    node: str, level: str, keys: list[str], *, model: str = "study", default_keys: bool = True
) -> list[Dataset]:
    async with qrclient.find(node, level, keys, model=model, default_keys=default_keys) as results:
        found = [ds async for ds in results]
    assert results.outcome.state is FindState.SUCCESS
    return found


# --- the sample archive ---------------------------------------------------------------


def test_sample_is_deterministic_small_and_varied() -> None:
    again = sample_archive()
    assert again == ARCHIVE
    first = [encode_part10(i.dataset) for i in sample_instances(ARCHIVE)]
    assert first == [encode_part10(i.dataset) for i in sample_instances(again)]
    assert 3 <= len(ARCHIVE) <= 8
    assert {series.modality for _, _, series in all_series(ARCHIVE)} >= {"CT", "MR", "US", "CR"}
    assert len({study.study_date for _, study in all_studies(ARCHIVE)}) >= 5
    assert any(not p.patient_name.isascii() for p in ARCHIVE)
    for item in sample_instances(ARCHIVE):
        assert (item.dataset.Rows, item.dataset.Columns) == (64, 64)
        # Visible content: many distinct sample values, not a blank or flat image.
        assert len(set(item.dataset.PixelData[0::2])) > 3


def test_sample_does_not_share_uids_with_the_test_archive() -> None:
    from fixtures.dataset import test_archive

    ours = {i.spec.sop_instance_uid for i in sample_instances(ARCHIVE)}
    tests = {i.sop_instance_uid for _, _, s in all_series(test_archive(1)) for i in s.instances}
    assert not ours & tests


@pytest.mark.parametrize(
    ("query", "vr", "value", "expected"),
    [
        ("", "PN", "DOE^JANE", True),
        ("DOE*", "PN", "DOE^JANE", True),
        ("doe^j?ne", "PN", "DOE^JANE", True),
        ("DOE", "PN", "DOE^JANE", False),
        ("20230101-20231231", "DA", "20230114", True),
        ("-20221231", "DA", "20230114", False),
        ("20230114-", "DA", "20230114", True),
        ("0800-1000", "TM", "091500", True),
        ("1.2.3\\1.2.4", "UI", "1.2.4", True),
        ("1.2.*", "UI", "1.2.4", False),  # no wildcards on UIDs
        ("MR\\US", "CS", ["CT", "MR"], True),
        ("12", "IS", 12, True),
    ],
)
def test_matching_rules(query: str, vr: str, value: str | int, expected: bool) -> None:
    assert matches(query, vr, value) is expected


# --- over the network, with qrclient's own operations -----------------------------------


@pytest.mark.anyio
async def test_echo(demo: DemoPacs) -> None:
    times = await qrclient.echo(demo.node, count=2)
    assert len(times) == 2


@pytest.mark.anyio
async def test_its_sockets_have_tcp_nodelay() -> None:
    # A PACS of its own: no association of another test is closing meanwhile.
    with DemoPacs("DEMO", "127.0.0.1", 0) as pacs:
        peer = Peer("DEMO", "127.0.0.1", pacs.port)
        async with open_association(peer, [ContextRequest(VERIFICATION)]):
            sockets = pacs.sockets()
            assert len(sockets) == 2  # listening, and accepted for this association
            for sock in sockets:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.anyio
async def test_find_patients_with_patient_root(demo: DemoPacs) -> None:
    found = await find_all(
        demo.node, "patient", ["NumberOfPatientRelatedInstances"], model="patient"
    )
    by_id = {str(ds.PatientID): ds for ds in found}
    assert set(by_id) == {p.patient_id for p in ARCHIVE}
    for patient in ARCHIVE:
        ds = by_id[patient.patient_id]
        assert str(ds.PatientName) == patient.patient_name  # non-ASCII names included
        assert int(ds.NumberOfPatientRelatedStudies) == len(patient.studies)
        assert int(ds.NumberOfPatientRelatedInstances) == len(patient_instances(patient))


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["study", "patient"])
async def test_find_studies_with_computed_keys(demo: DemoPacs, model: str) -> None:
    patient = find_patient(ARCHIVE, "DEMO001")
    found = await find_all(
        demo.node,
        "study",
        [f"PatientID={patient.patient_id}", "SOPClassesInStudy"],
        model=model,
    )
    by_uid = {str(ds.StudyInstanceUID): ds for ds in found}
    assert set(by_uid) == {s.study_instance_uid for s in patient.studies}
    for study in patient.studies:
        ds = by_uid[study.study_instance_uid]
        assert int(ds.NumberOfStudyRelatedInstances) == len(study_instances(study))
        assert int(ds.NumberOfStudyRelatedSeries) == len(study.series)
        modalities = ds.ModalitiesInStudy
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        assert modalities == sorted({s.modality for s in study.series})
        classes = ds.SOPClassesInStudy
        classes = [classes] if isinstance(classes, str) else list(classes)
        assert classes == sorted({i.sop_class_uid for s in study.series for i in s.instances})
        assert ds.StudyDate == study.study_date


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["study", "patient"])
async def test_find_series_and_images(demo: DemoPacs, model: str) -> None:
    patient = find_patient(ARCHIVE, "DEMO001")
    study = patient.studies[0]
    parent = [f"PatientID={patient.patient_id}"] if model == "patient" else []
    series_found = await find_all(
        demo.node, "series", [*parent, f"StudyInstanceUID={study.study_instance_uid}"], model=model
    )
    counts = {
        str(ds.SeriesInstanceUID): int(ds.NumberOfSeriesRelatedInstances) for ds in series_found
    }
    assert counts == {s.series_instance_uid: len(s.instances) for s in study.series}
    series = study.series[0]
    images = await find_all(
        demo.node,
        "image",
        [
            *parent,
            f"StudyInstanceUID={study.study_instance_uid}",
            f"SeriesInstanceUID={series.series_instance_uid}",
        ],
        model=model,
    )
    numbers = {str(ds.SOPInstanceUID): int(ds.InstanceNumber) for ds in images}
    assert numbers == {i.sop_instance_uid: i.instance_number for i in series.instances}


def studies_where(test: Callable[[PatientSpec, StudySpec], bool]) -> set[str]:
    return {s.study_instance_uid for p, s in all_studies(ARCHIVE) if test(p, s)}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("PatientName=DOE^*", studies_where(lambda p, s: p.patient_name.startswith("DOE^"))),
        ("PatientName=doe^j?ne", studies_where(lambda p, s: p.patient_name == "DOE^JANE")),
        ("PatientName=山田*", studies_where(lambda p, s: p.patient_name.startswith("山田"))),
        ("PatientName=MÜLLER*", studies_where(lambda p, s: p.patient_name.startswith("MÜ"))),
        (
            "StudyDate=20230101-20241231",
            studies_where(lambda p, s: "20230101" <= s.study_date <= "20241231"),
        ),
        ("StudyDate=-20221231", studies_where(lambda p, s: s.study_date <= "20221231")),
        (
            "ModalitiesInStudy=US",
            studies_where(lambda p, s: any(se.modality == "US" for se in s.series)),
        ),
        (
            "PatientID=DEMO001\\DEMO003",
            studies_where(lambda p, s: p.patient_id in ("DEMO001", "DEMO003")),
        ),
        ("StudyDescription=*CHEST", studies_where(lambda p, s: s.description.endswith("CHEST"))),
    ],
)
async def test_find_matching(demo: DemoPacs, key: str, expected: set[str]) -> None:
    assert expected  # each case selects something, and less than everything
    assert expected != studies_where(lambda p, s: True)
    found = await find_all(demo.node, "study", [key])
    assert {str(ds.StudyInstanceUID) for ds in found} == expected


@pytest.mark.anyio
async def test_find_by_uid_list(demo: DemoPacs) -> None:
    studies = [s for _, s in all_studies(ARCHIVE)]
    wanted = [studies[1].study_instance_uid, studies[4].study_instance_uid]
    found = await find_all(demo.node, "study", ["StudyInstanceUID=" + "\\".join(wanted)])
    assert sorted(str(ds.StudyInstanceUID) for ds in found) == sorted(wanted)


@pytest.mark.anyio
async def test_find_returns_only_the_keys_asked(demo: DemoPacs) -> None:
    found = await find_all(
        demo.node, "study", ["PatientID=DEMO003", "StudyDescription"], default_keys=False
    )
    assert len(found) == 1
    keywords = {elem.keyword for elem in found[0]}
    assert "StudyDescription" in keywords
    assert "PatientName" not in keywords
    assert found[0].StudyDescription == "US THYROID"


def test_cli_get_stores_the_study(demo: DemoPacs, tmp_path: Path) -> None:
    study = find_patient(ARCHIVE, "DEMO004").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    result = run_cli("get", demo.node, "-k", key, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_same_as_sample(stored(tmp_path), study_instances(study))


def test_cli_retrieve_uses_get_and_resumes(demo: DemoPacs, tmp_path: Path) -> None:
    patient = find_patient(ARCHIVE, "DEMO002")
    args = ("-l", "patient", "-m", "patient", "-k", "PatientID=DEMO002", "--out", str(tmp_path))
    first = run_cli("retrieve", demo.node, *args, "--format", "json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["received"] == len(patient_instances(patient))
    assert_same_as_sample(stored(tmp_path), patient_instances(patient))
    again = run_cli("retrieve", demo.node, *args, "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["received"] == 0


def test_cli_move_to_our_listener(demo: DemoPacs, move_port: int, tmp_path: Path) -> None:
    study = find_patient(ARCHIVE, "DEMO005").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    listen = f"127.0.0.1:{move_port}"
    result = run_cli("move", demo.node, "-k", key, "--listen", listen, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_same_as_sample(stored(tmp_path), study_instances(study))


def test_cli_move_to_an_unknown_destination(demo: DemoPacs, tmp_path: Path) -> None:
    study = find_patient(ARCHIVE, "DEMO003").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    result = run_cli("move", demo.node, "-k", key, "--dest", "NOBODY", "--out", str(tmp_path))
    assert result.returncode == 4
    assert "0xA801" in result.stderr
    assert "Traceback" not in result.stderr
    assert stored(tmp_path) == {}


def test_cli_move_to_a_destination_it_cannot_reach(demo: DemoPacs, tmp_path: Path) -> None:
    study = find_patient(ARCHIVE, "DEMO003").studies[0]
    key = f"StudyInstanceUID={study.study_instance_uid}"
    result = run_cli("move", demo.node, "-k", key, "--dest", "GHOST", "--out", str(tmp_path), "-v")
    assert result.returncode == 4
    # As DCMTK's dcmqrscp answers: it knows GHOST, every sub-operation failed (not 0xA801,
    # which would say it does not know GHOST).
    assert "0xA702" in result.stderr
    count = sum(len(s.instances) for s in study.series)
    assert f"completed=0 failed={count}" in result.stderr
    assert "0xA801" not in result.stderr
    assert "cannot connect to the host and port it has for the destination" in result.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("level", [Level.SERIES, Level.IMAGE])
async def test_move_job_into_store(
    demo: DemoPacs, move_port: int, tmp_path: Path, level: Level
) -> None:
    study = find_patient(ARCHIVE, "DEMO001").studies[1]
    series = study.series[1]
    keys = [
        f"StudyInstanceUID={study.study_instance_uid}",
        f"SeriesInstanceUID={series.series_instance_uid}",
    ]
    wanted = series.instances[:2] if level is Level.IMAGE else series.instances
    if level is Level.IMAGE:
        keys.append("SOPInstanceUID=" + "\\".join(i.sop_instance_uid for i in wanted))
    request = RetrieveRequest.parse(level, Model.STUDY, keys)
    with Store.open(tmp_path / "store") as store:
        job = RetrieveJob.into_store(
            Peer("DEMO", "127.0.0.1", demo.port),
            request,
            store,
            Settings(OUR_AE),
            method=Method.MOVE,
        )
        outcome = await run_with_listener(job, "127.0.0.1", move_port)
        assert outcome.errors == []
        assert outcome.received == len(wanted)
        assert {i.sop_instance_uid for i in store.instances()} == {
            i.sop_instance_uid for i in wanted
        }
    assert_same_as_sample(stored(tmp_path / "store"), {i.sop_instance_uid for i in wanted})


@pytest.mark.anyio
async def test_get_job_with_patient_root(demo: DemoPacs, tmp_path: Path) -> None:
    patient = find_patient(ARCHIVE, "DEMO003")
    request = RetrieveRequest.parse(Level.PATIENT, Model.PATIENT, ["PatientID=DEMO003"])
    with Store.open(tmp_path / "store") as store:
        job = RetrieveJob.into_store(
            Peer("DEMO", "127.0.0.1", demo.port),
            request,
            store,
            Settings(OUR_AE),
            method=Method.GET,
        )
        outcome = await job.run()
        assert outcome.errors == []
        assert outcome.received == len(patient_instances(patient))
    assert_same_as_sample(stored(tmp_path / "store"), patient_instances(patient))


@pytest.mark.anyio
@pytest.mark.parametrize("scp_role", [True, False])
async def test_get_honours_the_scp_role(demo: DemoPacs, tmp_path: Path, scp_role: bool) -> None:
    """C-GET stores on our association only for classes we asked to be SCP of (PS3.4 C.4.3)."""
    study = find_patient(ARCHIVE, "DEMO003").studies[0]
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study.study_instance_uid
    storage = ContextRequest(US_IMAGE_STORAGE, scp_role=scp_role)
    contexts = [ContextRequest(STUDY_ROOT_GET), storage]
    with Store.open(tmp_path / "store") as store:
        async with open_association(Peer("DEMO", "127.0.0.1", demo.port), contexts) as assoc:
            result = await c_get(assoc, identifier, STUDY_ROOT_GET, store)
        count = len(study_instances(study))
        assert (result.completed, result.failed) == ((count, 0) if scp_role else (0, count))
        assert len(store.instances()) == (count if scp_role else 0)


# --- qrclient demo --serve, as a user runs it --------------------------------------------


def test_serve_answers_echo_and_stops_on_ctrl_c() -> None:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "qrclient", "demo", "--serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        node = f"DEMO@127.0.0.1:{port}"
        assert node in line
        assert f"qrclient find {node}" in line
        echo = run_cli("echo", node)
        assert echo.returncode == 0, echo.stderr
        assert "echo 1:" in echo.stdout
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode in (0, 130)
    assert "Traceback" not in err
    assert "QRCLIENT: C-ECHO" in err  # the request log


def test_serve_refuses_a_taken_port_and_bad_destinations() -> None:
    with DemoPacs("DEMO", "127.0.0.1", 0) as pacs:
        taken = run_cli("demo", "--serve", "--port", str(pacs.port))
    assert taken.returncode == 3
    assert "cannot listen" in taken.stderr
    assert "Traceback" not in taken.stderr
    bad = run_cli("demo", "--serve", "--destination", "NOPORT@127.0.0.1")
    assert bad.returncode == 2
    assert bad.stderr.startswith("qrclient: error: --destination: ")
    assert len(bad.stderr.splitlines()) == 1


def test_demo_without_a_terminal_points_to_serve() -> None:
    result = run_cli("demo")
    assert result.returncode == 2
    assert "--serve" in result.stderr


def read_until(fd: int, wanted: str, seen: bytearray, within: float = 30) -> bool:
    """Read the terminal into ``seen`` until ``wanted`` shows (escape codes removed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.extend(os.read(fd, 65536))
            except OSError:  # the terminal closed: the process ended
                return False
        if wanted in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode("utf-8", "replace")):
            return True
    return False


@contextmanager
def demo_in_a_terminal(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`qrclient demo` in a real 120x40 terminal: the process and the terminal's end."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    environment = {
        **os.environ,
        "TERM": "xterm-256color",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "qrclient", "demo"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        close_fds=True,
    )
    os.close(terminal)
    try:
        yield process, controller
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


def test_demo_opens_the_ui_on_the_demo_pacs(tmp_path: Path) -> None:
    """`qrclient demo` in a real terminal: the UI on DEMO@..., a query shows the sample."""
    seen = bytearray()
    with demo_in_a_terminal(tmp_path) as (process, controller):
        assert read_until(controller, "DEMO@127.0.0.1:", seen), seen.decode(errors="replace")
        os.write(controller, b"\r")  # run the query the UI opens with
        assert read_until(controller, "DOE^JANE", seen), seen.decode(errors="replace")
        os.write(controller, b"\x11")  # Ctrl+Q
        assert process.wait(timeout=30) == 0
        # Whatever it wrote while ending, up to the terminal's close.
        assert not read_until(controller, "Traceback", seen, within=5)
    # A terminal that does not say its cell size is no error to show (textual-image's).
    assert b"Failed to get cell size" not in seen

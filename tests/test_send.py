"""``qrclient send``: C-STORE of files, folders and store selections to real peers.

What arrived is checked on the peer: by C-FIND and by Orthanc's REST API (the stored
file itself, for fidelity); refused syntaxes and SOP classes against DCMTK's dcmqrscp,
which accepts only uncompressed syntaxes, and in read-only mode refuses storage.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from fixtures.dataset import Archive, bulk_archive, find_patient, iter_part10
from fixtures.dcmqrscp import DcmqrscpServer
from fixtures.orthanc import OrthancServer
from qrclient.cli import exit_codes
from qrclient.jobs.send import (
    FileState,
    SendJob,
    contexts_for,
    groups,
    read_instance,
    scan,
)
from qrclient.net import ContextRequest, Peer, open_association
from qrclient.net.dimse import Command, CommandField
from qrclient.net.errors import AssociationAborted
from qrclient.net.uids import MAX_CONTEXTS
from qrclient.ops.store_scu import Instance, NotSent, _data_set_of
from tests.conftest import start_orthanc
from tests.fakepeer import PeerConnection, fake_peer, response
from tests.test_cli import RELEASE_RP, run_cli
from tests.test_cli_retrieve import assert_imports_neither_pydicom_nor_tomllib

C_STORE_RSP = 0x8001
SEND = (sys.executable, "-m", "qrclient", "send")
# dcmqrscp names a stored file after the time: two associations storing at once may
# collide, and it answers 0xC000. One association for it.
ONE = ("--parallel", "1")


# -- peers and files --------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An empty Orthanc to send to (the session one must keep its archive as it is)."""
    server = start_orthanc(tmp_path_factory.mktemp("send-orthanc"), None)
    yield server
    server.stop(graceful=False)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DcmqrscpServer]:
    """dcmqrscp: stores only in uncompressed syntaxes, and only storage SOP classes."""
    with DcmqrscpServer(tmp_path_factory.mktemp("send-dcmqrscp")) as server:
        yield server


def node(server: OrthancServer | DcmqrscpServer) -> str:
    return f"{server.aet}@{server.host}:{server.dicom_port}"


def write_files(folder: Path, archive: Archive) -> dict[str, Path]:
    """Each instance of ``archive`` as a Part-10 file in ``folder``; SOP UID -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for instance, data in iter_part10(archive):
        path = folder / f"{instance.sop_instance_uid}.dcm"
        path.write_bytes(data)
        files[instance.sop_instance_uid] = path
    return files


def orthanc_instances(server: OrthancServer) -> set[str]:
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in server.rest_get("/instances?expand")}


def found_by_c_find(
    server: OrthancServer | DcmqrscpServer, study: str, series: str | None = None
) -> set[str]:
    keys = ["-k", f"StudyInstanceUID={study}", "-k", "SOPInstanceUID"]
    if series is not None:
        keys += ["-k", f"SeriesInstanceUID={series}"]
    result = run_cli("find", node(server), "-l", "image", *keys, "-f", "ndjson", "-q")
    assert result.returncode == exit_codes.OK, result.stderr
    return {json.loads(line)["00080018"]["Value"][0] for line in result.stdout.splitlines()}


def report_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return {row["path"]: row for row in csv.DictReader(stream)}


def with_syntax(path: Path, syntax: UID, destination: Path) -> Path:
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(destination, enforce_file_format=True)
    return destination


def jpeg_file(destination: Path, sop_instance_uid: str) -> Path:
    """A Secondary Capture in JPEG Baseline (a fragment pydicom cannot decode here)."""
    dataset = Dataset()
    dataset.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    dataset.SOPInstanceUID = UID(sop_instance_uid)
    dataset.StudyInstanceUID = UID(sop_instance_uid + ".1")
    dataset.SeriesInstanceUID = UID(sop_instance_uid + ".2")
    dataset.PatientID = "JPEG1"
    dataset.Modality = "OT"
    dataset.Rows, dataset.Columns = 2, 2
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.SamplesPerPixel, dataset.PixelRepresentation = 1, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(destination, enforce_file_format=True)
    return destination


# -- to Orthanc ---------------------------------------------------------------------------


def test_send_a_folder(target: OrthancServer, archive: Archive, tmp_path: Path) -> None:
    patient = find_patient(archive, "PAT002")
    files = write_files(tmp_path / "in" / "nested", (patient,))
    (tmp_path / "in" / "README.txt").write_text("not DICOM")
    (tmp_path / "in" / ".qrclient").mkdir()  # a store's own folder: never walked
    (tmp_path / "in" / ".qrclient" / "index.sqlite").write_bytes(b"SQLite format 3\0")
    report = tmp_path / "report.csv"
    result = run_cli("send", node(target), str(tmp_path / "in"), "--report", str(report))
    assert result.returncode == exit_codes.OK, result.stderr
    assert result.stdout.startswith(f"{len(files)} sent (0 with warnings), 0 failed, 1 skipped, ")
    assert f" to {node(target)}\n" in result.stdout
    assert set(files) <= orthanc_instances(target)
    for study in patient.studies:
        expected = {i.sop_instance_uid for s in study.series for i in s.instances}
        assert found_by_c_find(target, study.study_instance_uid) == expected
    rows = report_rows(report)
    assert len(rows) == len(files) + 1
    for uid, path in files.items():
        row = rows[str(path)]
        assert (row["state"], row["sop_instance_uid"], row["status"]) == ("sent", uid, "0x0000")
        assert row["sent_as"] == row["transfer_syntax"] == "1.2.840.10008.1.2.1"
    readme = rows[str(tmp_path / "in" / "README.txt")]
    assert (readme["state"], readme["detail"]) == ("skipped", "not a DICOM Part-10 file")


def test_what_arrives_is_what_was_sent(target: OrthancServer, tmp_path: Path) -> None:
    """A 2 MB image (streamed in pieces, over Orthanc's 16 KB PDUs) and an implicit VR
    one: the files Orthanc stored hold the same data sets."""
    (big,) = write_files(tmp_path / "big", bulk_archive(1, 1024, 1024, "SENDBIG")).values()
    (small,) = write_files(tmp_path / "small", bulk_archive(1, 32, 32, "SENDIMPL")).values()
    implicit = with_syntax(small, ImplicitVRLittleEndian, tmp_path / "implicit.dcm")
    result = run_cli("send", node(target), str(big), str(implicit), "--format", "json")
    assert result.returncode == exit_codes.OK, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["failed"]) == (2, 0)
    assert summary["bytes"] == sum(read_instance(str(p)).size for p in (big, implicit))
    ids = {
        i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in target.rest_get("/instances?expand")
    }
    for path in (big, implicit):
        sent = pydicom.dcmread(path)
        stored = pydicom.dcmread(io.BytesIO(_rest_file(target, ids[sent.SOPInstanceUID])))
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert stored.PixelData == sent.PixelData
        assert stored.PatientName == sent.PatientName


def _rest_file(server: OrthancServer, instance_id: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"{server.base_url}/instances/{instance_id}/file") as answer:
        return bytes(answer.read())


def test_send_studies_and_series_of_the_store(
    target: OrthancServer, orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    study, other = find_patient(archive, "PAT007").studies[:2]
    store = tmp_path / "store"
    for uid in (study.study_instance_uid, other.study_instance_uid):
        fetched = run_cli("get", node(orthanc), "-k", f"StudyInstanceUID={uid}", "-o", str(store))
        assert fetched.returncode == exit_codes.OK, fetched.stderr
    series = other.series[0]
    result = run_cli(
        "send",
        node(target),
        "--study",
        study.study_instance_uid,
        "--series",
        series.series_instance_uid,
        "-o",
        str(store),
    )
    assert result.returncode == exit_codes.OK, result.stderr
    expected = {i.sop_instance_uid for s in study.series for i in s.instances}
    assert found_by_c_find(target, study.study_instance_uid) == expected
    assert found_by_c_find(target, other.study_instance_uid) == {
        i.sop_instance_uid for i in series.instances
    }  # that series only
    unknown = run_cli("send", node(target), "--study", "1.2.3.999", "-o", str(store))
    assert unknown.returncode == exit_codes.USAGE
    assert f"the store {store} holds no study 1.2.3.999" in unknown.stderr
    # An index that names a path out of the store is never followed: exit 7.
    victim = series.instances[0].sop_instance_uid
    with sqlite3.connect(store / ".qrclient" / "index.sqlite") as index:
        index.execute("UPDATE instance SET path = ? WHERE sop_instance_uid = ?", ("../x", victim))
    damaged = run_cli(
        "send", node(target), "--series", series.series_instance_uid, "-o", str(store)
    )
    assert damaged.returncode == exit_codes.STORE_DAMAGED, damaged.stderr
    assert "names '../x' is not a path inside the store" in damaged.stderr
    assert "qrclient store rebuild" in damaged.stderr


@pytest.mark.peers  # starts its own Orthanc
def test_a_peer_that_aborts_on_c_store(archive: Archive, tmp_path: Path) -> None:
    """Orthanc that does not allow storage from unknown AE titles aborts the association
    at the first C-STORE: nothing is stored, exit 3, each file says why."""
    server = start_orthanc(tmp_path / "orthanc", None, DicomAlwaysAllowStore=False)
    try:
        files = write_files(tmp_path / "in", (find_patient(archive, "PAT003"),))
        report = tmp_path / "report.csv"
        result = run_cli("send", node(server), str(tmp_path / "in"), "--report", str(report))
        assert result.returncode == exit_codes.NETWORK, result.stderr
        assert orthanc_instances(server) == set()
    finally:
        server.stop(graceful=False)
    rows = list(report_rows(report).values())
    assert {row["state"] for row in rows} == {"failed"}
    assert len(rows) == len(files)
    assert all("aborted by the peer" in row["detail"] for row in rows)


# -- refused syntaxes, SOP classes, storage ---------------------------------------------


def test_refused_syntaxes_are_converted_or_reported(
    strict: DcmqrscpServer, archive: Archive, tmp_path: Path
) -> None:
    patient = find_patient(archive, "PAT006")
    study = patient.studies[0]
    files = write_files(tmp_path / "plain", (patient,))
    first, *rest = files.values()
    (tmp_path / "in").mkdir()
    deflated = with_syntax(first, DeflatedExplicitVRLittleEndian, tmp_path / "in" / "deflated.dcm")
    for path in rest:
        path.rename(tmp_path / "in" / path.name)
    jpeg = jpeg_file(tmp_path / "in" / "jpeg.dcm", "1.2.826.0.1.3680043.8.498.424242")
    report = tmp_path / "report.csv"
    result = run_cli("send", node(strict), str(tmp_path / "in"), *ONE, "--report", str(report))
    assert result.returncode == exit_codes.PARTIAL, result.stderr
    rows = report_rows(report)
    converted = rows[str(deflated)]
    assert converted["state"] == "sent"
    assert converted["transfer_syntax"] == DeflatedExplicitVRLittleEndian
    assert converted["sent_as"] in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    refused = rows[str(jpeg)]
    assert refused["state"] == "failed"
    assert (
        "the peer refused JPEG Baseline (Process 1) and pydicom cannot convert it"
        in (refused["detail"])
    )
    assert f"{jpeg}: the peer refused JPEG Baseline" in result.stderr
    series = study.series[0]
    expected = {i.sop_instance_uid for i in series.instances}
    assert found_by_c_find(strict, study.study_instance_uid, series.series_instance_uid) == expected


def test_an_unknown_sop_class_fails_alone(
    strict: DcmqrscpServer, archive: Archive, tmp_path: Path
) -> None:
    files = write_files(tmp_path / "in", (find_patient(archive, "PAT008"),))
    odd_path = next(iter(files.values()))
    dataset = pydicom.dcmread(odd_path)
    dataset.SOPClassUID = UID("1.2.826.0.1.3680043.8.498.77")  # save_as copies it
    dataset.save_as(odd_path, enforce_file_format=True)
    result = run_cli("send", node(strict), str(tmp_path / "in"), *ONE, "--format", "json")
    assert result.returncode == exit_codes.PARTIAL, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["failed"]) == (len(files) - 1, 1), result.stdout
    (failure,) = summary["failures"]
    assert failure["path"] == str(odd_path)
    assert "the peer does not accept 1.2.826.0.1.3680043.8.498.77" in failure["detail"]


@pytest.mark.peers  # starts its own Orthanc
def test_a_peer_refusing_all_storage_exits_4(archive: Archive, tmp_path: Path) -> None:
    files = write_files(tmp_path / "in", (find_patient(archive, "PAT001"),))
    with DcmqrscpServer(tmp_path / "readonly", access="R") as readonly:
        result = run_cli("send", node(readonly), str(tmp_path / "in"))
    assert result.returncode == exit_codes.FAILURE_STATUS, result.stderr
    assert result.stdout.startswith(f"0 sent (0 with warnings), {len(files)} failed, ")
    errors = result.stderr.splitlines()
    assert len(errors) == 1  # one line for the files that failed the same way
    assert errors[0].startswith(f"qrclient: error: {len(files)} files (e.g. ")
    assert "the peer accepted none of the proposed presentation contexts" in errors[0]


# -- the network --------------------------------------------------------------------------


def test_an_unreachable_peer_exits_3(archive: Archive, tmp_path: Path) -> None:
    files = write_files(tmp_path / "in", (find_patient(archive, "PAT003"),))
    result = run_cli("send", "NOBODY@127.0.0.1:1", str(tmp_path / "in"), "--format", "json")
    assert result.returncode == exit_codes.NETWORK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["failed"] == len(files)
    assert all("connection refused by 127.0.0.1:1" in f["detail"] for f in summary["failures"])


def test_ctrl_c_exits_130_after_the_summary(target: OrthancServer, tmp_path: Path) -> None:
    files = write_files(tmp_path / "in", bulk_archive(400, 64, 64, "SENDSTOP"))
    report = tmp_path / "report.csv"
    before = len(orthanc_instances(target))
    process = subprocess.Popen(
        [*SEND, node(target), str(tmp_path / "in"), "--parallel", "1", "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if target.rest_get("/statistics")["CountInstances"] >= before + 20:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == exit_codes.INTERRUPTED, stderr
    assert "qrclient: interrupted" in stderr
    assert "Traceback" not in stderr
    rows = report_rows(report)
    assert len(rows) == len(files)  # every file, sent or not
    states = [row["state"] for row in rows.values()]
    sent = states.count("sent")
    assert 20 <= sent < len(files)
    assert stdout.startswith(f"{sent} sent (0 with warnings), ")
    assert states.count("skipped") >= 1
    assert all(
        row["detail"] == "not sent: interrupted"
        for row in rows.values()
        if row["state"] == "skipped"
    )


# -- input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "nothing to send: give files or folders"),
        (("/no/such/file.dcm",), "/no/such/file.dcm: no such file or folder"),
        (("--parallel", "0", "."), "--parallel 0: expected 1 to 16"),
        (("--report", "/no/such/folder/r.csv", "."), "--report /no/such/folder/r.csv"),
        (("--study", "not-a-uid"), "--study 'not-a-uid' is not a UID"),
    ],
)
def test_bad_input_is_one_line(args: tuple[str, ...], words: str, tmp_path: Path) -> None:
    result = run_cli("send", "PACS@127.0.0.1:1", *args, "-o", str(tmp_path))
    assert result.returncode == exit_codes.USAGE, result.stderr
    assert words in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_a_file_that_is_not_dicom_is_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = run_cli("send", "PACS@127.0.0.1:1", str(text))
    assert result.returncode == exit_codes.USAGE
    assert result.stderr == (
        f"qrclient: error: no DICOM instance to send: {text}: not a DICOM Part-10 file\n"
    )


def test_scan_reads_meta_groups_only(archive: Archive, tmp_path: Path) -> None:
    files = write_files(tmp_path / "in" / "a", (find_patient(archive, "PAT004"),))
    first = next(iter(files.values()))
    (tmp_path / "in" / "b").mkdir()
    copy = tmp_path / "in" / "b" / "copy.dcm"
    copy.write_bytes(first.read_bytes())
    dicomdir = tmp_path / "in" / "DICOMDIR"
    directory = pydicom.dcmread(first)
    directory.SOPClassUID = UID("1.2.840.10008.1.3.10")  # save_as copies it to the meta
    directory.save_as(dicomdir, enforce_file_format=True)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(first.read_bytes()[: read_instance(str(first)).data_offset])
    found = scan([str(tmp_path / "in"), str(first), str(empty)])
    assert {i.sop_instance_uid for i in found.instances} == set(files)
    outcomes = {o.path: o for o in found.outcomes}
    assert outcomes[str(copy)].state is FileState.SKIPPED
    assert outcomes[str(copy)].detail == f"the same SOP Instance UID as {first}"
    assert outcomes[str(dicomdir)].state is FileState.SKIPPED
    assert "DICOMDIR" in outcomes[str(dicomdir)].detail
    assert outcomes[str(empty)].state is FileState.FAILED  # named itself: a failure
    assert outcomes[str(empty)].detail == "a DICOM file without a data set"
    assert [o.detail for o in found.outcomes if o.path == str(first)] == ["given twice"]


def test_contexts_fit_in_associations() -> None:
    instances = [
        Instance(f"/f{n}", f"1.2.3.{n // 2}", f"1.2.3.4.{n}", syntax, 300, 10)
        for n, syntax in enumerate(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"] * 200)
    ]
    parts = groups(instances)
    assert len(parts) > 1
    assert sorted(i.path for part in parts for i in part) == sorted(i.path for i in instances)
    for part in parts:
        contexts = contexts_for(part)
        assert len(contexts) <= MAX_CONTEXTS
        for sop_class in {i.sop_class_uid for i in part}:
            # per SOP class: its own syntaxes, then an uncompressed one to convert to
            mine = [c.transfer_syntaxes for c in contexts if c.abstract_syntax == sop_class]
            assert list(mine[-1]) == ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
            assert len(mine) == 3


def test_a_file_changed_after_its_scan_is_not_sent(archive: Archive, tmp_path: Path) -> None:
    first, second = list(write_files(tmp_path, (find_patient(archive, "PAT003"),)).values())[:2]
    instance = read_instance(str(first))
    first.write_bytes(second.read_bytes())
    with pytest.raises(NotSent, match="the file changed after it was read"), _data_set_of(instance):
        pass
    first.unlink()
    with pytest.raises(NotSent, match="cannot read it: No such file"), _data_set_of(instance):
        pass


@pytest.mark.anyio
async def test_a_short_read_aborts_the_association(
    peer: Peer, archive: Archive, tmp_path: Path
) -> None:
    """A file that shrinks while it is sent cannot end its message: abort, say why."""
    context = ContextRequest("1.2.840.10008.5.1.4.1.1.2")
    with anyio.fail_after(30):
        async with open_association(peer, [context]) as association:
            command = Command(
                CommandField.C_STORE_RQ,
                message_id=association.next_message_id(),
                affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                affected_sop_instance_uid="1.2.3.4",
                priority=0,
            )
            data = io.BytesIO(bytes(1000))
            with pytest.raises(AssociationAborted, match="ended after 1000 of its 5000 bytes"):
                await association.send_streamed(1, command, data.read, 5000)
            assert not association.is_open


# -- what the peer received, and its warnings (a scripted peer) -------------------------


@pytest.mark.anyio
async def test_the_data_set_is_streamed_as_the_file_holds_it_and_warnings_count(
    tmp_path: Path,
) -> None:
    """A scripted peer with 4 KB PDUs decodes what arrives on its own (pynetdicom) and
    answers the first instance with a warning (0xB000, coercion of data elements)."""
    files = write_files(tmp_path, bulk_archive(2, 1024, 1024, "SENDFAKE"))
    received: dict[str, Dataset] = {}

    async def store(peer: PeerConnection) -> None:
        await peer.accept(max_pdu=4096)
        while True:
            try:
                context_id, command, dataset = await peer.read_message()
            except EOFError:  # A-RELEASE-RQ
                await peer.send_raw(RELEASE_RP)
                return
            assert dataset is not None
            received[str(command.AffectedSOPInstanceUID)] = dataset
            status = 0xB000 if len(received) == 1 else 0x0000
            answer = response(
                C_STORE_RSP, int(command.MessageID), status, command.AffectedSOPClassUID
            )
            answer.AffectedSOPInstanceUID = command.AffectedSOPInstanceUID
            await peer.send_message(context_id, answer)

    with anyio.fail_after(60):
        async with fake_peer(store) as (port, _):
            job = SendJob(Peer("FAKE", "127.0.0.1", port), scan([str(tmp_path)]), parallel=1)
            outcome = await job.run()
    assert set(received) == set(files)
    for uid, path in files.items():
        sent = pydicom.dcmread(path)
        assert received[uid].PixelData == sent.PixelData
        assert received[uid].SOPInstanceUID == uid
    states = sorted(f.state.value for f in outcome.files)
    assert states == ["sent", "warning"]
    (warned,) = [f for f in outcome.files if f.state is FileState.WARNING]
    assert warned.detail == "Coercion of Data Elements (0xB000)"
    assert warned.status == 0xB000


def test_send_never_imports_pydicom(target: OrthancServer, tmp_path: Path) -> None:
    """Files in a syntax the peer accepts are streamed, never decoded: no pydicom."""
    write_files(tmp_path / "in", bulk_archive(3, 16, 16, "SENDNOPY"))
    args = ["send", node(target), str(tmp_path / "in")]
    assert_imports_neither_pydicom_nor_tomllib(args, tmp_path / "no-config")


def test_quiet_send_says_only_what_failed(target: OrthancServer, tmp_path: Path) -> None:
    write_files(tmp_path / "in", bulk_archive(2, 16, 16, "SENDQUIET"))
    (tmp_path / "in" / "notes.txt").write_text("skipped, silently")
    quiet = run_cli("send", node(target), str(tmp_path / "in"), "-q")
    assert quiet.returncode == exit_codes.OK, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("", "")
    refused = run_cli("send", "NOBODY@127.0.0.1:1", str(tmp_path / "in"), "-q")
    assert refused.returncode == exit_codes.NETWORK
    assert refused.stdout == ""
    assert "connection refused" in refused.stderr

"""The public API as a library user meets it, against the real Orthanc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import qrclient
from fixtures.dataset import Archive, all_studies
from fixtures.orthanc import OrthancServer
from qrclient.client import OptionError
from qrclient.deid.marker import Dates, StoreMark, write_mark
from qrclient.jobs.retrieve import RetrieveState
from qrclient.net.peer import NodeError
from qrclient.store import Store
from qrclient.store.overview import StoreView

pytestmark = pytest.mark.anyio


async def test_echo_and_find_by_node_string(orthanc: OrthancServer, archive: Archive) -> None:
    node = f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"
    times = await qrclient.echo(node, count=2)
    assert len(times) == 2
    assert all(t > 0 for t in times)
    async with qrclient.find(node, "patient", ["PatientName=DOE*"], model="patient") as matches:
        names = sorted([str(ds.PatientName) async for ds in matches])
    assert names == sorted(p.patient_name for p in archive if p.patient_name.startswith("DOE"))
    assert matches.outcome.state is qrclient.FindState.SUCCESS


async def test_bad_input_raises_before_connecting() -> None:
    with pytest.raises(qrclient.QueryError, match="StudyDate"):
        async with qrclient.find("X@127.0.0.1:1", "study", ["StudyDate=2024"]):
            pass


def test_import_is_lazy() -> None:
    code = "import sys, qrclient; print('pydicom' in sys.modules, qrclient.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", qrclient.__version__]


def test_every_public_name_resolves() -> None:
    assert set(qrclient.__all__) == {"__version__", *qrclient._EXPORTS}
    for name in qrclient._EXPORTS:
        assert getattr(qrclient, name) is not None


def one_study(archive: Archive) -> tuple[str, int]:
    """A study of the archive and how many instances it has."""
    _, study = next(iter(all_studies(archive)))
    return study.study_instance_uid, sum(len(series.instances) for series in study.series)


def node_config(path: Path, orthanc: OrthancServer) -> Path:
    path.write_text(
        'ae_title = "APITEST"\n'
        "[nodes.pacs]\n"
        f'ae_title = "{orthanc.aet}"\nhost = "{orthanc.host}"\nport = {orthanc.dicom_port}\n'
        'method = "get"\n',
        encoding="utf-8",
    )
    return path


async def test_retrieve_into_a_store_and_again(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    node = f"{orthanc.aet}@{orthanc.host}:{orthanc.dicom_port}"
    study_uid, count = one_study(archive)
    out = tmp_path / "store"
    outcome = await qrclient.retrieve(node, [f"StudyInstanceUID={study_uid}"], out=out)
    assert outcome.state is RetrieveState.COMPLETE
    assert (outcome.received, outcome.skipped) == (count, 0)
    with StoreView(out) as view:
        assert view.study_counts([study_uid]) == {study_uid: count}
    again = await qrclient.retrieve(node, [f"StudyInstanceUID={study_uid}"], out=str(out))
    assert (again.received, again.skipped) == (0, count)


async def test_every_function_takes_a_configured_node_name(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    config = node_config(tmp_path / "config.toml", orthanc)
    assert len(await qrclient.echo("pacs", config=config)) == 1
    async with qrclient.find("pacs", "study", ["StudyInstanceUID"], config=config) as matches:
        found = {str(ds.StudyInstanceUID) async for ds in matches}
    assert found == {s.study_instance_uid for _, s in all_studies(archive)}
    study_uid, count = one_study(archive)
    outcome = await qrclient.retrieve(
        "pacs", [f"StudyInstanceUID={study_uid}"], out=tmp_path / "store", config=str(config)
    )
    assert outcome.received == count
    async with qrclient.Client("pacs", config=config) as client:
        assert client.connection.settings.calling_ae == "APITEST"
        assert client.connection.method is qrclient.Method.GET


async def test_an_unknown_node_name_says_which_are_configured(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[nodes.pacs]\nae_title = "P"\nhost = "127.0.0.1"\nport = 104\n')
    with pytest.raises(NodeError, match=r"'nowhere' is neither a configured name .*pacs"):
        await qrclient.echo("nowhere", config=config)


async def test_retrieve_refuses_a_pseudonymised_store_before_connecting(tmp_path: Path) -> None:
    """The guard lives in the client: the API and the UI get it as the command line does."""
    out = tmp_path / "store"
    Store.open(out).close()
    write_mark(out, StoreMark("id", "fingerprint", Dates(0)))
    with pytest.raises(OptionError, match="holds pseudonymised instances"):
        await qrclient.retrieve("X@127.0.0.1:1", ["StudyInstanceUID=1.2.3"], out=out)


def test_the_documented_example_runs_as_written(
    orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    """docs/api.md's first example, run as a user would (the node named in a config file)."""
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    marked = text[text.index("<!-- example:") :]
    start = marked.index("```python\n") + len("```python\n")
    example = marked[start : marked.index("\n```", start)]
    (tmp_path / "example.py").write_text(example, encoding="utf-8")
    config = node_config(tmp_path / "config.toml", orthanc)
    env = {**os.environ, "QRCLIENT_CONFIG": str(config)}
    run = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 + len(list(all_studies(archive))) + 2
    assert lines[-1].startswith("RetrieveState.COMPLETE")
    with StoreView(tmp_path / "store") as view:
        assert sum(view.study_counts([lines[1].split()[-1]]).values()) > 0

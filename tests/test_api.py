"""The public API as a library user meets it, against the real Orthanc."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qrclient
from fixtures.dataset import Archive
from fixtures.orthanc import OrthancServer

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

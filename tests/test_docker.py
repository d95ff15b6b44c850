"""docker/: the parts that can be checked without a Docker engine.

The practice set-up must agree with itself (the AE title and port qrclient uses inside
the image are the ones Orthanc's configuration registers), and the seed script must
load the demo sample into a real Orthanc.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.orthanc import OrthancServer
from qrclient.config import load_config
from qrclient.demo.sample import sample_archive
from qrclient.demo.synthetic import count_instances

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def test_the_image_config_matches_what_orthanc_registers() -> None:
    config = load_config(DOCKER / "qrclient.toml")
    node = config.resolve("orthanc")
    orthanc = json.loads((DOCKER / "orthanc.json").read_text())
    assert (node.peer.ae_title, node.peer.port) == (orthanc["DicomAet"], orthanc["DicomPort"])
    assert node.peer.host == "orthanc"  # the compose service name
    registered = {tuple(entry) for entry in orthanc["DicomModalities"].values()}
    assert (config.ae_title, "qrclient", node.listen_port) in registered
    assert config.store == Path("/data/store")


@pytest.mark.peers
def test_seed_loads_the_demo_sample_into_orthanc(tmp_path: Path) -> None:
    with OrthancServer(tmp_path) as server:
        for _ in range(2):  # a second run changes nothing
            result = subprocess.run(
                [sys.executable, str(DOCKER / "seed.py"), server.base_url],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            statistics = server.rest_get("/statistics")
            assert statistics["CountInstances"] == count_instances(sample_archive())
            assert statistics["CountPatients"] == len(sample_archive())


def test_seed_gives_up_clearly_when_orthanc_is_absent() -> None:
    code = (
        "import sys; sys.argv[1:] = ['http://127.0.0.1:9']; "
        f"sys.path.insert(0, {str(DOCKER)!r}); import seed; seed.wait_ready(sys.argv[1], 1.5)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "did not answer within 1.5 s" in result.stderr
    assert "Traceback" not in result.stderr

"""Load qrclient's demo sample archive into the practice Orthanc over its REST API.

Run by the ``seed`` service of compose.yaml (``python seed.py http://orthanc:8042``);
works against any Orthanc whose REST API accepts uploads. Waits up to a minute for
Orthanc to start, then uploads each instance; uploading twice is harmless.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

from qrclient.demo.sample import sample_archive, sample_instances
from qrclient.demo.synthetic import encode_part10


def wait_ready(base_url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/system", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                message = f"seed: Orthanc at {base_url} did not answer within {seconds:g} s"
                raise SystemExit(message) from None
            time.sleep(1)


def upload_sample(base_url: str) -> int:
    count = 0
    for instance in sample_instances(sample_archive()):
        request = urllib.request.Request(
            f"{base_url}/instances",
            data=encode_part10(instance.dataset),
            headers={"Content-Type": "application/dicom"},
        )
        with urllib.request.urlopen(request, timeout=30):
            count += 1
    return count


def main() -> None:
    base_url = (sys.argv[1] if len(sys.argv) > 1 else "http://orthanc:8042").rstrip("/")
    wait_ready(base_url)
    print(f"seed: uploaded {upload_sample(base_url)} sample instances to {base_url}")


if __name__ == "__main__":
    main()

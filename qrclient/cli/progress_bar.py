"""A one-line progress bar on stderr for retrieves (only on a terminal)."""

from __future__ import annotations

import sys

from qrclient.ops.progress import Progress, Snapshot

_WIDTH = 24


class ProgressBar:
    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    async def follow(self, progress: Progress) -> None:
        if not self.enabled:
            return
        try:
            async for snapshot in progress.watch(interval=0.2):
                sys.stderr.write("\r" + render(snapshot) + "\x1b[K")
                sys.stderr.flush()
        finally:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def render(snapshot: Snapshot) -> str:
    """``[#####.....] 1200/3500 instances 45.2 MB 120.3 MB/s ETA 3 s``."""
    done, total = snapshot.done, snapshot.total
    if total:
        filled = min(_WIDTH, _WIDTH * done // total)
        bar = "#" * filled + "." * (_WIDTH - filled)
        eta_seconds = snapshot.eta_seconds
        eta = f" ETA {eta_seconds:.0f} s" if eta_seconds is not None else ""
        count = f"{done}/{total}"
    else:
        bar, eta, count = "?" * _WIDTH, "", str(done)
    return (
        f"[{bar}] {count} instances {snapshot.received_bytes / 1e6:.1f} MB "
        f"{snapshot.megabytes_per_second:.1f} MB/s{eta}"
    )

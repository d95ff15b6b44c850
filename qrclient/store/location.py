"""Where the local store lives when none is given."""

from __future__ import annotations

from pathlib import Path


def default_store() -> Path:
    """``store`` in qrclient's user data directory (e.g. ~/.local/share/qrclient/store)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("qrclient")) / "store"

"""Environments for the subprocesses that count what qrclient imports."""

from __future__ import annotations

import os
from collections.abc import Mapping

# coverage's subprocess patch starts coverage in every child that sees these, and
# coverage imports tomllib (for pyproject.toml) before qrclient runs: a child that
# counts imports must run unmeasured.
_COVERAGE = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")


def unmeasured(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) without the variables that start coverage in a child."""
    return {
        key: value
        for key, value in (os.environ if env is None else env).items()
        if key not in _COVERAGE
    }

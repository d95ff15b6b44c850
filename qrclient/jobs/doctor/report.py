"""What the doctor found: one result per check, and the verdict for the exit code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier failure made this check meaningless


class Verdict(StrEnum):
    HEALTHY = "healthy"  # no check failed (warnings allowed)
    UNREACHABLE = "unreachable"  # name, TCP or association failed: nothing else could run
    PROBLEMS = "problems"  # the peer answers, but some check failed


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    state: State
    detail: str
    fix: str = ""
    seconds: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state.value,
            "detail": self.detail,
            "fix": self.fix,
            "seconds": None if self.seconds is None else round(self.seconds, 6),
        }


# Checks whose failure means the peer cannot be talked to at all.
CONNECTION_CHECKS = ("name resolution", "TCP connection", "association")


@dataclass(slots=True)
class Report:
    peer: str
    calling_ae: str
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def verdict(self) -> Verdict:
        failed = [c.name for c in self.checks if c.state is State.FAILED]
        if any(name in CONNECTION_CHECKS for name in failed):
            return Verdict.UNREACHABLE
        return Verdict.PROBLEMS if failed else Verdict.HEALTHY

    def as_dict(self) -> dict[str, object]:
        return {
            "peer": self.peer,
            "calling_ae": self.calling_ae,
            "verdict": self.verdict.value,
            "checks": [c.as_dict() for c in self.checks],
        }


class Stopwatch:
    """Seconds since creation, for a check's timing."""

    def __init__(self) -> None:
        self._started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._started

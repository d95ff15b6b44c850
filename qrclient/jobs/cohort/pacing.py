"""Gentle on a shared PACS: a time window to run in, and a rate of studies or bytes.

``--window 20:00-06:00`` (local time; may span midnight): outside it the job waits
before its next study, says until when, and goes on by itself. A study under way when
the window closes is finished, not cut. ``--rate 30/min`` (studies per minute, hour or
second) spaces the studies' starts; ``--rate 5MB/s`` (KB, MB, GB: powers of 1000)
delays the next study until the bytes received so far average that rate.

Time comes from a ``Clock``: the job's real one, or a test's that moves only when
slept on, so the logic is tested without sleeping.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

LONGEST_SLEEP = 300.0  # seconds: a long wait is slept in steps, the clock read anew each


class PacingError(ValueError):
    """A window or rate qrclient cannot read; the message says what is expected."""


class Clock(Protocol):
    def now(self) -> datetime.datetime: ...  # local wall time, for windows

    def monotonic(self) -> float: ...  # seconds, for rates

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> datetime.datetime:
        return datetime.datetime.now()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


_TIME = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime.time
    end: datetime.time

    @classmethod
    def parse(cls, text: str) -> Window:
        expected = "expected HH:MM-HH:MM in local time, e.g. 20:00-06:00"
        first, dash, second = text.strip().partition("-")
        ends = [_TIME.fullmatch(part.strip()) for part in (first, second)]
        if not dash or ends[0] is None or ends[1] is None:
            raise PacingError(f"--window {text!r}: {expected}")
        times = []
        for match in ends:
            assert match is not None
            hour, minute = int(match[1]), int(match[2])
            if hour > 23 or minute > 59:
                raise PacingError(f"--window {text!r}: {match[0]} is not a time of day; {expected}")
            times.append(datetime.time(hour, minute))
        if times[0] == times[1]:
            raise PacingError(f"--window {text!r}: it starts and ends at the same time; {expected}")
        return cls(times[0], times[1])

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, moment: datetime.datetime) -> bool:
        now = moment.time()
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # across midnight

    def next_start(self, moment: datetime.datetime) -> datetime.datetime:
        """When the window next opens after ``moment`` (outside it)."""
        start = datetime.datetime.combine(moment.date(), self.start, moment.tzinfo)
        return start if start > moment else start + datetime.timedelta(days=1)


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB)?\s*/\s*(s|sec|min|h|hour)", re.IGNORECASE)
_PER = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_BYTES = {"kb": 1e3, "mb": 1e6, "gb": 1e9}


@dataclass(frozen=True, slots=True)
class Rate:
    studies_per_second: float | None = None
    bytes_per_second: float | None = None

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.fullmatch(text.strip())
        expected = "expected studies per time (30/min, 100/h) or bytes per second (5MB/s)"
        if match is None:
            raise PacingError(f"--rate {text!r}: {expected}")
        amount, unit, per = float(match[1]), match[2], _PER[match[3].lower()]
        if amount <= 0:
            raise PacingError(f"--rate {text!r}: must be more than 0; {expected}")
        if unit:
            return cls(bytes_per_second=amount * _BYTES[unit.lower()] / per)
        return cls(studies_per_second=amount / per)

    def __str__(self) -> str:
        if self.bytes_per_second is not None:
            return f"{self.bytes_per_second / 1e6:g} MB/s"
        assert self.studies_per_second is not None
        return f"{self.studies_per_second * 60:g} studies/min"


@dataclass
class Pacer:
    """Waits before each study as the window and rate ask; ``say`` tells why it waits."""

    window: Window | None = None
    rate: Rate | None = None
    clock: Clock = field(default_factory=RealClock)
    say: Callable[[str], None] = lambda text: None
    _next: float | None = field(default=None, init=False)  # monotonic: the next start
    _started: float | None = field(default=None, init=False)
    _bytes: int = field(default=0, init=False)

    async def before_study(self) -> None:
        """Return once the next study may start."""
        await self.in_window()
        await self._in_rate()

    def after_study(self, received_bytes: int) -> None:
        """Count what a study brought (for a rate in bytes)."""
        self._bytes += received_bytes

    async def in_window(self) -> None:
        """Return at once inside the window (or without one), else when it opens."""
        window = self.window
        if window is None:
            return
        told = False
        while not window.contains(now := self.clock.now()):
            opens = window.next_start(now)
            if not told:
                self.say(f"outside the window {window}: waiting until {opens:%Y-%m-%d %H:%M}")
                told = True
            await self.clock.sleep(min((opens - now).total_seconds(), LONGEST_SLEEP))
        if told:
            self.say(f"inside the window {window}: going on")

    async def _in_rate(self) -> None:
        rate = self.rate
        if rate is None:
            return
        now = self.clock.monotonic()
        if self._started is None:
            self._started = now
        if rate.studies_per_second is not None:
            due = now if self._next is None else self._next
            if due > now:
                await self.clock.sleep(due - now)
            self._next = max(due, now) + 1 / rate.studies_per_second
        elif rate.bytes_per_second is not None:
            due = self._started + self._bytes / rate.bytes_per_second
            if due > now:
                await self.clock.sleep(due - now)

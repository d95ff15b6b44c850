"""The time window and the rate of a cohort job, on a clock that moves only when slept on;
the cap a node says its PACS stops at."""

from __future__ import annotations

import datetime
from pathlib import Path

import anyio
import pytest

from fixtures.dataset import Archive, find_patient
from fixtures.orthanc import OrthancServer
from qrclient.config import ConfigError, load_config
from qrclient.jobs.cohort.pacing import LONGEST_SLEEP, Pacer, PacingError, Rate, Window
from qrclient.jobs.cohort.resolve import Resolution, Resolver
from qrclient.net.association import open_association
from qrclient.net.peer import Peer
from qrclient.net.presentation import ContextRequest
from qrclient.net.settings import Settings
from qrclient.vocabulary import Model


class FakeClock:
    def __init__(self, start: datetime.datetime) -> None:
        self.moment = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime.datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        self.moment += datetime.timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        """Time passing while a study is fetched."""
        self.elapsed += seconds
        self.moment += datetime.timedelta(seconds=seconds)


def at(hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(2026, 12, 6, hour, minute)


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("20:00-06:00", [at(20), at(23, 59), at(0), at(5, 59)], [at(6), at(12), at(19, 59)]),
        ("09:30-17:00", [at(9, 30), at(16, 59)], [at(9, 29), at(17), at(3)]),
        ("0:00-1:00", [at(0), at(0, 59)], [at(1), at(23)]),
    ],
)
def test_a_window_holds_its_times(
    text: str, inside: list[datetime.datetime], outside: list[datetime.datetime]
) -> None:
    window = Window.parse(text)
    assert all(window.contains(moment) for moment in inside)
    assert not any(window.contains(moment) for moment in outside)


@pytest.mark.parametrize(
    "text", ["25:00-", "25:00-06:00", "20:00", "20:60-06:00", "8-9", "", "20:00-20:00", "a-b"]
)
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(PacingError, match="--window"):
        Window.parse(text)


def test_outside_the_window_the_job_waits_until_it_opens_and_says_so() -> None:
    clock = FakeClock(at(12, 0))
    said: list[str] = []
    pacer = Pacer(Window.parse("20:00-06:00"), clock=clock, say=said.append)
    anyio.run(pacer.before_study)
    assert clock.now() == at(20, 0)
    assert all(s <= LONGEST_SLEEP for s in clock.sleeps)  # the clock is read anew in steps
    assert said == [
        "outside the window 20:00-06:00: waiting until 2026-12-06 20:00",
        "inside the window 20:00-06:00: going on",
    ]
    said.clear()
    anyio.run(pacer.before_study)  # inside: at once
    assert clock.now() == at(20, 0)
    assert said == []


def test_the_window_is_waited_for_again_when_it_has_closed() -> None:
    clock = FakeClock(at(5, 0))
    pacer = Pacer(Window.parse("20:00-06:00"), clock=clock)
    anyio.run(pacer.before_study)
    assert clock.sleeps == []
    clock.advance(2 * 3600)  # a long study: now 07:00, the window closed
    anyio.run(pacer.before_study)
    assert clock.now() == at(20, 0)


@pytest.mark.parametrize(
    ("text", "studies", "bytes_"),
    [
        ("30/min", 0.5, None),
        ("100/h", 100 / 3600, None),
        ("2/s", 2.0, None),
        ("5MB/s", None, 5e6),
        ("500 KB/s", None, 5e5),
        ("1GB/min", None, 1e9 / 60),
    ],
)
def test_rates_are_read(text: str, studies: float | None, bytes_: float | None) -> None:
    rate = Rate.parse(text)
    for got, expected in ((rate.studies_per_second, studies), (rate.bytes_per_second, bytes_)):
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected)


@pytest.mark.parametrize("text", ["fast", "30", "0/min", "-1/min", "5MB", "5TB/s", "30/day"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(PacingError, match="--rate"):
        Rate.parse(text)


def test_a_study_rate_spaces_the_starts() -> None:
    clock = FakeClock(at(12))
    pacer = Pacer(rate=Rate.parse("30/min"), clock=clock)
    starts = []
    for fetch_seconds in (0.5, 5.0, 0.0, 1.0):
        anyio.run(pacer.before_study)
        starts.append(clock.monotonic())
        clock.advance(fetch_seconds)
    # 30 a minute: a start every 2 s; a study longer than that delays only its own.
    assert starts == [0.0, 2.0, 7.0, 9.0]


def test_a_byte_rate_averages_what_came() -> None:
    clock = FakeClock(at(12))
    pacer = Pacer(rate=Rate.parse("5MB/s"), clock=clock)
    anyio.run(pacer.before_study)
    clock.advance(1.0)
    pacer.after_study(20_000_000)  # 20 MB in 1 s: 4 s at 5 MB/s
    anyio.run(pacer.before_study)
    assert clock.monotonic() == pytest.approx(4.0)
    clock.advance(1.0)
    pacer.after_study(1_000_000)  # 21 MB by 5 s: under the rate, no wait
    anyio.run(pacer.before_study)
    assert clock.monotonic() == pytest.approx(5.0)


def test_window_and_rate_together() -> None:
    clock = FakeClock(at(19, 59))
    pacer = Pacer(Window.parse("20:00-06:00"), Rate.parse("1/min"), clock=clock)
    anyio.run(pacer.before_study)
    assert clock.now() == at(20, 0)
    anyio.run(pacer.before_study)
    assert clock.now() == at(20, 1)


def test_a_nodes_find_cap_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    node = '[nodes.pacs]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 104\n'
    path.write_text(node + "find_cap = 500\n")
    assert load_config(path).resolve("pacs").find_cap == 500
    path.write_text(node)
    assert load_config(path).resolve("pacs").find_cap is None
    path.write_text(node + "find_cap = 0\n")
    with pytest.raises(ConfigError, match="find_cap"):
        load_config(path)


def test_a_silent_cap_is_split_too(orthanc: OrthancServer, archive: Archive) -> None:
    """A PACS that stops at ``find_cap`` matches with Success: as many as that is
    taken for cut short, and the look-up is split by date until each part has fewer."""
    patient = find_patient(archive, "PAT002")
    cap = len(patient.studies)  # the patient's studies, all in different years
    peer = Peer(orthanc.aet, orthanc.host, orthanc.dicom_port)
    context = ContextRequest(Model.STUDY.find_sop_class)

    async def resolve(cap: int | None) -> Resolution:
        async with open_association(peer, [context], Settings()) as association:
            return await Resolver(association, cap=cap).resolve({"PatientID": "PAT002"})

    plain = anyio.run(resolve, None)
    assert (plain.queries, plain.split) == (1, False)
    capped = anyio.run(resolve, cap)
    assert capped.split
    assert capped.queries > 1
    assert not capped.incomplete
    assert sorted(s.uid for s in capped.studies) == sorted(
        s.study_instance_uid for s in patient.studies
    )

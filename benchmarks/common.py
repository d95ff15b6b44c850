"""Shared benchmark machinery: a loaded Orthanc, timed whole-process runs, markdown output.

Every command is measured as a whole process (interpreter or binary start-up included),
because that is what a user waits for: wall time from spawn to reap, and the peak RSS
that ``os.wait4`` reports for that one child (see :func:`run_once` for the catch).
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import IO

import qrclient
from fixtures.dataset import Archive, count_instances
from fixtures.lanes import check_peers_allowed
from fixtures.orthanc import OrthancError, OrthancServer

ORTHANC_AET = "ORTHANC"
CALLING_AET = "QRCLIENT"
DEFAULT_RUNS = 5
DEFAULT_WARMUP = 1
RUN_TIMEOUT = 300.0
RUN_DIR = "{run_dir}"
"""Placeholder in a :class:`Command`'s argv for the new empty directory of each run."""


class BenchmarkError(RuntimeError):
    """Something actually broke: a command failed or returned the wrong result."""


# -- environment -------------------------------------------------------------------------


def dcmtk_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for DCMTK tools: without TCP_NODELAY=1 they keep Nagle on and
    small PDUs can stall on delayed ACKs (~40 ms each)."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    if extra:
        env.update(extra)
    return env


def qrclient_executable() -> str:
    """The ``qrclient`` console script of the running interpreter's environment.

    qrclient's modules are byte-compiled first, as installing a wheel does: from an
    editable install with PYTHONDONTWRITEBYTECODE set (as on CI machines), every run
    would otherwise compile them anew, some 30 ms that no installed copy pays.
    """
    package = Path(qrclient.__file__).parent
    if not compileall.compile_dir(package, quiet=1):
        raise BenchmarkError(f"cannot byte-compile {package}")
    beside = Path(sys.executable).parent / "qrclient"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("qrclient")
    if found is None:
        raise BenchmarkError("the qrclient console script is not installed (pip install -e .)")
    return found


def require_executable(name: str) -> str:
    """The DCMTK tool ``name`` on PATH.

    Only DCMTK's: pynetdicom installs console scripts with the same names (getscu,
    movescu, findscu, ...), first on PATH in an activated virtual environment, and
    timing those instead would compare qrclient with the wrong tool.
    """
    check_peers_allowed(name)
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which(name, path=directory or os.curdir)
        if found is not None and "dcmtk" in command_version([found, "--version"]).lower():
            return found
    raise BenchmarkError(f"DCMTK's {name} not found on PATH (apt-get install dcmtk)")


# -- Orthanc -----------------------------------------------------------------------------


@contextmanager
def loaded_orthanc(
    archives: Sequence[Archive],
    *,
    aet: str = ORTHANC_AET,
    config: Mapping[str, object] | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[OrthancServer]:
    """A fresh Orthanc in a temporary directory holding ``archives``; killed on exit.

    The storage is thrown away afterwards, so the stop is not graceful (saves ~3.5 s).
    """
    say = log or _stderr
    settings: dict[str, object] = {"DefaultEncoding": "Utf8"}
    if config:
        settings.update(config)
    with tempfile.TemporaryDirectory(prefix="qrclient-bench-") as workdir:
        server = OrthancServer(Path(workdir), aet=aet, config=settings)
        try:
            started = time.perf_counter()
            server.start()
            say(f"Orthanc up on DICOM port {server.dicom_port} in {_since(started):.1f} s")
            for archive in archives:
                started = time.perf_counter()
                expected = count_instances(archive)
                stored = server.upload_archive(archive)
                if stored != expected:
                    raise BenchmarkError(f"uploaded {stored} of {expected} instances")
                say(f"uploaded {stored} instances in {_since(started):.1f} s")
            yield server
        finally:
            server.stop(graceful=False)


def orthanc_version(server: OrthancServer) -> str:
    try:
        info = server.rest_get("/system")
    except OSError:
        return "?"
    return str(info.get("Version", "?")) if isinstance(info, dict) else "?"


# -- running and timing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One finished process."""

    argv: tuple[str, ...]
    returncode: int
    seconds: float  # wall time from spawn to reaped
    peak_rss_kib: int  # the child's own ru_maxrss (KiB on Linux)
    stdout: bytes
    stderr: bytes
    run_dir: Path | None = None  # the run's own new directory (Command.run_dirs_in)

    def describe_failure(self) -> str:
        tail = self.stderr.decode("utf-8", "replace").strip().splitlines()[-10:]
        return f"`{' '.join(self.argv)}` exited with {self.returncode}" + (
            ":\n    " + "\n    ".join(tail) if tail else ""
        )


# Runs in a bare interpreter (-I -S: a few MiB): spawns argv[2:], waits for it with
# wait4 and writes "seconds max_rss_kib wait_status" to the file descriptor argv[1].
# See run_once for why the target is not spawned from the benchmark process itself.
_LAUNCHER = """\
import os, sys, time
report = int(sys.argv[1])
started = time.perf_counter()
try:
    pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
except OSError as exc:
    sys.stderr.write(f"launcher: cannot run {sys.argv[2]}: {exc}\\n")
    sys.exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
os.write(report, f"{seconds!r} {usage.ru_maxrss} {status}".encode())
"""


def run_once(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = True,
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """Run ``argv`` to completion; time it and read its peak RSS via ``os.wait4``.

    Linux's ru_maxrss of a child counts every address space the process ever had,
    including the copy of its parent's from before exec: spawned from this process
    (tens of MiB of pydicom, numpy and archive data) even ``/bin/true`` would report
    this process's size. So the target is spawned by a small launcher interpreter,
    which also times it from spawn to reap. Peaks below the launcher's own size
    (about 9 MiB) therefore read as that size.

    Output goes to temporary files (no pipe to drain while timing, no deadlock) or, with
    ``capture=False``, to /dev/null. A run over ``timeout`` is killed and reported.
    """
    read_end, write_end = os.pipe()
    try:
        with _output_file(capture) as out, _output_file(capture) as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write_end), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=err if err is not None else subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                pass_fds=(write_end,),
                start_new_session=True,  # on timeout, kill the launcher and the target
            )
            os.close(write_end)
            write_end = -1
            try:
                launcher_status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise BenchmarkError(
                    f"`{' '.join(argv)}` did not finish within {timeout:g} s"
                ) from None
            reported = os.read(read_end, 256).decode("ascii").split()
            stdout, stderr = _read_back(out), _read_back(err)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if len(reported) != 3:
        detail = stderr.decode("utf-8", "replace").strip()
        raise BenchmarkError(
            f"could not run `{' '.join(argv)}` (launcher exit {launcher_status}): {detail}"
        )
    seconds, max_rss, status = float(reported[0]), int(reported[1]), int(reported[2])
    return Run(
        argv=tuple(argv),
        returncode=os.waitstatus_to_exitcode(status),
        seconds=seconds,
        peak_rss_kib=max_rss,
        stdout=stdout,
        stderr=stderr,
    )


@contextmanager
def _output_file(capture: bool) -> Iterator[IO[bytes] | None]:
    if not capture:
        yield None
        return
    with tempfile.TemporaryFile() as handle:
        yield handle


def _read_back(handle: IO[bytes] | None) -> bytes:
    if handle is None:
        return b""
    handle.seek(0)
    return handle.read()


Check = Callable[[Run], None]
"""Validates a successful run's output; raises BenchmarkError when it is wrong."""


@dataclass(frozen=True, slots=True)
class Command:
    """A command to time, how to check each run, and its environment."""

    argv: tuple[str, ...]
    check: Check | None = None
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    capture: bool = True  # keep stdout/stderr for ``check``; else they go to /dev/null
    before_each: Callable[[], None] | None = None  # untimed, e.g. empty an output directory
    # Give every run a new empty directory made in this one, put in place of RUN_DIR in
    # argv, passed to ``check`` as Run.run_dir and removed once the run is checked.
    run_dirs_in: Path | None = None


@dataclass(slots=True)
class Measurement:
    """Repeated runs of one command (warm-up runs excluded)."""

    argv: tuple[str, ...]
    samples: list[float] = field(default_factory=list)
    peak_rss_kib: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def worst(self) -> float:
        return max(self.samples)

    @property
    def peak_rss_mib(self) -> float:
        return max(self.peak_rss_kib) / 1024


def measure_all(
    commands: Sequence[Command], *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP
) -> list[Measurement]:
    """Run each command ``warmup + runs`` times, alternating them run by run.

    Every run must exit 0 and pass its check. Alternating spreads slow drifts (CPU
    frequency, a busy neighbour, the server's caches) over all commands instead of
    penalising whichever happened to run last; each round starts one command later,
    so no command always follows the same one (a retrieve right after another one's
    262 MB of writes ran up to 40% slower than the same retrieve later in the round).
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    results = [Measurement(command.argv) for command in commands]
    pairs = list(zip(commands, results, strict=True))
    for index in range(warmup + runs):
        shift = index % len(pairs)
        for command, result in pairs[shift:] + pairs[:shift]:
            if command.before_each is not None:
                command.before_each()
            run = _run_command(command)
            if index >= warmup:
                result.samples.append(run.seconds)
                result.peak_rss_kib.append(run.peak_rss_kib)
    return results


def _run_command(command: Command) -> Run:
    """One run of ``command``, in its own new directory if it asks for one, checked."""
    if command.run_dirs_in is None:
        run_dir = None
        argv = command.argv
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=command.run_dirs_in))
        argv = tuple(arg.replace(RUN_DIR, str(run_dir)) for arg in command.argv)
    try:
        run = run_once(argv, env=command.env, cwd=command.cwd, capture=command.capture)
        if run_dir is not None:
            run = replace(run, run_dir=run_dir)
        if run.returncode != 0:
            raise BenchmarkError(run.describe_failure())
        if command.check is not None:
            command.check(run)
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
            # The next run starts with this one's writes and deletions on disk, not
            # still being flushed while it is timed.
            os.sync()
    return run


def measure(
    command: Command, *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP
) -> Measurement:
    return measure_all([command], runs=runs, warmup=warmup)[0]


# -- reporting ---------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table with padded columns, readable raw as well as rendered."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def seconds_cell(measurement: Measurement | None) -> str:
    if measurement is None:
        return "—"
    return f"{measurement.median:.3f}"


def ratio_cell(numerator: Measurement | None, denominator: Measurement | None) -> str:
    if numerator is None or denominator is None or denominator.median <= 0:
        return "—"
    return f"{numerator.median / denominator.median:.2f}x"


def verdict(passed: bool | None) -> str:
    """PASS / MISS for a row with a target, a dash for a reference row."""
    if passed is None:
        return "—"
    return "PASS" if passed else "MISS"


def command_version(argv: Sequence[str]) -> str:
    """The first non-empty output line of a ``--version`` style command."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    for text in (done.stdout, done.stderr):
        for raw in text.splitlines():
            stripped = raw.strip().strip("$").strip()
            if stripped:
                return stripped
    return "?"


def machine_info(server: OrthancServer | None = None) -> list[tuple[str, str]]:
    """What the numbers depend on, as (name, value) pairs."""
    info = [
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("qrclient", _dist_version("qrclient")),
        ("pydicom", _dist_version("pydicom")),
        ("pynetdicom", _dist_version("pynetdicom")),
        ("anyio", _dist_version("anyio")),
        ("Orthanc", orthanc_version(server) if server is not None else "?"),
        ("DCMTK", command_version([require_executable("findscu"), "--version"])),
        ("OS", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical CPUs"),
    ]
    return info


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for raw in handle:
                if raw.startswith("model name"):
                    return raw.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def add_run_arguments(
    parser: argparse.ArgumentParser, *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP
) -> None:
    parser.add_argument(
        "--runs",
        type=int,
        default=runs,
        help=f"timed runs per command; the median is reported (default {runs})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=warmup,
        help=f"untimed runs first, to warm caches (default {warmup})",
    )


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")


def run_benchmark(
    argv: Sequence[str] | None,
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], str],
) -> int:
    """A benchmark's main: parse, run, print its report; a failed run is one line, exit 1."""
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        text = run(args)
    except (BenchmarkError, OrthancError) as exc:
        sys.stderr.write(f"bench: error: {exc}\n")
        return 1
    print(text)
    return 0


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks still stop Orthanc."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _stderr(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def progress(text: str) -> None:
    """A progress line on stderr, so stdout carries only the report."""
    _stderr(text)


def _since(started: float) -> float:
    return time.perf_counter() - started

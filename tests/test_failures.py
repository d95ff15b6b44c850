"""One error per failure, whatever task groups wrapped it in: the cause and its hint."""

from __future__ import annotations

import asyncio
import errno

import pytest

from qrclient.cli import exit_codes
from qrclient.cli.common import run_command
from qrclient.cli.main import main
from qrclient.net import AssociationAborted, ConnectFailed, DicomTimeout
from qrclient.ops.query import QueryError
from qrclient.present.failures import UNEXPECTED_HINT, describe, main_error
from qrclient.store import StoreError

REFUSED = ConnectFailed("connection refused by 127.0.0.1:4242", "nothing listens on that port")


def test_an_error_outside_a_group_is_itself() -> None:
    assert main_error(REFUSED) is REFUSED


def test_a_typed_error_wins_over_untyped_ones_and_cancellations() -> None:
    group = ExceptionGroup(
        "unhandled errors in a TaskGroup",
        [ValueError("odd"), ExceptionGroup("inner", [RuntimeError("x"), REFUSED])],
    )
    assert main_error(BaseExceptionGroup("outer", [asyncio.CancelledError(), group])) is REFUSED


def test_the_first_of_the_best_kind_wins() -> None:
    timeout = DicomTimeout("dimse", 1, "C-GET response")
    aborted = AssociationAborted("aborted by the peer")
    assert main_error(ExceptionGroup("g", [timeout, aborted])) is timeout


def test_ours_then_os_errors_then_anything_then_cancellation() -> None:
    store = StoreError("cannot write the store")
    disk = OSError(errno.ENOSPC, "No space left on device")
    odd = ValueError("odd")
    cancelled = asyncio.CancelledError()
    assert main_error(ExceptionGroup("g", [odd, disk, store])) is store
    assert main_error(ExceptionGroup("g", [odd, disk])) is disk
    assert main_error(BaseExceptionGroup("g", [cancelled, odd])) is odd
    assert main_error(BaseExceptionGroup("g", [cancelled])) is cancelled


def test_an_interruption_goes_on_whatever_else_failed() -> None:
    interrupt = KeyboardInterrupt()
    assert main_error(BaseExceptionGroup("g", [REFUSED, interrupt])) is interrupt


def test_describe_gives_the_cause_and_its_hint() -> None:
    group = ExceptionGroup("unhandled errors in a TaskGroup", [REFUSED, REFUSED])
    assert describe(group) == (REFUSED.message, REFUSED.hint)
    assert describe(QueryError("PatientNme: unknown")) == ("PatientNme: unknown", "")
    disk = OSError(errno.ENOSPC, "No space left on device", "/data/x")
    assert describe(disk) == ("No space left on device (/data/x)", "")
    message, hint = describe(ExceptionGroup("g", [ValueError("1 to 128 contexts, not 291")] * 2))
    assert message == "unexpected error: 1 to 128 contexts, not 291 (ValueError)"
    assert hint == UNEXPECTED_HINT
    assert "TaskGroup" not in message


def test_the_command_line_reports_a_group_of_two_as_its_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def job() -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [REFUSED, REFUSED])

    assert run_command(lambda: job) == exit_codes.NETWORK
    assert capsys.readouterr().err.splitlines() == [
        f"qrclient: error: {REFUSED.message}",
        f"qrclient: hint: {REFUSED.hint}",
    ]


def test_an_unexpected_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("odd")] * 2)

    monkeypatch.setattr("qrclient.cli.echo_command.run", broken)
    assert main(["echo", "PACS@127.0.0.1:104"]) == exit_codes.INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "qrclient: error: unexpected error: odd (ValueError)",
        f"qrclient: hint: {UNEXPECTED_HINT} (-v shows where it happened)",
    ]
    assert main(["echo", "PACS@127.0.0.1:104", "-v"]) == exit_codes.INTERNAL_ERROR
    assert "Traceback" in capsys.readouterr().err  # asked for: where it happened

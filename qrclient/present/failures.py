"""What a face reports for a failure: one error, with its message and hint.

Task groups wrap what their tasks raise in exception groups, sometimes several errors
at once (two parallel associations failing the same way, or one failure and the
errors it caused in the others). Every face (the command line, the UI's toasts, jobs
pane and log) reports one error instead: the most meaningful one in the group.
"""

from __future__ import annotations

UNEXPECTED_HINT = "this is a bug in qrclient: please report it, with what led to it"


def main_error(error: BaseException) -> BaseException:
    """``error`` itself, or for an exception group the most meaningful error inside it.

    In order: an interruption (Ctrl-C, exit) that must go on; a typed error of ours
    with a hint (a network failure, a status, a timeout); any other error of ours
    (store, query, configuration); an operating system error; anything else; and a
    cancellation only when nothing else is there. The first of the best kind wins.
    """
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = _leaves(error)
    return min(leaves, key=_rank) if leaves else error


def describe(error: BaseException) -> tuple[str, str]:
    """(message, hint) for ``error`` (a group: for its main error), each one line."""
    error = main_error(error)
    message = getattr(error, "message", None)
    if isinstance(message, str):  # DicomNetworkError and kin: what happened, what to change
        return message, str(getattr(error, "hint", "") or "")
    if _ours(error):
        return str(error) or type(error).__name__, ""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}", ""
    text = str(error)
    return f"unexpected error: {text + ' ' if text else ''}({type(error).__name__})", (
        UNEXPECTED_HINT
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for inner in group.exceptions:
        found.extend(_leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner])
    return found


def _rank(error: BaseException) -> int:
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return 0
    if not isinstance(error, Exception):
        return 6  # cancellation (asyncio's CancelledError, trio's Cancelled), GeneratorExit
    if isinstance(getattr(error, "hint", None), str):
        return 1
    if _ours(error):
        return 2
    return 3 if isinstance(error, OSError) else 4


def _ours(error: BaseException) -> bool:
    """An error type qrclient defines: its message is written for people."""
    return type(error).__module__.startswith("qrclient.")

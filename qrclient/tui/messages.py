"""Messages the workers post to the UI: long work never touches widgets directly."""

from __future__ import annotations

from textual.message import Message

from qrclient.jobs.retrieve import RetrieveOutcome
from qrclient.ops.find import FindOutcome
from qrclient.ops.progress import Snapshot
from qrclient.present.browse import Row
from qrclient.store.overview import StudyHolding
from qrclient.tui.backend import EchoResult


class MatchesArrived(Message):
    """A batch of rows of the query ``generation`` (older generations are dropped)."""

    def __init__(self, generation: int, rows: list[Row]) -> None:
        super().__init__()
        self.generation = generation
        self.rows = rows


class FindEnded(Message):
    """The query ``generation`` ended: its outcome, or the error that ended it."""

    def __init__(
        self,
        generation: int,
        outcome: FindOutcome | None,
        seconds: float,
        error: str = "",
        hint: str = "",
    ) -> None:
        super().__init__()
        self.generation = generation
        self.outcome = outcome
        self.seconds = seconds
        self.error = error
        self.hint = hint


class EchoEnded(Message):
    def __init__(self, node: str, result: EchoResult | None, error: str = "", hint: str = ""):
        super().__init__()
        self.node = node
        self.result = result
        self.error = error
        self.hint = hint


class JobProgressed(Message):
    def __init__(self, job_id: int, snapshot: Snapshot) -> None:
        super().__init__()
        self.job_id = job_id
        self.snapshot = snapshot


class JobFinished(Message):
    """A retrieve ended: its outcome, cancelled (no outcome), or an error."""

    def __init__(
        self, job_id: int, outcome: RetrieveOutcome | None, error: str = "", hint: str = ""
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.outcome = outcome
        self.error = error
        self.hint = hint


class TotalsArrived(Message):
    """Instance counts the peer holds per study and series UID, for the store panel."""

    def __init__(self, totals: dict[str, int]) -> None:
        super().__init__()
        self.totals = totals


class StoreRead(Message):
    """What the store holds, read off the UI thread; or why it could not be read."""

    def __init__(self, holdings: list[StudyHolding], error: str = "") -> None:
        super().__init__()
        self.holdings = holdings
        self.error = error


class Report(Message):
    """An error for people, from any panel: the screen notifies it and logs it."""

    def __init__(self, message: str, hint: str = "", title: str = "Error") -> None:
        super().__init__()
        self.message = message
        self.hint = hint
        self.title = title


class Note(Message):
    """A line for the log pane, from any panel."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ResumeEnded(Message):
    """A durable job's resume ended: its exit code (None: stopped or failed to start)."""

    def __init__(self, job_id: int, code: int | None, error: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.code = code
        self.error = error

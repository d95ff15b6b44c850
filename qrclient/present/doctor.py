"""The doctor's report as lines of text: for ``qrclient doctor`` and the UI's screen."""

from __future__ import annotations

from qrclient.jobs.doctor import Check, Report, State, Verdict
from qrclient.present.printable import printable

MARKS = {State.OK: "ok  ", State.WARNING: "WARN", State.FAILED: "FAIL", State.SKIPPED: "skip"}
VERDICTS = {
    Verdict.HEALTHY: "all is well",
    Verdict.UNREACHABLE: "the PACS cannot be reached or refuses the association",
    Verdict.PROBLEMS: "the PACS answers, but some checks failed",
}


def report_lines(report: Report, *, quiet: bool = False) -> list[str]:
    """The report, printable (details quote the peer: its version name, comments);
    ``quiet``: only what failed or warned and its fixes (nothing if healthy)."""
    lines: list[str] = []
    if quiet and report.verdict is Verdict.HEALTHY:
        return lines
    if not quiet:
        lines.append(f"qrclient doctor: {report.peer}, our AE title {report.calling_ae}")
    width = max(len(check.name) for check in report.checks)
    checks = report.checks
    for index, check in enumerate(checks):
        if quiet and check.state not in (State.FAILED, State.WARNING):
            continue
        rest = checks[index:]
        if check.state is State.SKIPPED and all(c.state is State.SKIPPED for c in rest):
            # One line for the tail an early failure made pointless.
            reasons = sorted({c.detail for c in rest})
            further = f"{len(rest)} further checks: {'; '.join(reasons)}"
            lines.append(f"  {MARKS[check.state]}  {further}")
            break
        lines.append(f"  {MARKS[check.state]}  {check.name:<{width}}  {check.detail}{_time(check)}")
    fixes = [c for c in report.checks if c.fix and c.state in (State.FAILED, State.WARNING)]
    lines.append(f"verdict: {VERDICTS[report.verdict]}")
    if fixes:
        lines.append("to fix:")
        lines += [f"  - {check.name}: {check.fix}" for check in fixes]
    return [printable(line) for line in lines]


def _time(check: Check) -> str:
    if check.seconds is None or check.state is State.SKIPPED:
        return ""
    if check.seconds < 1:
        return f" ({check.seconds * 1000:.1f} ms)"
    return f" ({check.seconds:.2f} s)"

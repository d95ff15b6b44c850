"""``qrclient doctor``: a PACS administrator's report on one node (see docs/cli.md)."""

from qrclient.jobs.doctor.report import Check, Report, State, Verdict
from qrclient.jobs.doctor.run import DoctorOptions, diagnose_peer

__all__ = ["Check", "DoctorOptions", "Report", "State", "Verdict", "diagnose_peer"]

"""``qrclient doctor``: a PACS administrator's report on one node (see docs/cli.md)."""

from qrclient.ops.doctor.report import Check, Report, State, Verdict
from qrclient.ops.doctor.run import DoctorOptions, diagnose_peer

__all__ = ["Check", "DoctorOptions", "Report", "State", "Verdict", "diagnose_peer"]

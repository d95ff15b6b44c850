"""The doctor's checks in order; each later check runs only when it can mean something."""

from __future__ import annotations

from dataclasses import dataclass

from qrclient.jobs.doctor.get_check import NAME as GET_CHECK
from qrclient.jobs.doctor.get_check import check_get
from qrclient.jobs.doctor.move_check import NAME as MOVE_CHECK
from qrclient.jobs.doctor.move_check import Where, check_move, local_address
from qrclient.jobs.doctor.negotiation import (
    QR_CLASSES,
    Negotiation,
    check_association,
    check_resolution,
)
from qrclient.jobs.doctor.report import Check, Report, State
from qrclient.jobs.doctor.sample import CAP, DUPLICATES, FIND, READ_AT_MOST, FindResult, check_find
from qrclient.net.peer import DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, Peer
from qrclient.net.settings import Settings
from qrclient.vocabulary import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE

RELATIONAL = "relational queries"


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    listen_host: str = DEFAULT_LISTEN_HOST  # where our storage listener accepts the moved instance
    listen_port: int = DEFAULT_LISTEN_PORT
    move_wait: float = 20.0  # how long to wait for the moved (or got) instance
    find_limit: int = READ_AT_MOST


async def diagnose_peer(
    peer: Peer, settings: Settings, options: DoctorOptions | None = None
) -> Report:
    """Run every check against ``peer``; see docs/cli.md, "doctor"."""
    options = options or DoctorOptions()
    report = Report(str(peer), settings.calling_ae)
    if not await check_resolution(peer, report):
        _skip_rest(report, "the host name does not resolve", after="name resolution")
        return report
    negotiation = await check_association(peer, settings, report)
    if negotiation is None:
        _skip_rest(report, "no association", after=report.checks[-1].name)
        return report
    found = await _find(peer, settings, negotiation, options)
    report.add(found.check)
    for fetch in (GET_CHECK, MOVE_CHECK):
        report.add(await _fetch(fetch, peer, settings, negotiation, found, options))
    report.add(found.cap)
    report.add(found.duplicates)
    report.add(_relational(negotiation))
    return report


async def _find(
    peer: Peer, settings: Settings, negotiation: Negotiation, options: DoctorOptions
) -> FindResult:
    if not negotiation.accepts(STUDY_ROOT_FIND):
        why = "the PACS does not accept Study Root C-FIND"
        find, cap, duplicates = (
            Check(name, State.SKIPPED, why) for name in (FIND, CAP, DUPLICATES)
        )
        return FindResult(find, cap, duplicates, None)
    return await check_find(peer, settings, options.find_limit)


async def _fetch(
    name: str,
    peer: Peer,
    settings: Settings,
    negotiation: Negotiation,
    found: FindResult,
    options: DoctorOptions,
) -> Check:
    """The C-GET or the C-MOVE check of one instance, where it can mean something."""
    sop_class = STUDY_ROOT_GET if name == GET_CHECK else STUDY_ROOT_MOVE
    if not negotiation.accepts(sop_class):
        service = next(label for label, uid, _ in QR_CLASSES if uid == sop_class)
        return Check(name, State.SKIPPED, f"the PACS does not accept {service}")
    if found.sample is None:
        why = "C-FIND does not work" if found.check.state is not State.OK else "no instance"
        return Check(name, State.SKIPPED, f"nothing to fetch: {why}")
    if name == GET_CHECK:
        return await check_get(peer, settings, found.sample, options.move_wait)
    where = Where(
        settings.calling_ae,
        options.listen_host,
        options.listen_port,
        local_address(peer),
        options.move_wait,
    )
    return await check_move(peer, settings, found.sample, where)


def _relational(negotiation: Negotiation) -> Check:
    granted = [
        name
        for name, sop_class, service in QR_CLASSES
        if service == "C-FIND" and negotiation.relational.get(sop_class)
    ]
    if granted:
        models = ", ".join(name.removesuffix(" C-FIND") for name in granted)
        return Check(RELATIONAL, State.OK, f"supported ({models})")
    return Check(
        RELATIONAL,
        State.OK,
        "not supported: queries must give the unique keys of the levels above the one "
        "asked (qrclient find warns when they do not)",
    )


def _skip_rest(report: Report, why: str, *, after: str) -> None:
    names = ["name resolution", "TCP connection", "association", "C-ECHO"]
    names += [name for name, _, _ in QR_CLASSES]
    names += [FIND, GET_CHECK, MOVE_CHECK, CAP, DUPLICATES, RELATIONAL]
    done = {check.name for check in report.checks}
    for name in names[names.index(after) + 1 :]:
        if name not in done:
            report.add(Check(name, State.SKIPPED, why))

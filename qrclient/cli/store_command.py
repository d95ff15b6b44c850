"""``qrclient store ls | verify | rebuild``: what the local store holds, and its upkeep.

Also how every command reports a store failure: one line, a hint, and an exit code
by the failure's kind (full or unwritable, damaged, busy).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrclient.cli import exit_codes
from qrclient.cli.common import fail
from qrclient.config import ConfigError, load_config
from qrclient.store import (
    Store,
    StoreBusy,
    StoreDamaged,
    StoreError,
    StoreUnwritable,
)
from qrclient.store.errors import rebuild_command
from qrclient.store.location import default_store
from qrclient.store.overview import StoreView, StudyHolding
from qrclient.store.tree import META_DIR


def exit_code_of(error: StoreError) -> int:
    """The documented exit code of a store failure."""
    if isinstance(error, StoreUnwritable):
        return exit_codes.STORE_FAILED
    if isinstance(error, StoreDamaged):
        return exit_codes.STORE_DAMAGED
    if isinstance(error, StoreBusy):
        return exit_codes.STORE_BUSY
    return exit_codes.USAGE  # a layout, a path that is a file: the input


def report_store_error(error: StoreError) -> int:
    """Print a store failure as what happened plus what to do; return its exit code."""
    fail(error.message)
    if error.hint:
        sys.stderr.write(f"qrclient: hint: {error.hint}\n")
    return exit_code_of(error)


def store_root(args: argparse.Namespace) -> Path:
    """``--out``, else the configuration's store, else qrclient's default one."""
    if args.out:
        return Path(args.out)
    return load_config(args.config).store or default_store()


def run(args: argparse.Namespace) -> int:
    if args.store_command == "missing":  # a network command of its own
        from qrclient.cli import store_missing_command

        return store_missing_command.run(args)
    if args.wait is not None and not 0 <= args.wait <= 86400:
        fail(f"--wait {args.wait:g}: expected 0 to 86400 seconds")
        return exit_codes.USAGE
    try:
        root = store_root(args)
    except ConfigError as exc:
        fail(str(exc))
        return exit_codes.USAGE
    try:
        if args.store_command == "ls":
            return _list(root, args.format, args.quiet)
        if args.store_command == "verify":
            return _verify(root, args.format, args.wait or 0.0, args.quiet)
        return _rebuild(root, args.format, args.wait or 0.0, args.quiet)
    except StoreError as exc:
        return report_store_error(exc)


def _require_store(root: Path) -> None:
    if not (root / META_DIR).is_dir():
        raise StoreError(
            f"no qrclient store at {root} (it has no {META_DIR} folder)",
            f"give the store with --out DIR; to index a folder of DICOM files: "
            f"{rebuild_command(root)}",
        )


# ls


def _list(root: Path, kind: str, quiet: bool) -> int:
    with StoreView(root) as view:  # no lock: also while a retrieve writes into it
        studies = view.holdings()
    patients: dict[str, list[StudyHolding]] = {}
    for study in studies:
        patients.setdefault(study.patient_id, []).append(study)
    totals = {
        "patients": len(patients),
        "studies": len(studies),
        "series": sum(len(s.series) for s in studies),
        "instances": sum(s.instances for s in studies),
        "bytes": sum(s.bytes for s in studies),
    }
    if kind == "json":
        listing = [_patient_json(held) for held in patients.values()]
        json.dump({"store": str(root), "patients": listing, "totals": totals}, sys.stdout)
        print()
        return exit_codes.OK
    for held in patients.values():
        print(_columns(held[0].patient_id or "(no patient ID)", held[0].patient_name))
        for study in held:
            print(
                "  "
                + _columns(
                    _date(study.study_date),
                    study.description,
                    study.accession,
                    study.study_uid,
                    f"{_count(len(study.series), 'series')}, "
                    f"{_count(study.instances, 'instance')}, {_megabytes(study.bytes)}",
                )
            )
            for series in study.series:
                number = "" if series.series_number is None else f"#{series.series_number}"
                print(
                    "    "
                    + _columns(
                        series.modality,
                        number,
                        series.description,
                        series.series_uid,
                        f"{_count(series.instances, 'instance')}, {_megabytes(series.bytes)}",
                    )
                )
    if not quiet:
        print(
            f"{_count(totals['patients'], 'patient')}, {_count(totals['studies'], 'study')}, "
            f"{_count(totals['series'], 'series')}, {_count(totals['instances'], 'instance')}, "
            f"{_megabytes(totals['bytes'])} in {root}"
        )
    return exit_codes.OK


def _patient_json(studies: list[StudyHolding]) -> dict[str, Any]:
    return {
        "patient_id": studies[0].patient_id,
        "patient_name": studies[0].patient_name,
        "studies": [
            {
                "study_uid": study.study_uid,
                "study_date": study.study_date,
                "description": study.description,
                "accession": study.accession,
                "instances": study.instances,
                "bytes": study.bytes,
                "folder": study.folder,
                "series": [
                    {
                        "series_uid": series.series_uid,
                        "modality": series.modality,
                        "series_number": series.series_number,
                        "description": series.description,
                        "instances": series.instances,
                        "bytes": series.bytes,
                        "folder": series.folder,
                    }
                    for series in study.series
                ],
            }
            for study in studies
        ],
    }


def _columns(*values: str) -> str:
    return "  ".join(v for v in values if v)


def _date(value: str) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


_PLURALS = {"study": "studies", "series": "series"}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun if number == 1 else _PLURALS.get(noun, f'{noun}s')}"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


# verify and rebuild


def _verify(root: Path, kind: str, wait: float, quiet: bool) -> int:
    _require_store(root)
    with Store.open(root, wait=wait) as store:
        problems = store.verify()
        instances = store.summary().instances
    code = exit_codes.STORE_DAMAGED if problems else exit_codes.OK
    if kind == "json":
        json.dump({"store": str(root), "instances": instances, "problems": problems}, sys.stdout)
        print()
        return code
    for problem in problems:
        print(problem)
    if problems:
        fail(
            f"{_count(len(problems), 'problem')} in the store {root} "
            f"({_count(instances, 'instance')} indexed)"
        )
        sys.stderr.write(
            "qrclient: hint: a missing file is fetched again by the next retrieve; to "
            f"index the files anew: {rebuild_command(root)}\n"
        )
    elif not quiet:
        print(f"{_count(instances, 'instance')} indexed, every file in place and readable: {root}")
    return code


def _rebuild(root: Path, kind: str, wait: float, quiet: bool) -> int:
    if not root.is_dir():
        raise StoreError(f"no folder {root} to index", "give the store with --out DIR")
    with Store.open(root, wait=wait, rebuild=True) as store:
        summary = store.summary()
    if kind == "json":
        json.dump(
            {
                "store": str(root),
                "patients": summary.patients,
                "studies": summary.studies,
                "series": summary.series,
                "instances": summary.instances,
                "bytes": summary.bytes,
            },
            sys.stdout,
        )
        print()
        return exit_codes.OK
    if not quiet:
        print(
            f"indexed {_count(summary.instances, 'instance')} "
            f"({_count(summary.patients, 'patient')}, {_count(summary.studies, 'study')}, "
            f"{_count(summary.series, 'series')}, {_megabytes(summary.bytes)}) "
            f"from the files in {root}"
        )
    return exit_codes.OK

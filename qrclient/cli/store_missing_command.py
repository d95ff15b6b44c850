"""``qrclient store missing NODE``: what the PACS has that the store lacks.

The studies of ``-k`` keys or of ``--from``'s rows are looked up as a cohort's are
(``jobs.cohort.resolve``), then each series' count on the PACS is compared with the
store's, which asks the disk (``jobs.cohort.verify``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from qrclient.cli import exit_codes
from qrclient.cli.common import UsageError, node_and_settings, run_command, stderr_lines
from qrclient.cli.store_command import report_store_error
from qrclient.jobs.cohort.items import InputError, Item, read_items
from qrclient.jobs.cohort.resolve import Resolver
from qrclient.jobs.cohort.verify import SeriesCount, compare
from qrclient.net.association import open_association
from qrclient.net.presentation import ContextRequest
from qrclient.ops.query import QueryError, parse_key
from qrclient.present.printable import printable
from qrclient.store import Store, StoreError
from qrclient.store.location import default_store
from qrclient.store.tree import META_DIR
from qrclient.vocabulary import Model

KEYWORDS = ("StudyInstanceUID", "PatientID", "AccessionNumber")


def run(args: argparse.Namespace) -> int:
    return run_command(lambda: _prepare(args))


def _items(args: argparse.Namespace) -> list[Item]:
    if bool(args.keys) == bool(args.from_file):
        raise UsageError(
            "store missing: give the studies with -k (StudyInstanceUID, PatientID or "
            "AccessionNumber) or --from FILE"
        )
    if args.from_file:
        try:
            return read_items(args.from_file)
        except InputError as exc:
            raise UsageError(str(exc)) from None
    items = []
    for text in args.keys:
        key = parse_key(text)
        if key.keyword not in KEYWORDS or not key.value or any(c in key.value for c in "*?"):
            raise QueryError(f"{text}: expected {', '.join(KEYWORDS)} with an exact value")
        items += [{key.keyword: value} for value in key.value.split("\\") if value]
    return items


def _prepare(args: argparse.Namespace) -> Callable[[], Awaitable[int]]:
    config, node, settings = node_and_settings(args)
    items = _items(args)
    out = Path(args.out) if args.out else config.store or default_store()
    if not (out / META_DIR).is_dir():
        raise UsageError(f"no qrclient store at {out}: give it with --out DIR")
    from qrclient.deid.errors import DeidError
    from qrclient.deid.marker import refuse_plain

    try:
        refuse_plain(out)
    except DeidError:
        raise UsageError(
            f"the store {out} is pseudonymised: its UIDs are not the PACS's; see the "
            "report of the job that filled it (qrclient jobs list)"
        ) from None
    wait = 0.0 if args.wait is None else args.wait
    say = stderr_lines(quiet=args.quiet)

    async def job() -> int:
        try:
            store = Store.open(out, wait=wait)
        except StoreError as exc:
            return report_store_error(exc)
        with store:
            counts, not_found = await _compare(store)
        return _show(counts, not_found, args.format, out, say)

    async def _compare(store: Store) -> tuple[list[SeriesCount], list[int]]:
        context = ContextRequest(Model.STUDY.find_sop_class)
        counts: list[SeriesCount] = []
        not_found: list[int] = []
        async with open_association(node.peer, [context], settings) as association:
            resolver = Resolver(association)
            for row, item in enumerate(items, start=1):
                resolution = await resolver.resolve(item)
                if not resolution.studies:
                    not_found.append(row)
                uids = [study.uid for study in resolution.studies]
                counts += await compare(association, store, uids)
            for note in resolver.notes:
                say(f"note: {note}")
        return counts, not_found

    return job


def _show(
    counts: list[SeriesCount],
    not_found: list[int],
    kind: str,
    out: Path,
    say: Callable[[str], None],
) -> int:
    short = [c for c in counts if c.missing]
    if kind == "json":
        json.dump(
            {
                "store": str(out),
                "series": [
                    {
                        "study": c.study_uid,
                        "series": c.series_uid,
                        "on_pacs": c.on_pacs,
                        "here": c.here,
                    }
                    for c in counts
                ],
                "not_found": not_found,
            },
            sys.stdout,
        )
        print()
    else:
        for c in short:
            print(printable(f"{c.study_uid}  {c.series_uid}  {c.here} of {c.on_pacs} here"))
        studies = len({c.study_uid for c in counts})
        lacking = sum(c.missing for c in short)
        if short:
            say(
                f"{len(short)} of {len(counts)} series ({studies} studies) lack {lacking} "
                f"instances the PACS has; retrieve them again to fetch what is missing"
            )
        else:
            say(f"nothing missing: {len(counts)} series of {studies} studies are whole")
        for row in not_found:
            say(f"row {row}: not found on the PACS")
    return exit_codes.PARTIAL if short else exit_codes.OK

"""Modality Worklist C-FIND (PS3.4 annex K): what is scheduled, for whom, where.

A worklist identifier has no Query/Retrieve Level; what a modality asks by (the date,
its modality, its AE title) sits in the one item of the Scheduled Procedure Step
Sequence, so keys may be nested: ``ScheduledProcedureStepSequence.Modality=CT`` (see
ops.query.parse_key). The identifier is built with pydicom, which encodes sequences;
the matches stream through ops.find like any C-FIND's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qrclient.net.uids import MODALITY_WORKLIST_FIND
from qrclient.ops.dates import DateError, date_range
from qrclient.ops.query import Key, QueryError, merge_keys, parse_key, wire_value

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

STEP = "ScheduledProcedureStepSequence"

# Table K.6-1's keys a scheduler reads first: who, what, when, where.
DEFAULT_WORKLIST_KEYS: tuple[str, ...] = (
    f"{STEP}.ScheduledProcedureStepStartDate",
    f"{STEP}.ScheduledProcedureStepStartTime",
    f"{STEP}.Modality",
    f"{STEP}.ScheduledStationAETitle",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "RequestedProcedureID",
    f"{STEP}.ScheduledProcedureStepDescription",
    f"{STEP}.ScheduledProcedureStepID",
    f"{STEP}.ScheduledPerformingPhysicianName",
    "StudyInstanceUID",
)


@dataclass(frozen=True, slots=True)
class WorklistQuery:
    """A Modality Worklist C-FIND: its keys, top-level or nested in a sequence."""

    keys: tuple[Key, ...]
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sop_class(self) -> str:
        return MODALITY_WORKLIST_FIND

    @property
    def notes(self) -> list[str]:
        """What a lenient reading changed in the values given."""
        return [k.note for k in self.keys if k.note]

    @property
    def return_keywords(self) -> list[str]:
        """Columns: each key by its dotted name, without the sequences that hold others."""
        holders = {k.path[0] for k in self.keys if k.path}
        return [k.name for k in self.keys if k.path or k.tag not in holders]

    def as_identifier(self) -> Dataset:
        """The identifier: nested keys in their sequence's one item."""
        from pydicom.dataset import Dataset  # here: pydicom is slow to import
        from pydicom.sequence import Sequence

        identifier = Dataset()
        if any(k.value and not k.value.isascii() for k in self.keys):
            identifier.SpecificCharacterSet = "ISO_IR 192"
        for key in self.keys:
            target = identifier
            for tag in key.path:
                if tag not in target:
                    target.add_new(tag, "SQ", Sequence([Dataset()]))
                items = target[tag].value
                if not items:
                    items.append(Dataset())
                target = items[0]
            if key.vr == "SQ":
                if key.tag not in target:
                    target.add_new(key.tag, "SQ", Sequence([]))  # universal: every item
            else:
                target.add_new(key.tag, key.vr, wire_value(key))
        return identifier


def build_worklist_query(
    keys: Iterable[str | Key] = (),
    *,
    date: str | None = None,
    modality: str | None = None,
    station: str | None = None,
    default_keys: bool = True,
) -> WorklistQuery:
    """A worklist query from ``-k`` texts and the usual filters, read leniently (with
    notes): ``date`` (see ops.dates, also ``today``) and ``modality`` and ``station``
    (the Scheduled Station AE Title) match in the Scheduled Procedure Step."""
    given = [k if isinstance(k, Key) else parse_key(k, lenient=True) for k in keys]
    if date is not None:
        given.append(_date_key(date))
    if modality is not None:
        given.append(parse_key(f"{STEP}.Modality={modality}", lenient=True))
    if station is not None:
        given.append(parse_key(f"{STEP}.ScheduledStationAETitle={station}", lenient=True))
    defaults = DEFAULT_WORKLIST_KEYS if default_keys or not given else ()
    return WorklistQuery(merge_keys(defaults, given))


def _date_key(text: str) -> Key:
    try:
        value = date_range(text)
    except DateError as exc:
        raise QueryError(f"--date {exc}") from None
    key = parse_key(f"{STEP}.ScheduledProcedureStepStartDate={value}")
    if value == text.strip():
        return key
    return Key(key.tag, key.keyword, key.vr, value, f"--date {text} read as {value}", key.path)

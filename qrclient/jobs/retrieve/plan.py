"""Planning a retrieve: the studies, series and instances a request covers, level by level.

Only what PS3.4 makes mandatory for an SCP is relied on. A key is matched at its own
level, with the unique keys of the levels above as single values: PatientID and
AccessionNumber are resolved to StudyInstanceUIDs by a STUDY-level C-FIND, then each
study's series by a SERIES-level one, then each series' instances by an IMAGE-level
one. A PACS may ignore keys above the level asked (dcmqrscp does), so every match is
checked here too: one whose returned key differs from what was asked is not ours and
is dropped (and said so in the notes). A selecting key (PatientID, AccessionNumber)
the match does not return cannot be checked, and the match is dropped as well.

What the plan needs from the peer, and what happens without it:
- The computed keys SOPClassesInStudy and NumberOfStudyRelatedInstances (optional)
  make the fast path: a study the store holds nothing of is fetched whole, in one
  request, with exactly the storage contexts its classes need, after one C-FIND.
  Without them, or when part of the study is here already (resume), the study is
  planned per instance.
- SOPClassUID at IMAGE level (a required return key that some PACSs, dcmqrscp among
  them, leave out): without it a C-GET proposes contexts for unknown classes
  (``storage_classes.unknown_class_packs``) and asks again for what could not come.
- List matching of UIDs in C-FIND (optional): lists of up to ``FIND_LIST`` UIDs are
  tried once; a failure, or no match at all, falls back to one C-FIND per value, and
  a failure is remembered for the rest of the job (``Abilities``).

A C-MOVE to another AE is planned down to the request's level only: nothing comes
here, so there is nothing to resume or to propose contexts for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from qrclient.jobs.retrieve.model import PlannedInstance, RetrieveRequest, StoreIndex, Unit
from qrclient.net.association import Association
from qrclient.net.dictionary import COMMON
from qrclient.net.status import FailureStatus
from qrclient.net.storage_classes import ROOM, contexts_per_association
from qrclient.ops.find import find_values
from qrclient.ops.query import Key, Query, build_query
from qrclient.vocabulary import Level, Model

FIND_LIST = 100  # UIDs per C-FIND with a list: about 6.5 KB of identifier
BATCH = 500  # SOP Instance UIDs per IMAGE-level C-GET / C-MOVE: about 32 KB
CLASSES_PER_ASSOCIATION = contexts_per_association(ROOM, compressed=True)

Match = dict[str, str]


@dataclass(slots=True)
class Abilities:
    """Optional features the peer showed it has or lacks; None until tried in this job."""

    find_lists: bool | None = None  # \\-lists of UIDs matched in C-FIND
    retrieve_lists: bool | None = None  # \\-lists of SOP Instance UIDs in C-GET / C-MOVE


@dataclass(frozen=True, slots=True)
class StudyMatch:
    uid: str
    patient_id: str = ""
    sop_classes: tuple[str, ...] = ()  # SOPClassesInStudy, where the peer computes it
    count: int | None = None  # NumberOfStudyRelatedInstances, likewise
    series: tuple[str, ...] | None = None  # its series, when already found


@dataclass(slots=True)
class Plan:
    """Units fetched as they are, and instances still to check against the store."""

    units: list[Unit] = field(default_factory=list)
    instances: list[PlannedInstance] = field(default_factory=list)
    count: int | None = 0  # instances covered; None when the peer does not say for all


def _key(keyword: str, value: str | None = None) -> Key:
    tag, vr = COMMON[keyword]
    return Key(tag, keyword, vr, value)


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class Planner:
    """Plans ``request`` over one association that accepted its model's C-FIND.

    ``index`` is the store when the instances come here (to resume), None for a C-MOVE
    to another AE; ``classes`` says a C-GET will need the SOP classes.
    """

    def __init__(
        self,
        association: Association,
        request: RetrieveRequest,
        abilities: Abilities,
        notes: list[str],
        *,
        index: StoreIndex | None,
        classes: bool,
        parallel: int,
    ) -> None:
        self.association = association
        self.request = request
        self.model = request.model
        self.abilities = abilities
        self.notes = notes
        self.index = index
        self.classes = classes
        self.parallel = parallel
        self._dropped = 0

    async def plan(self) -> Plan:
        request = self.request
        plan = Plan()
        if request.values("StudyInstanceUID") or self._selecting():
            studies = await self.studies()
        elif request.values("SeriesInstanceUID"):
            studies = await self.studies_of_series(request.values("SeriesInstanceUID"))
        else:
            plan.instances = await self.instances_by_uid(request.values("SOPInstanceUID"))
            plan.count = len(plan.instances)
            self._say_dropped()
            return plan
        for study in studies:
            await self._plan_study(plan, study)
        if len(plan.units) < self.parallel and all(u.level is Level.STUDY for u in plan.units):
            # Share a few whole studies out by series (a cheap SERIES-level C-FIND).
            plan.units = [u for study in plan.units for u in await self._by_series(study)]
        self._say_dropped()
        return plan

    async def _plan_study(self, plan: Plan, study: StudyMatch) -> None:
        level = self.request.level
        if level in (Level.PATIENT, Level.STUDY) and self._whole(study):
            plan.units.append(
                Unit(Level.STUDY, study.uid, "", (), study.sop_classes, study.patient_id)
            )
            plan.count = (
                None if plan.count is None or study.count is None else plan.count + study.count
            )
            return
        wanted = (
            self.request.values("SeriesInstanceUID") if level in (Level.SERIES, Level.IMAGE) else ()
        )
        series = study.series if study.series is not None else await self.series(study, wanted)
        if level is Level.SERIES and self.index is None:
            plan.units.extend(
                Unit(Level.SERIES, study.uid, uid, (), (), study.patient_id) for uid in series
            )
            plan.count = None
            return
        sop_uids = self.request.values("SOPInstanceUID") if level is Level.IMAGE else ()
        for series_uid in series:
            found = await self.instances(study, series_uid, sop_uids)
            plan.instances.extend(found)
            if plan.count is not None:
                plan.count += len(found)

    def _whole(self, study: StudyMatch) -> bool:
        """Whether ``study`` is fetched whole, without a plan per instance."""
        if self.index is None:
            return True  # a C-MOVE elsewhere: nothing to resume
        if self.index.instances_in_study(study.uid):
            return False  # part of it is here: resume needs the instances
        if not self.classes:
            return True  # a C-MOVE to us needs no contexts
        return bool(study.count and study.sop_classes) and (
            len(study.sop_classes) <= CLASSES_PER_ASSOCIATION
        )

    async def _by_series(self, study: Unit) -> list[Unit]:
        series = await self.series(StudyMatch(study.study_uid, study.patient_id), ())
        if len(series) < 2:
            return [study]
        return [
            Unit(Level.SERIES, study.study_uid, uid, (), study.sop_classes, study.patient_id)
            for uid in series
        ]

    # -- the levels ---------------------------------------------------------------------

    def _selecting(self) -> dict[str, set[str]]:
        """The non-unique keys that select studies (PatientID, AccessionNumber)."""
        return {
            keyword: set(values)
            for keyword in ("PatientID", "AccessionNumber")
            if (values := self.request.values(keyword))
        }

    async def studies(self) -> list[StudyMatch]:
        """The studies the request's study-level keys select."""
        study_uids = self.request.values("StudyInstanceUID")
        selecting = self._selecting()
        returned = ["PatientID", "SOPClassesInStudy", "NumberOfStudyRelatedInstances"]
        returned += [k for k in selecting if k not in returned]
        # A selecting key goes into the query as a single value; a list is matched here.
        fixed = [_key(k, next(iter(v))) for k, v in selecting.items() if len(v) == 1]
        keys = [*fixed, *(_key(k) for k in returned if k not in {f.keyword for f in fixed})]
        if study_uids:
            matches = await self._find(Level.STUDY, keys, "StudyInstanceUID", study_uids)
        else:
            # Resolve by the first selecting key, one value per C-FIND.
            driver, values = next(iter(selecting.items()))
            keys = [_key("StudyInstanceUID"), *(k for k in keys if k.keyword != driver)]
            matches = await self._find(Level.STUDY, keys, driver, sorted(values), lists=False)

        def ours(match: Match) -> bool:
            if study_uids and match["StudyInstanceUID"] not in study_uids:
                return False
            return all(match.get(k, "") in v for k, v in selecting.items())

        studies: dict[str, StudyMatch] = {}
        for match in self._checked(matches, ours, "StudyInstanceUID"):
            uid = match["StudyInstanceUID"]
            classes = tuple(c.strip() for c in match["SOPClassesInStudy"].split("\\") if c.strip())
            count = match["NumberOfStudyRelatedInstances"].strip()
            studies.setdefault(
                uid,
                StudyMatch(
                    uid, match["PatientID"], classes, int(count) if count.isdigit() else None
                ),
            )
        return list(studies.values())

    async def studies_of_series(self, series_uids: Sequence[str]) -> list[StudyMatch]:
        """The studies of series named without their study (a SERIES-level C-FIND)."""
        keys = [_key("StudyInstanceUID"), _key("PatientID")]
        matches = await self._find(Level.SERIES, keys, "SeriesInstanceUID", series_uids)
        wanted = set(series_uids)
        by_study: dict[str, tuple[str, dict[str, None]]] = {}
        for match in self._checked(
            matches,
            lambda m: m["SeriesInstanceUID"] in wanted and bool(m["StudyInstanceUID"]),
            "SeriesInstanceUID",
        ):
            entry = by_study.setdefault(match["StudyInstanceUID"], (match["PatientID"], {}))
            entry[1][match["SeriesInstanceUID"]] = None
        return [
            StudyMatch(uid, patient, series=tuple(series))
            for uid, (patient, series) in by_study.items()
        ]

    async def series(self, study: StudyMatch, wanted: Sequence[str]) -> list[str]:
        """The series of ``study`` (those of ``wanted``, if given)."""
        keys = [*self._parents(study), _key("StudyInstanceUID", study.uid)]
        matches = await self._find(Level.SERIES, keys, "SeriesInstanceUID", wanted)
        wanted_set = set(wanted)

        def ours(match: Match) -> bool:
            if match["StudyInstanceUID"] not in ("", study.uid):
                return False
            return not wanted_set or match["SeriesInstanceUID"] in wanted_set

        return list(
            dict.fromkeys(
                m["SeriesInstanceUID"] for m in self._checked(matches, ours, "SeriesInstanceUID")
            )
        )

    async def instances(
        self, study: StudyMatch, series_uid: str, wanted: Sequence[str]
    ) -> list[PlannedInstance]:
        """The instances of one series (those of ``wanted``, if given), with their class."""
        keys = [
            *self._parents(study),
            _key("StudyInstanceUID", study.uid),
            _key("SeriesInstanceUID", series_uid),
            _key("SOPClassUID"),
        ]
        matches = await self._find(Level.IMAGE, keys, "SOPInstanceUID", wanted)
        wanted_set = set(wanted)

        def ours(match: Match) -> bool:
            if match["StudyInstanceUID"] not in ("", study.uid):
                return False
            if match["SeriesInstanceUID"] not in ("", series_uid):
                return False
            return not wanted_set or match["SOPInstanceUID"] in wanted_set

        planned: dict[str, PlannedInstance] = {}
        for match in self._checked(matches, ours, "SOPInstanceUID"):
            uid = match["SOPInstanceUID"]
            planned.setdefault(
                uid,
                PlannedInstance(uid, match["SOPClassUID"], series_uid, study.uid, study.patient_id),
            )
        return list(planned.values())

    async def instances_by_uid(self, sop_uids: Sequence[str]) -> list[PlannedInstance]:
        """Instances named without their series and study (an IMAGE-level C-FIND)."""
        keys = [_key(k) for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")]
        keys.append(_key("SOPClassUID"))
        matches = await self._find(Level.IMAGE, keys, "SOPInstanceUID", sop_uids)
        wanted = set(sop_uids)
        planned: dict[str, PlannedInstance] = {}
        for match in self._checked(
            matches,
            lambda m: (
                m["SOPInstanceUID"] in wanted
                and bool(m["StudyInstanceUID"] and m["SeriesInstanceUID"])
            ),
            "SOPInstanceUID",
        ):
            uid = match["SOPInstanceUID"]
            planned.setdefault(
                uid,
                PlannedInstance(
                    uid,
                    match["SOPClassUID"],
                    match["SeriesInstanceUID"],
                    match["StudyInstanceUID"],
                    match["PatientID"],
                ),
            )
        return list(planned.values())

    async def instances_of(self, unit: Unit) -> list[PlannedInstance]:
        """Every instance of a whole-study or whole-series unit (to ask again for some)."""
        study = StudyMatch(unit.study_uid, unit.patient_id)
        series = (
            [unit.series_uid] if unit.level is not Level.STUDY else await self.series(study, ())
        )
        found: list[PlannedInstance] = []
        for series_uid in series:
            found.extend(await self.instances(study, series_uid, unit.sop_instance_uids))
        self._say_dropped()
        return found

    # -- C-FIND with checks -------------------------------------------------------------

    def _parents(self, study: StudyMatch) -> list[Key]:
        """PatientID, which the patient root model's hierarchy needs below PATIENT."""
        if self.model is not Model.PATIENT:
            return []
        return [_key("PatientID", study.patient_id or None)]

    def _query(self, level: Level, keys: Iterable[Key]) -> Query:
        return build_query(level, self.model, list(keys), default_keys=False)

    async def _find(
        self,
        level: Level,
        keys: list[Key],
        list_keyword: str,
        values: Sequence[str],
        *,
        lists: bool = True,
    ) -> list[Match]:
        """Matches at ``level``, ``list_keyword`` taking each of ``values`` (none: any).

        Several values go as \\-lists where the peer matches them (see the module's
        docstring), else one C-FIND each.
        """
        if not values:
            return await self._find_one(level, [*keys, _key(list_keyword)])
        if lists and len(values) > 1 and self.abilities.find_lists is not False:
            found = await self._find_lists(level, keys, list_keyword, values)
            if found is not None:
                return found
        matches: list[Match] = []
        for value in values:
            matches += await self._find_one(level, [*keys, _key(list_keyword, value)])
        return matches

    async def _find_lists(
        self, level: Level, keys: list[Key], list_keyword: str, values: Sequence[str]
    ) -> list[Match] | None:
        """The matches by lists of values; None where one C-FIND per value must do."""
        matches: list[Match] = []
        for chunk in _chunks(values, FIND_LIST):
            listed = _key(list_keyword, "\\".join(chunk))
            try:
                found = await self._find_one(level, [*keys, listed])
            except FailureStatus:
                if not self.association.is_open or self.abilities.find_lists:
                    raise  # lists worked before (or the association is gone): a real failure
                self.abilities.find_lists = False
                self.notes.append(
                    "the peer does not match lists of UIDs in C-FIND: one C-FIND per UID"
                )
                return None
            if not found and len(chunk) > 1 and not self.abilities.find_lists:
                return None  # perhaps it matched the list as one value: ask one by one
            self.abilities.find_lists = self.abilities.find_lists or bool(found)
            matches += found
        return matches

    async def _find_one(self, level: Level, keys: list[Key]) -> list[Match]:
        return await find_values(self.association, self._query(level, keys))

    def _checked(
        self, matches: list[Match], ours: Callable[[Match], bool], unique: str
    ) -> list[Match]:
        """The matches that are ours and name their unique key; the rest are counted."""
        kept = [m for m in matches if m[unique] and ours(m)]
        self._dropped += len(matches) - len(kept)
        return kept

    def _say_dropped(self) -> None:
        if self._dropped:
            self.notes.append(
                f"ignored {self._dropped} C-FIND matches whose keys differ from those asked "
                "(the peer does not honour keys above the level of a query)"
            )
            self._dropped = 0


def split(
    missing: Sequence[PlannedInstance],
    everything: Sequence[PlannedInstance],
    parallel: int,
    *,
    whole_series: bool = True,
    pack: int | None = None,
) -> list[Unit]:
    """Units of work: whole series where all of it is missing, else batches of instances.

    ``whole_series`` says the plan covers entire series (false for IMAGE-level requests,
    where "all planned instances missing" says nothing about the rest of the series).
    A whole series is one request however big, and is not split for parallel
    associations: lists of UIDs cost the PACS a lookup each (on Orthanc a 500-image
    series took 1.7x as long over two associations as over one), and some PACSs take no
    lists at all. A unit never needs more storage contexts than fit in one association
    next to the C-GET context; a series with more SOP classes is split by class.
    Instances whose class the peer did not say share units of unknown classes (``pack``).
    """
    total_by_series: dict[str, int] = {}
    for item in everything:
        series = item.series_instance_uid
        total_by_series[series] = total_by_series.get(series, 0) + 1
    by_series: dict[str, list[PlannedInstance]] = {}
    for item in missing:
        by_series.setdefault(item.series_instance_uid, []).append(item)
    # A lone big series is split too, so parallel associations have something to share.
    batch = BATCH
    if len(by_series) < parallel and missing:
        batch = max(1, min(BATCH, -(-len(missing) // parallel)))
    units: list[Unit] = []
    for series_uid, items in by_series.items():
        classes = _classes(items)
        whole = whole_series and len(items) == total_by_series.get(series_uid, 0)
        if whole and len(classes) <= CLASSES_PER_ASSOCIATION:
            first = items[0]
            units.append(
                Unit(
                    Level.SERIES,
                    first.study_instance_uid,
                    series_uid,
                    (),
                    classes,
                    first.patient_id,
                    pack,
                )
            )
            continue
        chunk: list[PlannedInstance] = []
        for item in sorted(items, key=lambda i: i.sop_class_uid):
            chunk_classes = {i.sop_class_uid for i in chunk} | {item.sop_class_uid}
            if chunk and (len(chunk) >= batch or len(chunk_classes) > CLASSES_PER_ASSOCIATION):
                units.append(_image_unit(chunk, pack))
                chunk = []
            chunk.append(item)
        units.append(_image_unit(chunk, pack))
    return units


def _classes(items: Sequence[PlannedInstance]) -> tuple[str, ...]:
    """The SOP classes of ``items``; () (unknown) if the peer did not say for one."""
    if any(not i.sop_class_uid for i in items):
        return ()
    return tuple(dict.fromkeys(i.sop_class_uid for i in items))


def _image_unit(items: Sequence[PlannedInstance], pack: int | None) -> Unit:
    first = items[0]
    return Unit(
        Level.IMAGE,
        first.study_instance_uid,
        first.series_instance_uid,
        tuple(i.sop_instance_uid for i in items),
        _classes(items),
        first.patient_id,
        pack,
    )


def units_from_keys(request: RetrieveRequest) -> list[Unit] | None:
    """Units from the request's UIDs alone, for a peer that cannot answer C-FIND; None
    when its keys do not name studies by UID (PatientID, AccessionNumber need C-FIND)."""
    studies = request.values("StudyInstanceUID")
    series = request.values("SeriesInstanceUID")
    instances = request.values("SOPInstanceUID")
    patients = request.values("PatientID")
    patient = patients[0] if len(patients) == 1 else ""
    level = request.level
    if (
        not studies
        or request.values("AccessionNumber")
        or len(patients) > 1
        or (level is not Level.STUDY and len(studies) > 1)
    ):
        return None
    if level in (Level.PATIENT, Level.STUDY):
        return [Unit(Level.STUDY, uid, patient_id=patient) for uid in studies]
    if level is Level.SERIES or not instances:
        if not series:
            return [Unit(Level.STUDY, studies[0], patient_id=patient)]
        return [Unit(Level.SERIES, studies[0], uid, patient_id=patient) for uid in series]
    if len(series) != 1:
        return None
    return [
        Unit(Level.IMAGE, studies[0], series[0], tuple(chunk), patient_id=patient)
        for chunk in _chunks(instances, BATCH)
    ]

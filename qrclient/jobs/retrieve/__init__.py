"""Retrieve jobs: plan with C-FIND, skip what the store has, fetch the rest in parallel.

``plan`` finds what a request covers, level by level, checking every match;
``model`` holds the request, its units and the outcome; ``job`` fetches the units by
C-GET or C-MOVE, refuses what is outside the request and asks again for what the peer
could not send; ``listening`` runs our storage listener for moves to us. Each module's
docstring says what it relies on from the peer and what it does without it.
"""

from qrclient.jobs.retrieve.job import RetrieveJob
from qrclient.jobs.retrieve.listening import (
    move_listener,
    note_refusals,
    on_demand_listener,
    run_with_listener,
)
from qrclient.jobs.retrieve.model import (
    PlannedInstance,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    RetrieveStore,
    StoreIndex,
    Unit,
    unit_identifier,
)
from qrclient.jobs.retrieve.plan import BATCH, Abilities, Plan, Planner, split

__all__ = [
    "BATCH",
    "Abilities",
    "Plan",
    "PlannedInstance",
    "Planner",
    "RetrieveJob",
    "RetrieveOutcome",
    "RetrieveRequest",
    "RetrieveState",
    "RetrieveStore",
    "StoreIndex",
    "Unit",
    "move_listener",
    "note_refusals",
    "on_demand_listener",
    "run_with_listener",
    "split",
    "unit_identifier",
]

"""Retrieve jobs: plan with C-FIND, skip what the store has, fetch the rest in parallel.

``plan`` finds what a request covers, level by level, checking every match;
``model`` holds the request, its units and the outcome; ``job`` fetches the units by
C-GET or C-MOVE, refuses what is outside the request and asks again for what the peer
could not send; ``listening`` runs our storage listener for moves to us. Each module's
docstring says what it relies on from the peer and what it does without it.
"""

from qrclient.ops.retrieve.job import RetrieveJob
from qrclient.ops.retrieve.listening import move_listener, note_refusals, run_with_listener
from qrclient.ops.retrieve.model import (
    Method,
    PlannedInstance,
    RetrieveOutcome,
    RetrieveRequest,
    RetrieveState,
    RetrieveStore,
    StoreIndex,
    Unit,
    unit_identifier,
)
from qrclient.ops.retrieve.plan import BATCH, Abilities, Plan, Planner, split

__all__ = [
    "BATCH",
    "Abilities",
    "Method",
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
    "run_with_listener",
    "split",
    "unit_identifier",
]

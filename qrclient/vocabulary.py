"""The words every layer shares: query/retrieve levels, information models, methods.

No imports from qrclient: everything else may depend on this module.
"""

from __future__ import annotations

from enum import Enum, StrEnum

# The query/retrieve SOP classes of the two information models (PS3.4 C.6).
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


class Level(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class Model(StrEnum):
    PATIENT = "patient"
    STUDY = "study"

    @property
    def find_sop_class(self) -> str:
        return PATIENT_ROOT_FIND if self is Model.PATIENT else STUDY_ROOT_FIND

    @property
    def move_sop_class(self) -> str:
        return PATIENT_ROOT_MOVE if self is Model.PATIENT else STUDY_ROOT_MOVE

    @property
    def get_sop_class(self) -> str:
        return PATIENT_ROOT_GET if self is Model.PATIENT else STUDY_ROOT_GET


class Method(Enum):
    GET = "get"
    MOVE = "move"
    AUTO = "auto"  # C-GET where the peer accepts it, else C-MOVE

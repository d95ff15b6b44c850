"""Tables copied from pydicom and pynetdicom, pinned to the libraries.

The network core keeps its own copies of UIDs, statuses, reject and abort reasons,
VRs and storage SOP classes: importing pydicom or pynetdicom for them would cost a
command's start-up (see net/uids.py). These tests check each copy against the library,
so an upgrade of either, or a slip in a copy, fails here instead of drifting. The
keyword table of net/dictionary.py is pinned the same way in tests/test_identifier.py.
"""

from __future__ import annotations

import pytest
from pydicom import uid as pydicom_uid
from pydicom._uid_dict import UID_dictionary
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pynetdicom import sop_class, status
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext

from qrclient.net import uids
from qrclient.net.dictionary import LONG_VRS
from qrclient.net.errors import describe_abort, describe_rejection
from qrclient.net.presentation import NegotiatedContext
from qrclient.net.status import Category, Service, Status
from qrclient.net.storage_classes import (
    ALL_STORAGE_CLASSES,
    COMMON_STORAGE_CLASSES,
    COMPRESSED,
    UNCOMPRESSED,
)
from qrclient.vocabulary import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)

# -- UIDs --------------------------------------------------------------------------------------

PYDICOM_KEYWORDS = {
    uids.IMPLICIT_LE: "ImplicitVRLittleEndian",
    uids.EXPLICIT_LE: "ExplicitVRLittleEndian",
    uids.EXPLICIT_BE: "ExplicitVRBigEndian",
    uids.DEFLATED_LE: "DeflatedExplicitVRLittleEndian",
    uids.APPLICATION_CONTEXT: "DICOMApplicationContext",
    uids.MEDIA_DIRECTORY: "MediaStorageDirectoryStorage",
}
PYNETDICOM_SOP_CLASSES = {
    uids.VERIFICATION: "Verification",
    uids.MODALITY_WORKLIST_FIND: "ModalityWorklistInformationFind",
    PATIENT_ROOT_FIND: "PatientRootQueryRetrieveInformationModelFind",
    PATIENT_ROOT_MOVE: "PatientRootQueryRetrieveInformationModelMove",
    PATIENT_ROOT_GET: "PatientRootQueryRetrieveInformationModelGet",
    STUDY_ROOT_FIND: "StudyRootQueryRetrieveInformationModelFind",
    STUDY_ROOT_MOVE: "StudyRootQueryRetrieveInformationModelMove",
    STUDY_ROOT_GET: "StudyRootQueryRetrieveInformationModelGet",
}


@pytest.mark.parametrize(("value", "keyword"), sorted(PYDICOM_KEYWORDS.items()))
def test_transfer_syntaxes_and_other_uids_are_pydicoms(value: str, keyword: str) -> None:
    assert UID_dictionary[value][4] == keyword


@pytest.mark.parametrize(("value", "name"), sorted(PYNETDICOM_SOP_CLASSES.items()))
def test_sop_classes_are_pynetdicoms(value: str, name: str) -> None:
    assert getattr(sop_class, name) == value


def test_the_storage_root_starts_every_common_storage_class_and_nothing_else() -> None:
    assert all(u.startswith(uids.STORAGE_ROOT) for u in COMMON_STORAGE_CLASSES)
    assert not any(u.startswith(uids.STORAGE_ROOT) for u in PYNETDICOM_SOP_CLASSES)
    assert UID_dictionary["1.2.840.10008.5.1.4.1.1.2"][4] == "CTImageStorage"
    assert "1.2.840.10008.5.1.4.1.1.2".startswith(uids.STORAGE_ROOT)


def test_an_association_holds_as_many_contexts_as_pynetdicom_allows() -> None:
    from pynetdicom import AE

    ae = AE()
    for _ in range(uids.MAX_CONTEXTS):
        ae.add_requested_context(uids.VERIFICATION)
    with pytest.raises(ValueError, match="maximum allowed number"):
        ae.add_requested_context(uids.VERIFICATION)


def test_our_implementation_uid_is_a_valid_uid_of_our_own() -> None:
    assert pydicom_uid.UID(uids.IMPLEMENTATION_CLASS_UID).is_valid
    assert uids.IMPLEMENTATION_CLASS_UID.startswith("2.25.")  # a UUID-derived root
    assert len(uids.IMPLEMENTATION_VERSION_NAME) <= 16  # PS3.7 D.3.3.2.2


# -- storage SOP classes and the syntaxes we store as they are ---------------------------------

# Storage classes outside the storage root (RT delivery instructions, hanging protocols,
# colour palettes, implant templates) are neither proposed for C-GET nor accepted by our
# listener; nor are DICOS (security screening) and DICONDE (non-destructive testing).
NOT_MEDICAL_IMAGING = (".501.", ".601.")


def _current_storage_classes() -> set[str]:
    """pydicom's non-retired storage SOP classes under the storage root."""
    return {
        value
        for value, (name, kind, _, retired, _) in UID_dictionary.items()
        if kind == "SOP Class"
        and "Storage" in name
        and not retired
        and value.startswith(uids.STORAGE_ROOT)
        and not any(part in value for part in NOT_MEDICAL_IMAGING)
    }


def test_we_propose_exactly_pydicoms_current_storage_classes() -> None:
    assert len(set(ALL_STORAGE_CLASSES)) == len(ALL_STORAGE_CLASSES)
    assert set(ALL_STORAGE_CLASSES) == _current_storage_classes()
    assert set(COMMON_STORAGE_CLASSES) < set(ALL_STORAGE_CLASSES)


def test_pynetdicom_knows_every_storage_class_we_propose() -> None:
    known = set(sop_class._STORAGE_CLASSES.values())
    # pynetdicom files protocols and inventories under non-patient objects.
    non_patient = set(sop_class._NON_PATIENT_OBJECT_CLASSES.values())
    assert set(ALL_STORAGE_CLASSES) - known <= non_patient


def test_the_syntaxes_we_store_as_they_are_are_pydicoms() -> None:
    assert set(UNCOMPRESSED) == {
        pydicom_uid.ExplicitVRLittleEndian,
        pydicom_uid.ImplicitVRLittleEndian,
    }
    for syntax in COMPRESSED:
        known = pydicom_uid.UID(syntax)
        assert known.is_transfer_syntax
        assert known.is_little_endian
        assert known.is_compressed or known.is_deflated
        assert not UID_dictionary[syntax][3]  # not retired


# -- VRs ---------------------------------------------------------------------------------------


def test_the_long_vrs_are_pydicoms() -> None:
    assert {str(vr) for vr in EXPLICIT_VR_LENGTH_32} == set(LONG_VRS)


# -- statuses ----------------------------------------------------------------------------------

PYNETDICOM_STATUSES = {
    Service.ECHO: status.VERIFICATION_SERVICE_CLASS_STATUS,
    Service.FIND: status.QR_FIND_SERVICE_CLASS_STATUS,
    Service.MOVE: status.QR_MOVE_SERVICE_CLASS_STATUS,
    Service.GET: status.QR_GET_SERVICE_CLASS_STATUS,
    Service.STORE: status.STORAGE_SERVICE_CLASS_STATUS,
}
CATEGORIES = {
    "Success": Category.SUCCESS,
    "Pending": Category.PENDING,
    "Warning": Category.WARNING,
    "Cancel": Category.CANCEL,
    "Failure": Category.FAILURE,
}


@pytest.mark.parametrize("service", list(Service), ids=lambda s: s.value)
def test_every_status_pynetdicom_knows_has_its_category_and_meaning(service: Service) -> None:
    table = PYNETDICOM_STATUSES[service]
    assert len(table) > 20
    for code, (category, meaning) in table.items():
        ours = Status(code, service)
        assert ours.category is CATEGORIES[category], f"0x{code:04X}"
        if meaning:
            assert ours.description == meaning, f"0x{code:04X}"


# -- A-ASSOCIATE-RJ and A-ABORT reasons --------------------------------------------------------


def _rejection(source: int, reason: int) -> str:
    pdu = A_ASSOCIATE_RJ()
    pdu.result, pdu.source, pdu.reason_diagnostic = 1, source, reason
    return str(pdu.reason_str)


REJECTIONS = [
    (source, reason)
    for source, reasons in ((1, range(1, 11)), (2, range(1, 3)), (3, range(8)))
    for reason in reasons
    if _rejection(source, reason) != "Reserved"
]


@pytest.mark.parametrize(("source", "reason"), REJECTIONS)
def test_every_rejection_reason_is_pynetdicoms(source: int, reason: int) -> None:
    message, hint = describe_rejection(1, source, reason)
    assert message.lower().endswith(f": {_rejection(source, reason).lower()}")
    assert hint


def test_reserved_rejection_reasons_are_shown_by_number() -> None:
    assert _rejection(1, 4) == "Reserved"
    assert describe_rejection(1, 1, 4)[0].endswith(": reason 4")


def _abort(reason: int) -> str:
    pdu = A_ABORT_RQ()
    pdu.source, pdu.reason_diagnostic = 2, reason
    return str(pdu.reason_str)


# PS3.8 table 9-26 names reason 0 "reason-not-specified", pynetdicom "No reason given".
ABORT_WORDING = {0: "reason not specified"}


@pytest.mark.parametrize("reason", [r for r in range(7) if _abort(r) != "Reserved"])
def test_every_abort_reason_is_pynetdicoms(reason: int) -> None:
    message, _ = describe_abort(2, reason)
    expected = ABORT_WORDING.get(reason, _abort(reason).lower())
    assert message.lower().endswith(f": {expected}")


def test_context_results_are_the_ones_pynetdicom_knows() -> None:
    for result in range(5):
        theirs = PresentationContext()
        theirs.result = result
        ours = NegotiatedContext(1, uids.VERIFICATION, result, None)
        assert theirs.status not in ("Unknown", "Pending")
        assert ours.accepted == (theirs.status == "Accepted")
        assert not ours.reason.startswith("result ")  # each is named
    theirs = PresentationContext()
    theirs.result = 3
    assert NegotiatedContext(1, "", 3, None).reason == theirs.status.lower()

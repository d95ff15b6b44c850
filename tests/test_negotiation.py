"""Presentation-context negotiation as pure functions, both roles (qrclient.net.negotiation).

The PDU encodings are tested in test_acse.py, the whole exchange against real peers in
test_association.py and against hostile ones in test_hostile_peers.py; here only what
we propose, what we make of an answer and what our listener answers.
"""

from __future__ import annotations

import pytest

from qrclient.net import pdu
from qrclient.net.acse import (
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    ContextResult,
    ProposedContext,
    RoleSelection,
    UserInformation,
    decode_associate_ac,
)
from qrclient.net.errors import AssociationAborted, AssociationRejected, ProtocolError
from qrclient.net.negotiation import (
    CALLED_AE_NOT_RECOGNISED,
    CALLING_AE_NOT_RECOGNISED,
    Accepted,
    Refused,
    answer_request,
    propose,
    read_answer,
)
from qrclient.net.pdu import PduType
from qrclient.net.presentation import ContextRequest, QueryOptions
from qrclient.net.storage_classes import storage_contexts
from qrclient.net.uids import (
    APPLICATION_CONTEXT,
    EXPLICIT_LE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_LE,
    VERIFICATION,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
RELATIONAL = QueryOptions(relational=True)


def test_we_propose_odd_context_ids_in_order_with_our_identity() -> None:
    request = propose(
        "PACS", "ME", 32768, [ContextRequest(VERIFICATION), ContextRequest(STUDY_FIND)]
    )
    assert (request.called_ae, request.calling_ae) == ("PACS", "ME")
    assert request.application_context == APPLICATION_CONTEXT
    assert request.contexts == (
        ProposedContext(1, VERIFICATION, (EXPLICIT_LE, IMPLICIT_LE)),
        ProposedContext(3, STUDY_FIND, (EXPLICIT_LE, IMPLICIT_LE)),
    )
    assert request.user.max_pdu == 32768
    assert request.user.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert request.user.implementation_version_name == IMPLEMENTATION_VERSION_NAME
    assert request.user.roles == ()
    assert request.user.extended == ()


def test_roles_and_query_options_are_proposed_once_per_sop_class() -> None:
    contexts = [
        ContextRequest(STUDY_FIND, query_options=RELATIONAL),
        ContextRequest(STUDY_FIND, query_options=QueryOptions()),  # the first decides
        ContextRequest(VERIFICATION, query_options=QueryOptions()),  # nothing wanted
        ContextRequest(STUDY_GET),
        *storage_contexts([CT]),  # one context per syntax group, each asking the SCP role
    ]
    request = propose("PACS", "ME", 16384, contexts)
    assert [c.context_id for c in request.contexts] == list(range(1, 2 * len(contexts), 2))
    assert request.user.roles == (RoleSelection(CT, scu=False, scp=True),)
    assert [(e.sop_class, e.info) for e in request.user.extended] == [
        (STUDY_FIND, RELATIONAL.encode())
    ]


REQUEST = propose("PACS", "ME", 16384, [ContextRequest(VERIFICATION), ContextRequest(STUDY_FIND)])


def accept(*results: ContextResult, user: UserInformation | None = None) -> bytes:
    answer = AssociateAccept(
        "PACS", "ME", APPLICATION_CONTEXT, results, user or UserInformation(max_pdu=4096)
    )
    return answer.encode()[pdu.HEADER_LENGTH :]


def test_an_accept_settles_each_context_and_keeps_the_peers_user_information() -> None:
    body = accept(ContextResult(1, 0, IMPLICIT_LE), ContextResult(3, 3, None))
    answer, contexts = read_answer(REQUEST, PduType.ASSOCIATE_AC, body)
    assert answer.user.max_pdu == 4096
    assert [(c.context_id, c.accepted, c.transfer_syntax) for c in contexts] == [
        (1, True, IMPLICIT_LE),
        (3, False, None),
    ]
    assert contexts[1].reason == "abstract syntax not supported"


def test_a_rejection_is_raised_with_its_result_source_and_reason() -> None:
    body = AssociateReject(result=1, source=1, reason=7).encode()[pdu.HEADER_LENGTH :]
    with pytest.raises(AssociationRejected) as caught:
        read_answer(REQUEST, PduType.ASSOCIATE_RJ, body)
    assert (caught.value.result, caught.value.source, caught.value.reason) == (1, 1, 7)
    assert "called AE title" in caught.value.message


def test_an_abort_or_another_pdu_instead_of_an_answer_is_raised_typed() -> None:
    with pytest.raises(AssociationAborted):
        read_answer(REQUEST, PduType.ABORT, pdu.encode_abort()[pdu.HEADER_LENGTH :])
    with pytest.raises(ProtocolError, match="PDU type 0x04"):
        read_answer(REQUEST, PduType.P_DATA_TF, b"")
    with pytest.raises(ProtocolError):
        read_answer(REQUEST, PduType.ASSOCIATE_AC, b"\x00\x01")


def listener_answer(
    called: str, allowed: set[str], *contexts: ProposedContext
) -> Accepted | Refused:
    proposed = contexts or (ProposedContext(1, VERIFICATION, (EXPLICIT_LE,)),)
    request = AssociateRequest(
        called, "MOVER", APPLICATION_CONTEXT, proposed, UserInformation(max_pdu=8192)
    )
    return answer_request(
        request,
        ae_title="QRLISTEN",
        address="10.0.0.7",
        allows=lambda calling, address: (calling, address) in {(a, "10.0.0.7") for a in allowed},
        max_pdu=65536,
    )


def test_the_listener_refuses_a_call_to_another_ae_title() -> None:
    answer = listener_answer("SOMEONE", {"MOVER"})
    assert isinstance(answer, Refused)
    assert answer.answer == AssociateReject(result=1, source=1, reason=CALLED_AE_NOT_RECOGNISED)
    assert answer.why == "called AE title 'SOMEONE' is not ours ('QRLISTEN')"


def test_the_listener_refuses_a_caller_it_does_not_expect() -> None:
    answer = listener_answer("QRLISTEN", {"OTHER"})
    assert isinstance(answer, Refused)
    assert answer.answer.reason == CALLING_AE_NOT_RECOGNISED
    assert answer.why == "calling AE title 'MOVER' from 10.0.0.7 is not a peer we are moving from"


def test_the_listener_accepts_an_expected_caller_with_its_own_limits() -> None:
    answer = listener_answer(
        "QRLISTEN",
        {"MOVER"},
        ProposedContext(3, CT, (IMPLICIT_LE, EXPLICIT_LE)),
        ProposedContext(1, STUDY_FIND, (EXPLICIT_LE,)),
    )
    assert isinstance(answer, Accepted)
    decoded = decode_associate_ac(answer.answer.encode()[pdu.HEADER_LENGTH :])
    assert (decoded.called_ae, decoded.calling_ae) == ("QRLISTEN", "MOVER")
    assert decoded.user.max_pdu == 65536
    assert decoded.user.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert decoded.user.roles == ()  # default roles: the caller is SCU, we are SCP
    assert [(r.context_id, r.result, r.transfer_syntax) for r in decoded.results] == [
        (1, 3, EXPLICIT_LE),  # not a storage SOP class
        (3, 0, EXPLICIT_LE),
    ]
    assert [c.as_scp for c in answer.contexts] == [False, True]

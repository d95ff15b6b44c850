"""Presentation-context negotiation for both roles, as pure functions (PS3.8 9.3, PS3.7 D.3.3).

As requestor: what we propose (``propose``) and what we make of the peer's answer
(``read_answer``). As acceptor, on our storage listener: whom we accept and which of
the proposed contexts (``answer_request``). No I/O here: the association and the
listener send and receive the PDUs these build and read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qrclient.net import acse, pdu
from qrclient.net.acse import (
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    ContextResult,
    ExtendedNegotiation,
    ProposedContext,
    RoleSelection,
    UserInformation,
)
from qrclient.net.errors import (
    AssociationAborted,
    AssociationRejected,
    ProtocolError,
    describe_abort,
)
from qrclient.net.pdu import PduType
from qrclient.net.presentation import ContextRequest, NegotiatedContext
from qrclient.net.storage_classes import COMPRESSED, UNCOMPRESSED
from qrclient.net.uids import (
    APPLICATION_CONTEXT,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    STORAGE_ROOT,
    VERIFICATION,
)

# What our listener stores as it arrives: uncompressed first, then compressed.
ACCEPTED_SYNTAXES = (*UNCOMPRESSED, *COMPRESSED)
# A-ASSOCIATE-RJ reasons (PS3.8 9.3.4): permanent, by the service user.
CALLING_AE_NOT_RECOGNISED = 3
CALLED_AE_NOT_RECOGNISED = 7


# -- as requestor ----------------------------------------------------------------------------


def propose(
    called_ae: str, calling_ae: str, max_pdu: int, contexts: Sequence[ContextRequest]
) -> AssociateRequest:
    """Our A-ASSOCIATE-RQ: the contexts numbered 1, 3, 5, ... in the order given."""
    return AssociateRequest(
        called_ae=called_ae,
        calling_ae=calling_ae,
        application_context=APPLICATION_CONTEXT,
        contexts=tuple(
            ProposedContext(2 * index + 1, c.abstract_syntax, tuple(c.transfer_syntaxes))
            for index, c in enumerate(contexts)
        ),
        user=_user_information(max_pdu, contexts),
    )


def _user_information(max_pdu: int, contexts: Sequence[ContextRequest]) -> UserInformation:
    roles: list[RoleSelection] = []
    extended: list[ExtendedNegotiation] = []
    seen: set[str] = set()
    for request in contexts:
        if request.abstract_syntax in seen:
            continue  # one sub-item per SOP class: the first request for it decides
        seen.add(request.abstract_syntax)
        if request.scp_role:
            roles.append(RoleSelection(request.abstract_syntax, scu=False, scp=True))
        if request.query_options and request.query_options.wanted:
            options = request.query_options.encode()
            extended.append(ExtendedNegotiation(request.abstract_syntax, options))
    return UserInformation(
        max_pdu=max_pdu,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        roles=tuple(roles),
        extended=tuple(extended),
    )


def read_answer(
    request: AssociateRequest, pdu_type: int, body: bytes
) -> tuple[AssociateAccept, list[NegotiatedContext]]:
    """The peer's A-ASSOCIATE-AC to ``request`` and the contexts it settles.

    Raises AssociationRejected for an A-ASSOCIATE-RJ, AssociationAborted for an
    A-ABORT, ProtocolError for anything else or an answer that does not fit the request.
    """
    if pdu_type == PduType.ASSOCIATE_RJ:
        rj = acse.decode_associate_rj(body)
        raise AssociationRejected(rj.result, rj.source, rj.reason)
    if pdu_type == PduType.ABORT:
        raise AssociationAborted(*describe_abort(*pdu.decode_abort(body)))
    if pdu_type != PduType.ASSOCIATE_AC:
        raise ProtocolError(
            f"the peer answered A-ASSOCIATE-RQ with PDU type 0x{pdu_type:02X}",
            "it does not speak the DICOM upper layer protocol on this port",
        )
    accept = acse.decode_associate_ac(body)
    return accept, match_contexts(request, accept)


def match_contexts(request: AssociateRequest, accept: AssociateAccept) -> list[NegotiatedContext]:
    """Our proposals with the peer's answers, checked against what we proposed."""
    by_id = {c.context_id: c for c in request.contexts}
    answers: dict[int, acse.ContextResult] = {}
    for answer in accept.results:
        ours = by_id.get(answer.context_id)
        if ours is None:
            raise ProtocolError(
                f"the peer answered presentation context {answer.context_id}, never proposed",
                "the peer's DICOM stack is broken",
            )
        syntax = answer.transfer_syntax
        if answer.result == acse.ACCEPTANCE and syntax not in ours.transfer_syntaxes:
            raise ProtocolError(
                f"the peer accepted presentation context {answer.context_id} with transfer "
                f"syntax {syntax}, never proposed for it",
                "the peer's DICOM stack is broken",
            )
        answers[answer.context_id] = answer
    missing = sorted(by_id.keys() - answers.keys())
    if missing:
        raise ProtocolError(
            f"the peer's A-ASSOCIATE-AC does not answer presentation context {missing[0]}",
            "the peer's DICOM stack is broken",
        )
    return [
        NegotiatedContext(
            context_id=ours.context_id,
            abstract_syntax=ours.abstract_syntax,
            result=answers[ours.context_id].result,
            transfer_syntax=answers[ours.context_id].transfer_syntax,
            as_scp=(
                answers[ours.context_id].result == acse.ACCEPTANCE
                and scp_role_granted(request.user, accept.user, ours.abstract_syntax)
            ),
        )
        for ours in sorted(request.contexts, key=lambda c: c.context_id)
    ]


def scp_role_granted(ours: UserInformation, theirs: UserInformation, sop_class: str) -> bool:
    """Whether we may act as SCP for this SOP class (PS3.7 D.3.3.4).

    Only if we proposed the SCP role and the acceptor answered it with SCP role 1: an
    acceptor that does not answer leaves the default roles, we being SCU only.
    """
    proposed, answered = ours.role(sop_class), theirs.role(sop_class)
    return bool(proposed and proposed.scp and answered and answered.scp)


# -- as acceptor (our storage listener) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    answer: AssociateAccept
    contexts: list[NegotiatedContext]


@dataclass(frozen=True, slots=True)
class Refused:
    answer: AssociateReject
    why: str  # for the listener's refusals and the log


def answer_request(
    request: AssociateRequest,
    *,
    ae_title: str,
    address: str,
    allows: Callable[[str, str], bool],
    max_pdu: int,
) -> Accepted | Refused:
    """Our answer to an A-ASSOCIATE-RQ from ``address``: refused unless it calls our AE
    title and ``allows(calling AE title, address)``; else every context we can serve."""
    calling, called = request.calling_ae, request.called_ae
    if called != ae_title:
        why = f"called AE title {called!r} is not ours ({ae_title!r})"
        return Refused(_reject(CALLED_AE_NOT_RECOGNISED), why)
    if not allows(calling, address):
        why = f"calling AE title {calling!r} from {address} is not a peer we are moving from"
        return Refused(_reject(CALLING_AE_NOT_RECOGNISED), why)
    contexts = accept_contexts(request.contexts)
    # No role selection answered: the default roles (we are SCP) are what storage needs.
    answer = AssociateAccept(
        called_ae=request.called_ae,
        calling_ae=request.calling_ae,
        application_context=request.application_context,
        results=tuple(ContextResult(c.context_id, c.result, c.transfer_syntax) for c in contexts),
        user=UserInformation(
            max_pdu=max_pdu,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        ),
    )
    return Accepted(answer, contexts)


def _reject(reason: int) -> AssociateReject:
    return AssociateReject(result=1, source=1, reason=reason)  # permanent, by the user


def accept_contexts(proposed: Sequence[ProposedContext]) -> list[NegotiatedContext]:
    """Accept Verification and every storage SOP class, in a syntax we store as is.

    Of the proposed syntaxes, the one first in ACCEPTED_SYNTAXES wins (uncompressed
    before compressed). A rejected context echoes its first proposed syntax.
    """
    contexts = []
    for context in sorted(proposed, key=lambda c: c.context_id):
        abstract = context.abstract_syntax
        result, syntax = acse.ABSTRACT_SYNTAX_NOT_SUPPORTED, context.transfer_syntaxes[0]
        if abstract == VERIFICATION or abstract.startswith(STORAGE_ROOT):
            ours = [ts for ts in ACCEPTED_SYNTAXES if ts in context.transfer_syntaxes]
            if ours:
                result, syntax = acse.ACCEPTANCE, ours[0]
            else:
                result = acse.TRANSFER_SYNTAXES_NOT_SUPPORTED
        accepted = result == acse.ACCEPTANCE
        contexts.append(
            NegotiatedContext(context.context_id, abstract, result, syntax, as_scp=accepted)
        )
    return contexts

"""The A-ASSOCIATE codec (qrclient.net.acse) and the negotiation built on it.

Round trips of our own PDUs; interoperability with pynetdicom's encoder and decoder (an
independent implementation of PS3.8); malformed input refused with ProtocolError; the
requestor's and the acceptor's negotiation; the SCP role against the real Orthanc.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import replace
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext

from qrclient.net import ContextRequest, Peer, ProtocolError, open_association
from qrclient.net.acse import (
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    ContextResult,
    ExtendedNegotiation,
    ProposedContext,
    RoleSelection,
    UserInformation,
    decode_associate_ac,
    decode_associate_rj,
    decode_associate_rq,
)
from qrclient.net.negotiation import Accepted, accept_contexts, answer_request, match_contexts
from qrclient.net.pdu import HEADER, HEADER_LENGTH, PduType
from qrclient.net.storage_classes import storage_contexts
from qrclient.net.uids import APPLICATION_CONTEXT, VERIFICATION
from qrclient.vocabulary import STUDY_ROOT_FIND, STUDY_ROOT_GET
from tests.test_pdu_properties import mutate

T = TypeVar("T")
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
BIG_ENDIAN = "1.2.840.10008.1.2.2"  # retired; not a syntax our listener accepts

USER = UserInformation(
    max_pdu=16384,
    implementation_class_uid="1.2.3.4.5",
    implementation_version_name="TEST_1",
    roles=(RoleSelection(CT, scu=False, scp=True), RoleSelection(MR, scu=True, scp=True)),
    extended=(ExtendedNegotiation(STUDY_ROOT_FIND, b"\x01\x00\x01"),),
)
REQUEST = AssociateRequest(
    called_ae="PACS",
    calling_ae="QRCLIENT",
    application_context=APPLICATION_CONTEXT,
    contexts=(
        ProposedContext(1, VERIFICATION, (EXPLICIT,)),
        ProposedContext(3, STUDY_ROOT_FIND, (EXPLICIT, IMPLICIT)),
        ProposedContext(5, CT, (EXPLICIT, IMPLICIT)),
        ProposedContext(7, CT, (JPEG_BASELINE,)),
        ProposedContext(9, MR, (EXPLICIT,)),
    ),
    user=USER,
)
ACCEPT = AssociateAccept(
    called_ae="PACS",
    calling_ae="QRCLIENT",
    application_context=APPLICATION_CONTEXT,
    results=(
        ContextResult(1, 0, EXPLICIT),
        ContextResult(3, 0, IMPLICIT),
        ContextResult(5, 0, EXPLICIT),
        ContextResult(7, 4, None),  # rejected: its transfer syntax is not significant
        ContextResult(9, 3, EXPLICIT),
    ),
    user=UserInformation(
        max_pdu=32768,
        implementation_class_uid="1.2.3",
        implementation_version_name="PEER",
        roles=(RoleSelection(CT, scu=False, scp=True),),
        extended=(ExtendedNegotiation(STUDY_ROOT_FIND, b"\x01"),),
    ),
)


def body(pdu: bytes) -> bytes:
    """The body of an encoded PDU, as PduReader hands it out (checking the header)."""
    _, length = HEADER.unpack_from(pdu)
    assert length == len(pdu) - HEADER_LENGTH
    return pdu[HEADER_LENGTH:]


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(value)) + value


def fixed(called: bytes = b"PACS", calling: bytes = b"QRCLIENT") -> bytes:
    """The 68 fixed bytes of an A-ASSOCIATE-RQ or -AC body."""
    return b"\x00\x01\x00\x00" + called.ljust(16) + calling.ljust(16) + bytes(32)


APPLICATION = item(0x10, APPLICATION_CONTEXT.encode())
VERIFICATION_RQ = item(
    0x20, b"\x01\x00\x00\x00" + item(0x30, VERIFICATION.encode()) + item(0x40, EXPLICIT.encode())
)
VERIFICATION_AC = item(0x21, b"\x01\x00\x00\x00" + item(0x40, EXPLICIT.encode()))
MAX_LENGTH = item(0x51, struct.pack(">L", 16384))
USER_ITEM = item(0x50, MAX_LENGTH)


def role_item(sop_class: str, scu: int, scp: int) -> bytes:
    uid = sop_class.encode()
    return item(0x54, struct.pack(">H", len(uid)) + uid + bytes((scu, scp)))


# -- round trips and the wire layout -----------------------------------------------------


def test_associate_rq_round_trips() -> None:
    encoded = REQUEST.encode()
    assert encoded[0] == PduType.ASSOCIATE_RQ
    assert body(encoded)[:68] == fixed()  # protocol version 1, AE titles space-padded
    assert decode_associate_rq(body(encoded)) == REQUEST


def test_associate_ac_round_trips() -> None:
    encoded = ACCEPT.encode()
    assert encoded[0] == PduType.ASSOCIATE_AC
    assert decode_associate_ac(body(encoded)) == ACCEPT


def test_associate_rj_round_trips() -> None:
    encoded = AssociateReject(2, 3, 1).encode()
    assert encoded == b"\x03\x00\x00\x00\x00\x04\x00\x02\x03\x01"
    assert decode_associate_rj(body(encoded)) == AssociateReject(2, 3, 1)


def test_user_information_sub_items_come_in_increasing_type_order() -> None:
    encoded = USER.encode()
    types = []
    offset = 4
    while offset < len(encoded):
        types.append(encoded[offset])
        offset += 4 + struct.unpack_from(">H", encoded, offset + 2)[0]
    assert types == [0x51, 0x52, 0x54, 0x54, 0x55, 0x56]


def test_uids_go_unpadded_and_padding_is_stripped_on_input() -> None:
    assert APPLICATION in REQUEST.encode()  # 21 bytes: odd, yet not padded
    context = item(
        0x20,
        b"\x01\x00\x00\x00"
        + item(0x30, VERIFICATION.encode() + b"\x00")
        + item(0x40, EXPLICIT.encode() + b"\x00")
        + item(0x40, IMPLICIT.encode() + b" "),
    )
    user = item(0x50, MAX_LENGTH + item(0x52, b"1.2.3.4\x00"))
    request = decode_associate_rq(fixed(b"PACS", b"  CALLER") + APPLICATION + context + user)
    assert request.contexts == (ProposedContext(1, VERIFICATION, (EXPLICIT, IMPLICIT)),)
    assert request.user.implementation_class_uid == "1.2.3.4"
    assert (request.called_ae, request.calling_ae) == ("PACS", "CALLER")


@pytest.mark.parametrize(
    "change",
    [
        lambda r: replace(r, called_ae="X" * 17),
        lambda r: replace(r, called_ae=" "),
        lambda r: replace(r, calling_ae="QRCLIENTÉ"),
        lambda r: replace(r, application_context="1." * 40),
        lambda r: replace(r, contexts=(ProposedContext(256, CT, (EXPLICIT,)),)),
        lambda r: replace(r, contexts=(ProposedContext(1, CT, ()),)),
        lambda r: replace(r, user=replace(r.user, implementation_version_name="X" * 17)),
    ],
)
def test_what_cannot_be_encoded_is_a_value_error(
    change: Callable[[AssociateRequest], AssociateRequest],
) -> None:
    with pytest.raises(ValueError, match="AE title|UID|context|version name"):
        change(REQUEST).encode()


# -- interoperability with pynetdicom ------------------------------------------------------


def pynetdicom_ac() -> bytes:
    """An A-ASSOCIATE-AC from pynetdicom's encoder, with sub-items we skip."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID(APPLICATION_CONTEXT)
    primitive.calling_ae_title = "QRCLIENT"
    primitive.called_ae_title = "PACS"
    primitive.result = 0
    results = []
    for context_id, result, syntax in ((1, 0, EXPLICIT), (3, 0, IMPLICIT), (5, 3, EXPLICIT)):
        context = PresentationContext()
        context.context_id = context_id
        context.result = result
        context.transfer_syntax = [UID(syntax)]
        results.append(context)
    primitive.presentation_context_definition_results_list = results
    length = MaximumLengthNotification()
    length.maximum_length_received = 28672
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = UID("1.2.826.0.1.3680043.9.3811.3.0.4")
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNETDICOM_304"
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 6
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = UID(CT)
    role.scu_role = False
    role.scp_role = True
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid = UID(STUDY_ROOT_FIND)
    extended.service_class_application_information = b"\x01\x00"
    identity = UserIdentityNegotiation()
    identity.server_response = b"token"
    primitive.user_information = [length, class_uid, version, window, role, extended, identity]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def test_an_ac_from_pynetdicoms_encoder_decodes() -> None:
    encoded = pynetdicom_ac()
    # Sub-items we skip are there: asynchronous operations window, user identity.
    assert b"\x53\x00\x00\x04" in encoded
    assert b"\x59\x00\x00\x07" in encoded
    accept = decode_associate_ac(body(encoded))
    assert accept.application_context == APPLICATION_CONTEXT
    assert accept.results == (
        ContextResult(1, 0, EXPLICIT),
        ContextResult(3, 0, IMPLICIT),
        ContextResult(5, 3, EXPLICIT),
    )
    assert accept.user == UserInformation(
        max_pdu=28672,
        implementation_class_uid="1.2.826.0.1.3680043.9.3811.3.0.4",
        implementation_version_name="PYNETDICOM_304",
        roles=(RoleSelection(CT, scu=False, scp=True),),
        extended=(ExtendedNegotiation(STUDY_ROOT_FIND, b"\x01\x00"),),
    )


def test_an_rq_from_pynetdicoms_encoder_decodes() -> None:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID(APPLICATION_CONTEXT)
    primitive.calling_ae_title = "MODALITY"
    primitive.called_ae_title = "QRLISTEN"
    context = PresentationContext()
    context.context_id = 1
    context.abstract_syntax = UID(CT)
    context.transfer_syntax = [UID(IMPLICIT), UID(JPEG_BASELINE)]
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 0
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"user"
    identity.secondary_field = b"password"
    primitive.user_information = [length, identity]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    request = decode_associate_rq(body(bytes(pdu.encode())))
    assert (request.called_ae, request.calling_ae) == ("QRLISTEN", "MODALITY")
    assert request.contexts == (ProposedContext(1, CT, (IMPLICIT, JPEG_BASELINE)),)
    assert request.user == UserInformation(max_pdu=0)


def of_type(items: Iterable[object], kind: type[T]) -> list[T]:
    return [i for i in items if isinstance(i, kind)]


def test_pynetdicoms_decoder_reads_our_rq() -> None:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(REQUEST.encode())
    primitive = pdu.to_primitive()
    assert primitive.called_ae_title == "PACS"
    assert primitive.calling_ae_title == "QRCLIENT"
    assert primitive.application_context_name == APPLICATION_CONTEXT
    contexts = primitive.presentation_context_definition_list
    assert [(c.context_id, c.abstract_syntax, c.transfer_syntax) for c in contexts] == [
        (c.context_id, c.abstract_syntax, list(c.transfer_syntaxes)) for c in REQUEST.contexts
    ]
    items = primitive.user_information
    (length,) = of_type(items, MaximumLengthNotification)
    assert length.maximum_length_received == 16384
    (class_uid,) = of_type(items, ImplementationClassUIDNotification)
    assert class_uid.implementation_class_uid == "1.2.3.4.5"
    (version,) = of_type(items, ImplementationVersionNameNotification)
    assert version.implementation_version_name == "TEST_1"
    roles = of_type(items, SCP_SCU_RoleSelectionNegotiation)
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in roles] == [
        (CT, False, True),
        (MR, True, True),
    ]
    (extended,) = of_type(items, SOPClassExtendedNegotiation)
    assert extended.sop_class_uid == STUDY_ROOT_FIND
    assert extended.service_class_application_information == b"\x01\x00\x01"


def test_pynetdicoms_decoder_reads_our_ac() -> None:
    pdu = A_ASSOCIATE_AC()
    pdu.decode(ACCEPT.encode())
    primitive = pdu.to_primitive()
    results = primitive.presentation_context_definition_results_list
    assert [(c.context_id, c.result) for c in results] == [(1, 0), (3, 0), (5, 0), (7, 4), (9, 3)]
    assert results[0].transfer_syntax == [EXPLICIT]


# -- malformed input -----------------------------------------------------------------------


def rq(*items: bytes) -> bytes:
    return fixed() + b"".join(items)


RQ_CASES = [
    pytest.param(b"", "0 bytes, fewer than its 68", id="empty"),
    pytest.param(fixed()[:40], "40 bytes, fewer than its 68", id="inside-the-fixed-fields"),
    pytest.param(rq(APPLICATION, USER_ITEM), "no presentation context item", id="no-context"),
    pytest.param(rq(VERIFICATION_RQ, USER_ITEM), "no application context item", id="no-app"),
    pytest.param(rq(APPLICATION, VERIFICATION_RQ), "no user information item", id="no-user"),
    pytest.param(
        rq(APPLICATION, APPLICATION, VERIFICATION_RQ, USER_ITEM),
        "a second application context item",
        id="two-application-contexts",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, VERIFICATION_RQ, USER_ITEM),
        "presentation context ID 1 appears twice",
        id="duplicate-context-id",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_AC, USER_ITEM),
        "an item of type 0x21 at byte 99, out of place",
        id="ac-context-in-an-rq",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, USER_ITEM)[:-1],
        "item 0x50 at byte",
        id="truncated",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, USER_ITEM, b"\x10\x00"),
        "2 stray bytes",
        id="trailing-bytes",
    ),
    pytest.param(
        rq(APPLICATION, item(0x20, b"\x01\x00\x00"), USER_ITEM),
        "a presentation context item of 3 bytes",
        id="context-item-too-short",
    ),
    pytest.param(
        rq(APPLICATION, item(0x20, b"\x01\x00\x00\x00" + item(0x40, b"1.2")), USER_ITEM),
        "presentation context 1 has no abstract syntax",
        id="no-abstract-syntax",
    ),
    pytest.param(
        rq(APPLICATION, item(0x20, b"\x01\x00\x00\x00" + item(0x30, b"1.2")), USER_ITEM),
        "presentation context 1 has no transfer syntax",
        id="no-transfer-syntax",
    ),
    pytest.param(
        rq(
            APPLICATION,
            item(0x20, b"\x01\x00\x00\x00" + item(0x30, b"1.2") + item(0x30, b"1.3")),
            USER_ITEM,
        ),
        "presentation context 1 has two abstract syntaxes",
        id="two-abstract-syntaxes",
    ),
    pytest.param(
        rq(APPLICATION, item(0x20, b"\x01\x00\x00\x00" + item(0x30, b"\x00\x00")), USER_ITEM),
        "an empty abstract syntax",
        id="empty-abstract-syntax",
    ),
    pytest.param(
        rq(APPLICATION, item(0x20, b"\x00\x00\x00\x00" + VERIFICATION_RQ[8:]), USER_ITEM),
        "a presentation context ID 0",
        id="context-id-0",
    ),
    pytest.param(
        rq(item(0x10, b"1." * 32 + b"1"), VERIFICATION_RQ, USER_ITEM),
        "the application context name has 65 characters, over 64",
        id="uid-too-long",
    ),
    pytest.param(
        rq(item(0x10, b"1.2.\xff"), VERIFICATION_RQ, USER_ITEM),
        "the application context name b'1.2.\\xff' is not ASCII",
        id="uid-not-ascii",
    ),
    pytest.param(
        fixed(called=b"") + APPLICATION + VERIFICATION_RQ + USER_ITEM,
        "a blank called AE title",
        id="blank-called-ae",
    ),
    pytest.param(
        fixed(calling=b"BAD\x01AE") + APPLICATION + VERIFICATION_RQ + USER_ITEM,
        "has characters AE titles may not have",
        id="control-character-in-ae",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, item(0x50, item(0x51, b"\x00\x00\x40"))),
        "a maximum length sub-item of 3 bytes, not 4",
        id="short-maximum-length",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, item(0x50, MAX_LENGTH + MAX_LENGTH)),
        "a second maximum length sub-item",
        id="two-maximum-lengths",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, item(0x50, item(0x54, b"\x00\x09" + b"1.2.3"))),
        "has a UID longer than itself",
        id="role-uid-overruns",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, item(0x50, role_item(CT, 0, 2))),
        "bad roles",
        id="role-neither-0-nor-1",
    ),
    pytest.param(
        rq(APPLICATION, VERIFICATION_RQ, item(0x50, item(0x56, b"\x00"))),
        "the extended negotiation sub-item at byte",
        id="extended-negotiation-of-1-byte",
    ),
]


def test_odd_bytes_in_the_peers_implementation_names_are_shown_replaced() -> None:
    # Shown to the user, never acted on: not worth refusing an association for.
    user = item(0x50, item(0x52, b"1.2.\xff") + item(0x55, "ÄÖ".encode()))
    request = decode_associate_rq(rq(APPLICATION, VERIFICATION_RQ, user))
    assert request.user.implementation_class_uid == "1.2.\ufffd"
    assert request.user.implementation_version_name == "\ufffd" * 4


@pytest.mark.parametrize(("data", "words"), RQ_CASES)
def test_a_malformed_rq_is_refused_with_a_protocol_error(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_associate_rq(data)
    assert caught.value.message.startswith("the peer's A-ASSOCIATE-RQ does not decode (")
    assert words in caught.value.message
    assert caught.value.hint


def ac(*items: bytes) -> bytes:
    return fixed() + b"".join(items)


AC_CASES = [
    pytest.param(b"\xff" * 40, "40 bytes, fewer than its 68", id="garbage"),
    pytest.param(ac(VERIFICATION_AC, USER_ITEM), "no application context item", id="no-app"),
    pytest.param(
        ac(APPLICATION, VERIFICATION_RQ, USER_ITEM),
        "an item of type 0x20 at byte 99, out of place",
        id="rq-context-in-an-ac",
    ),
    pytest.param(
        ac(APPLICATION, item(0x21, b"\x01\x00\x00\x00"), USER_ITEM),
        "presentation context 1 is accepted without transfer syntax",
        id="accepted-without-syntax",
    ),
    pytest.param(
        ac(
            APPLICATION,
            item(0x21, b"\x01\x00\x00\x00" + item(0x40, b"1.2") + item(0x40, b"1.3")),
            USER_ITEM,
        ),
        "presentation context 1 has 2 transfer syntaxes",
        id="two-syntaxes",
    ),
    pytest.param(
        ac(
            APPLICATION,
            item(0x21, b"\x01\x00\x00\x00" + item(0x30, b"1.2") + item(0x40, b"1.3")),
            USER_ITEM,
        ),
        "an item of type 0x30 at byte",
        id="abstract-syntax-in-an-ac",
    ),
]


@pytest.mark.parametrize(("data", "words"), AC_CASES)
def test_a_malformed_ac_is_refused_with_a_protocol_error(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_associate_ac(data)
    assert caught.value.message.startswith("the peer's A-ASSOCIATE-AC does not decode (")
    assert words in caught.value.message


@pytest.mark.parametrize("data", [b"", b"\x00\x01\x01", b"\x00\x01\x01\x01\x00"])
def test_an_rj_of_other_than_4_bytes_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError, match=f"A-ASSOCIATE-RJ does not decode \\({len(data)} bytes"):
        decode_associate_rj(data)


def test_every_truncation_of_a_valid_pdu_is_refused() -> None:
    for decode, encoded in (
        (decode_associate_rq, REQUEST.encode()),
        (decode_associate_ac, ACCEPT.encode()),
    ):
        whole = body(encoded)
        for end in range(len(whole)):
            with pytest.raises(ProtocolError):
                decode(whole[:end])


def test_unknown_items_and_sub_items_are_skipped() -> None:
    """PS3.8 9.3.1: items of unrecognised types are ignored; so are unused sub-items."""
    window = item(0x53, b"\x00\x01\x00\x01")
    identity = item(0x58, b"\x01\x00\x00\x04user\x00\x00")
    data = rq(
        APPLICATION,
        item(0x77, b"future item"),
        item(
            0x20,
            b"\x01\x00\x00\x00"
            + item(0x30, VERIFICATION.encode())
            + item(0x7F, b"?")
            + item(0x40, EXPLICIT.encode()),
        ),
        item(0x50, MAX_LENGTH + window + identity + item(0x5F, b"future sub-item")),
    )
    request = decode_associate_rq(data)
    assert request.contexts == (ProposedContext(1, VERIFICATION, (EXPLICIT,)),)
    assert request.user == UserInformation(max_pdu=16384)


def test_a_rejected_context_may_come_without_a_usable_transfer_syntax() -> None:
    empty = item(0x21, b"\x03\x00\x03\x00" + item(0x40, b""))
    absent = item(0x21, b"\x05\x00\x04\x00")
    accept = decode_associate_ac(ac(APPLICATION, VERIFICATION_AC, empty, absent, USER_ITEM))
    assert accept.results[1:] == (ContextResult(3, 3, None), ContextResult(5, 4, None))


def test_repeated_role_selection_answers_are_accepted() -> None:
    """DCMTK (Orthanc) answers role selection once per accepted presentation context."""
    user = item(0x50, MAX_LENGTH + role_item(CT, 0, 1) + role_item(CT, 0, 1))
    accept = decode_associate_ac(ac(APPLICATION, VERIFICATION_AC, user))
    assert accept.user.role(CT) == RoleSelection(CT, scu=False, scp=True)
    assert accept.user.role(MR) is None


MUTATIONS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


@given(edits=MUTATIONS)
def test_a_mutated_rq_decodes_or_is_refused_typed(edits: list[tuple[int, int, int]]) -> None:
    data = mutate(body(REQUEST.encode()), edits)
    try:
        request = decode_associate_rq(data)
    except ProtocolError:
        return
    # What decodes re-encodes to the same meaning (when it is ours to encode at all).
    try:
        again = request.encode()
    except ValueError:
        return
    assert decode_associate_rq(body(again)) == request


@given(edits=MUTATIONS)
def test_the_listener_can_answer_every_rq_that_decodes(edits: list[tuple[int, int, int]]) -> None:
    """Encoding our A-ASSOCIATE-AC must never fail on what a peer's RQ held."""
    try:
        request = decode_associate_rq(mutate(body(REQUEST.encode()), edits))
    except ProtocolError:
        return
    answer = answer_request(
        request,
        ae_title=request.called_ae,
        address="127.0.0.1",
        allows=lambda calling, address: True,
        max_pdu=16384,
    )
    assert isinstance(answer, Accepted)
    accept = decode_associate_ac(body(answer.answer.encode()))
    assert [r.context_id for r in accept.results] == sorted(c.context_id for c in request.contexts)


@given(edits=MUTATIONS)
def test_a_mutated_ac_decodes_or_is_refused_typed(edits: list[tuple[int, int, int]]) -> None:
    data = mutate(body(ACCEPT.encode()), edits)
    try:
        accept = decode_associate_ac(data)
    except ProtocolError:
        return
    try:
        again = accept.encode()
    except ValueError:
        return
    assert decode_associate_ac(body(again)) == accept


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_protocol_error(data: bytes) -> None:
    for decode in (decode_associate_rq, decode_associate_ac, decode_associate_rj):
        with suppress(ProtocolError):
            decode(data)


# -- negotiation ----------------------------------------------------------------------------


def test_the_scp_role_needs_our_proposal_and_the_acceptors_consent() -> None:
    """PS3.7 D.3.3.4: SCP only where we proposed it and the AC answered SCP role 1."""
    request = replace(REQUEST, user=UserInformation(roles=(RoleSelection(CT, False, True),)))
    accept = replace(
        ACCEPT,
        results=(
            ContextResult(1, 0, EXPLICIT),
            ContextResult(3, 0, EXPLICIT),
            ContextResult(5, 0, EXPLICIT),
            ContextResult(7, 0, JPEG_BASELINE),
            ContextResult(9, 0, EXPLICIT),
        ),
        user=UserInformation(
            # MR answered SCP too, but we never proposed it: default roles stay.
            roles=(RoleSelection(CT, False, True), RoleSelection(MR, True, True)),
        ),
    )
    contexts = match_contexts(request, accept)
    assert [(c.abstract_syntax, c.as_scp) for c in contexts] == [
        (VERIFICATION, False),
        (STUDY_ROOT_FIND, False),
        (CT, True),
        (CT, True),
        (MR, False),
    ]
    refused = replace(accept, user=UserInformation(roles=(RoleSelection(CT, True, False),)))
    assert not any(c.as_scp for c in match_contexts(request, refused))
    unanswered = replace(accept, user=UserInformation())
    assert not any(c.as_scp for c in match_contexts(request, unanswered))
    rejected = replace(
        accept, results=(*accept.results[:2], ContextResult(5, 3, None), *accept.results[3:])
    )
    assert [c.as_scp for c in match_contexts(request, rejected)] == [
        False,
        False,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("results", "words"),
    [
        ((ContextResult(11, 0, EXPLICIT),), "answered presentation context 11, never proposed"),
        (
            (ContextResult(1, 0, IMPLICIT),),
            "accepted presentation context 1 with transfer syntax 1.2.840.10008.1.2, never",
        ),
        ((ContextResult(1, 0, EXPLICIT),), "does not answer presentation context 3"),
    ],
)
def test_answers_that_do_not_match_the_proposal_are_protocol_errors(
    results: tuple[ContextResult, ...], words: str
) -> None:
    with pytest.raises(ProtocolError, match=words):
        match_contexts(REQUEST, replace(ACCEPT, results=results))


def test_the_listener_accepts_storage_and_verification_in_its_preferred_syntax() -> None:
    contexts = accept_contexts(
        [
            ProposedContext(3, CT, (IMPLICIT, JPEG_BASELINE, EXPLICIT)),
            ProposedContext(1, VERIFICATION, (IMPLICIT,)),
            ProposedContext(5, MR, (BIG_ENDIAN, JPEG_BASELINE)),
            ProposedContext(7, MR, (BIG_ENDIAN,)),
            ProposedContext(9, STUDY_ROOT_FIND, (EXPLICIT,)),
        ]
    )
    assert [(c.context_id, c.result, c.transfer_syntax, c.as_scp) for c in contexts] == [
        (1, 0, IMPLICIT, True),
        (3, 0, EXPLICIT, True),  # uncompressed first, whatever the proposal's order
        (5, 0, JPEG_BASELINE, True),
        (7, 4, BIG_ENDIAN, False),  # no syntax we store as is
        (9, 3, EXPLICIT, False),  # not a storage SOP class
    ]


@pytest.mark.anyio
@pytest.mark.peers
async def test_orthanc_grants_the_scp_role_for_c_get_storage(peer: Peer) -> None:
    contexts = [ContextRequest(STUDY_ROOT_GET), *storage_contexts([CT], compressed=False)]
    async with open_association(peer, contexts) as association:
        roles = {c.abstract_syntax: c.as_scp for c in association.contexts if c.accepted}
    assert roles == {STUDY_ROOT_GET: False, CT: True}

"""The network core's observer events (qrclient.net.events): fields, tags, trace lines."""

from __future__ import annotations

import io
import json
import typing

from qrclient.net.events import (
    PDU_LEVEL,
    AssociateRequested,
    DatasetReceived,
    Event,
    Failed,
    PduSent,
    ProposedContextInfo,
    Released,
    Tag,
    record,
    tagging,
)
from qrclient.present.trace import Trace

EVERY_EVENT = typing.get_args(Event)


def test_every_event_has_its_own_name() -> None:
    names = [event.name for event in EVERY_EVENT]
    assert len(set(names)) == len(names) == 17
    assert set(PDU_LEVEL) <= set(EVERY_EVENT)


def test_a_record_holds_the_fields_under_their_trace_names_tag_first() -> None:
    event = PduSent("P_DATA_TF", 2, 300, 200)
    assert record(event) == {"pdu_type": "P_DATA_TF", "pdus": 2, "bytes": 300, "dataset_bytes": 200}
    tagged = DatasetReceived(200, tag=Tag(3, "listener"))
    assert list(record(tagged).items()) == [
        ("association", 3),
        ("role", "listener"),
        ("bytes", 200),
    ]
    assert record(Released()) == {}


class PduLevel:
    pdu_level = True

    def __init__(self) -> None:
        self.seen: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.seen.append(event)


def test_only_pdu_level_observers_get_events_tagged_each_association_its_number() -> None:
    def plain(event: Event) -> None:
        raise AssertionError("not called here")

    assert tagging(None, "requestor") is None
    assert tagging(plain, "requestor") is plain
    trace = PduLevel()
    first, second = tagging(trace, "requestor"), tagging(trace, "listener")
    assert first is not None
    assert second is not None
    first(Released())
    second(Failed("boom"))
    tags = [event.tag for event in trace.seen]
    assert [t.role for t in tags if t] == ["requestor", "listener"]
    assert [t.association for t in tags if t] == sorted({t.association for t in tags if t})


def test_a_trace_line_is_the_record_after_time_and_name() -> None:
    file = io.StringIO()
    trace = Trace(file, "echo", ["echo"])
    proposed = (ProposedContextInfo(1, "Verification SOP Class", ("1.2.840.10008.1.2.1",)),)
    trace(AssociateRequested("ME", "PACS", 16384, 200, proposed, tag=Tag(1, "requestor")))
    line = file.getvalue().splitlines()[1]
    assert line.startswith('{"t":')
    assert line.split(",", 1)[1] == (
        '"event":"associate-rq","association":1,"role":"requestor","calling_ae":"ME",'
        '"called_ae":"PACS","max_pdu":16384,"bytes":200,"contexts":[{"id":1,'
        '"abstract_syntax":"Verification SOP Class","transfer_syntaxes":["1.2.840.10008.1.2.1"]}]}'
    )
    assert json.loads(line)["event"] == "associate-rq"

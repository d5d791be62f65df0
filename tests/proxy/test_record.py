"""A request's record (proxy/recording/_record.py): its events, its wire form, and the null record
that stands in when recording is off. Pure."""

from __future__ import annotations

import dataclasses

import ormsgpack

from proto import pb
from proxy._jsonrpc import encode_error
from proxy.recording import Hop, Record
from proxy.recording._record import NULL_HOP, NULL_RECORD, NullRecord, pack


def a_call() -> Record:
    record = Record.begin([(b"content-type", b"application/json")])
    record.received("tools/call", 7, b'{"jsonrpc":"2.0","id":7}')
    record.parsed("modern", "2026-07-28", None)
    record.sliced("say", "/echo", "echo")
    hop, traceparent = record.upstream("tools/call", "/echo", "echo")
    hop.sent(b"sent")
    record.heard(hop, "notifications/progress", {"progress": 1})
    hop.answered(b"answer")
    record.answered(b"final", "/virtual/v")
    assert traceparent == f"00-{record.trace_id.hex()}-{hop.span_id.hex()}-01"
    return record


def test_events_fill_the_record_in_order() -> None:
    record = a_call()
    assert record.start_ns <= record.parsed_ns <= record.sliced_ns <= record.end_ns
    assert (record.method, record.tool, record.backend, record.backend_tool) == ("tools/call", "say", "/echo", "echo")
    upstream, heard = record.hops or []
    assert upstream.request == b"sent" and upstream.response == b"answer" and upstream.end_ns >= upstream.start_ns
    assert heard.parent == upstream.span_id and heard.direction == pb.DIRECTION_BACKEND_TO_GATEWAY
    assert record.span_count() == 4 + 2  # root, parse, slice, respond; two hops


def test_the_wire_form_is_the_fields_in_declared_order() -> None:
    record = a_call()
    values, hops = ormsgpack.unpackb(pack(record))
    names = [f.name for f in dataclasses.fields(Record) if f.name != "hops"]
    assert len(values) == len(names) and values[names.index("method")] == "tools/call"
    assert len(hops) == 2 and len(hops[0]) == len(dataclasses.fields(Hop))
    back = Record.from_row([values, hops])
    assert back.hops is not None and back.hops[0].span_id == record.hops[0].span_id  # type: ignore[index]
    assert pack(back) == pack(record)  # read back, it packs the same


def test_an_error_answer_is_recorded_with_its_error() -> None:
    record = Record.begin([])
    record.received("tools/call", 1, b"{}")
    answer = encode_error(1, -32602, "Unknown tool: x")
    record.answered(answer, "/v", answer.error)
    row = ormsgpack.unpackb(pack(record))  # an ErrorAnswer (a bytes subclass) packs as plain bytes
    back = Record.from_row(row)
    assert back.response == bytes(answer) and tuple(back.error or ()) == (-32602, "Unknown tool: x")


def test_the_null_record_keeps_nothing() -> None:
    before, hop_before = dataclasses.astuple(NULL_RECORD), dataclasses.astuple(NULL_HOP)
    NULL_RECORD.identified("alice")
    NULL_RECORD.received("tools/call", 1, b"{}")
    NULL_RECORD.parsed("legacy", "2025-11-25", "s")
    NULL_RECORD.sliced("say", "/echo", "echo")
    hop, traceparent = NULL_RECORD.upstream("tools/call", "/echo", "echo")
    assert hop is NULL_HOP and traceparent == ""  # no traceparent for the backend when not recording
    hop.sent(b"x")
    hop.answered(b"y", (1, "e"))
    NULL_RECORD.heard(hop, "notifications/progress", {})
    NULL_RECORD.asked("elicitation/create", {}).answered({})
    NULL_RECORD.resumed("tools/call say", "/echo", {}).failed((1, "e"))
    NULL_RECORD.answered(b"z", "/v")
    NULL_RECORD.child(NULL_HOP, NULL_RECORD.add(NULL_HOP))
    assert dataclasses.astuple(NULL_RECORD) == before and dataclasses.astuple(NULL_HOP) == hop_before


def test_the_null_record_answers_every_event_of_a_record() -> None:
    """A new event on Record without its no-op on NullRecord would record into the shared instance."""
    events = {name for name, value in vars(Record).items() if callable(value) and not name.startswith("_")}
    events -= {"begin", "from_row", "span_count"}  # constructors, and a reading
    assert events <= set(vars(NullRecord)), events - set(vars(NullRecord))

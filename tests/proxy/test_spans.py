"""Span building from a trace: the span tree, and redaction that never lets a secret through a shortcut."""

from __future__ import annotations

import time

import orjson

from proto import pb
from proxy._config import RedactConfig
from proxy._recording import Hop, Trace
from proxy._redact import Redactor
from proxy._spans import FIELDS, SpanColumns, build_spans

SECRET = "sk-live-abcdefghijklmnop"


def redactor() -> Redactor:
    c = RedactConfig()
    return Redactor(c.keys, c.paths, c.patterns, 65536)


def columns_of(trace: Trace) -> dict[str, list]:
    cols = SpanColumns()
    build_spans(trace, redactor(), "gw-1", cols)
    message = cols.message()
    return {name: list(getattr(message, name)) for name in FIELDS}


def call_trace(request_args: dict, upstream_result: dict, relay_params: dict | None = None) -> Trace:
    now = time.time_ns()
    trace = Trace(now, [(b"authorization", b"Bearer " + SECRET.encode()), (b"user-agent", b"agent/1")])
    trace.method, trace.request_id, trace.tool, trace.era = "tools/call", 7, "say", "modern"
    trace.request = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "say", "arguments": request_args},
    }
    trace.parsed_ns, trace.sliced_ns = now + 10, now + 20
    hop = Hop("tools/call echo", pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND, "tools/call", now + 30)
    hop.request = {"params": {"name": "echo", "arguments": request_args}}
    hop.response = {"jsonrpc": "2.0", "id": 1, "result": upstream_result}
    hop.end_ns = now + 500
    if relay_params is not None:
        child = Hop(
            "elicitation/create",
            pb.SPAN_KIND_INTERNAL,
            pb.DIRECTION_BACKEND_TO_GATEWAY,
            "elicitation/create",
            now + 100,
        )
        child.request = {"method": "elicitation/create", "params": relay_params}
        hop.children.append(child)
    trace.hops.append(hop)
    trace.response = orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": upstream_result})
    trace.end_ns = now + 600
    return trace


def test_span_tree_of_a_call() -> None:
    cols = columns_of(call_trace({"text": "hi"}, {"content": [{"type": "text", "text": "hi"}]}))
    assert sorted(cols["name"]) == sorted(["tools/call say", "parse", "slice", "tools/call echo", "respond"])
    assert cols["name"][0] == "tools/call say" and cols["kind"][0] == pb.SPAN_KIND_SERVER
    root = cols["span_id"][0]
    assert cols["parent_span_id"][1:] == [root] * 4
    assert len({bytes(t) for t in cols["trace_id"]}) == 1
    attrs = orjson.loads(cols["attributes_json"][0])
    assert attrs["gen_ai.tool.name"] == "say" and attrs["jsonrpc.request.id"] == "7"
    assert attrs["http.request.headers"]["authorization"] == "[REDACTED]"


def test_no_secret_through_any_payload() -> None:
    cases = [
        call_trace({"token": SECRET}, {"ok": True}),  # secret key in the client's arguments
        call_trace({"text": "x"}, {"content": [{"type": "text", "text": f"your key is {SECRET}"}]}),  # in the answer
        call_trace({"text": "x"}, {"inputRequests": {"k": {"message": SECRET}}}, relay_params={"message": SECRET}),
    ]
    for trace in cases:
        cols = columns_of(trace)
        blob = b"".join(
            bytes(v) for name in ("request_payload", "response_payload", "attributes_json") for v in cols[name]
        )
        assert SECRET.encode() not in blob
        assert b"[REDACTED]" in blob


def test_payload_capture_levels() -> None:
    ok = call_trace({"text": "hi"}, {"content": [{"type": "text", "text": "hi"}]})
    failed = call_trace({"text": "hi"}, {"content": []})
    failed.hops[0].error = (-32000, "Backend /b: down")
    for level, trace, expect_payloads in (("none", ok, False), ("errors", ok, False), ("errors", failed, True)):
        cols = SpanColumns()
        build_spans(trace, redactor(), "gw-1", cols, payloads=level)
        message = cols.message()
        carried = any(message.request_payload) or any(message.response_payload)
        assert carried is expect_payloads, level
        headers = orjson.loads(message.attributes_json[0])["http.request.headers"]
        assert headers["authorization"] == "[REDACTED]"  # headers recorded and redacted at every level

"""What the gateway tells about one request (proxy/_observed.py): /metrics' labels and the record get the
same events. Pure: a real Metrics registry and Record, an ASGI send that keeps what it is given."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from proxy._jsonrpc import encode_error, parse_message
from proxy._metrics import Metrics
from proxy._observed import Observed
from proxy._responder import Responder
from proxy.recording import Record
from proxy.recording._record import NULL_RECORD


def metrics() -> Metrics:
    return Metrics(lambda: {"in_flight": 0, "recorder": None, "backends": {}})


async def answered(body: bytes) -> Responder:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    responder = Responder(send, receive)
    await responder.json(200, body)
    return responder


def test_a_routed_call_is_labelled_and_recorded_from_the_same_events() -> None:
    body = b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"say"}}'
    observed = Observed(Record.begin([]))
    observed.received(parse_message(body), body)
    observed.sliced("say", "/echo", "echo")
    observed.tool_result(True)
    m = metrics()
    observed.finished(m, "/v", asyncio.run(answered(b'{"jsonrpc":"2.0","id":3,"result":{}}')), time.perf_counter())
    assert list(m.server) == [("tools/call", "/v", "say", "/echo", "tool_error")]
    record = observed.record
    assert (record.method, record.request_id, record.tool, record.backend, record.backend_tool) == (
        "tools/call", 3, "say", "/echo", "echo")  # fmt: skip
    assert record.response == b'{"jsonrpc":"2.0","id":3,"result":{}}' and record.end_ns >= record.sliced_ns > 0


def test_a_refused_name_never_becomes_a_label() -> None:
    """An unknown tool's name is the client's to choose: the record keeps it, /metrics does not."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}'
    observed = Observed(Record.begin([]))
    observed.received(parse_message(body), body)
    observed.sliced("delete_repo")
    error = encode_error(1, -32602, "Unknown tool: delete_repo")
    m = metrics()
    observed.finished(m, "/v", asyncio.run(answered(error)), time.perf_counter())
    assert list(m.server) == [("tools/call", "/v", "", "", "error")]
    assert observed.record.tool == "delete_repo" and tuple(observed.record.error or ()) == (-32602, error.error[1])


def test_a_mapping_label_and_an_unknown_method() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"x/custom"}'
    observed = Observed(NULL_RECORD)  # not recording: metrics still get their labels
    observed.received(parse_message(body), body)
    observed.sliced("resources/read file:///docs/a.md", "/files", "file:///srv/a.md", "docs")
    m = metrics()
    observed.finished(m, "/v", asyncio.run(answered(b'{"jsonrpc":"2.0","id":1,"result":{}}')), time.perf_counter())
    assert list(m.server) == [("other", "/v", "docs", "/files", "ok")]

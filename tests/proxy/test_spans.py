"""From a trace record to spans: the helper's rows, expanded by the recorder's SQL (a real in-memory
DuckDB), give the span tree; redaction never lets a secret through a shortcut."""

from __future__ import annotations

import time

import orjson

from proto import pb, session_key
from proxy._config import RedactConfig
from proxy.recording import Record, new_hop
from proxy.recording._redact import MARKER, Redactor
from proxy.recording.helper._spans import BatchBuilder
from recorder._store import batch_to_arrow

SECRET = "sk-live-abcdefghijklmnop"
PEER = ("mcp.internal", 8443, "tcp", "2025-11-25", "backend-session-1")


def redactor() -> Redactor:
    c = RedactConfig()
    return Redactor(c.keys, c.paths, c.patterns, 65536)


def columns_of(trace: Record, payloads: str = "all") -> dict[str, list]:
    """The spans of one trace, root first, as the recorder stores them (wire form: ids as bytes)."""
    builder = BatchBuilder(redactor(), payloads)
    spans = builder.add(trace)
    table = batch_to_arrow(builder.batch("gw-1"))
    assert table.num_rows == spans
    rows = sorted(table.to_pylist(), key=lambda r: (r["parent_span_id"] != b"", r["start_time_unix_nano"]))
    return {name: [r[name] for r in rows] for name in table.column_names}


def call_trace(request_args: dict, upstream_result: dict, relay_params: dict | None = None) -> Record:
    now = time.time_ns()
    headers = [(b"authorization", b"Bearer " + SECRET.encode()), (b"user-agent", b"agent/1")]
    trace = Record.begin(headers, now, ["10.0.0.7", 51234], "1.1")
    trace.method, trace.request_id, trace.tool, trace.era, trace.backend = "tools/call", 7, "say", "modern", "/b"
    trace.request = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "say", "arguments": request_args},
    }
    trace.parsed_ns, trace.sliced_ns = now + 10, now + 20
    hop = new_hop("tools/call echo", pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND, "tools/call", now + 30,
                  "/b", "echo")  # fmt: skip
    hop.sent({"params": {"name": "echo", "arguments": request_args}}, 42, PEER)
    hop.response = {"jsonrpc": "2.0", "id": 1, "result": upstream_result}
    hop.end_ns = now + 500
    trace.add(hop)
    if relay_params is not None:
        child = new_hop(
            "elicitation/create",
            pb.SPAN_KIND_INTERNAL,
            pb.DIRECTION_BACKEND_TO_GATEWAY,
            "elicitation/create",
            now + 100,
        )
        child.request = {"method": "elicitation/create", "params": relay_params}
        trace.child(hop, child)
    trace.response = orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": upstream_result})
    trace.end_ns = now + 600
    return trace


def span_id(value: bytes) -> bytes:
    return value


def test_span_tree_of_a_call() -> None:
    cols = columns_of(call_trace({"text": "hi"}, {"content": [{"type": "text", "text": "hi"}]}))
    assert sorted(cols["name"]) == sorted(["tools/call say", "parse", "slice", "tools/call echo", "respond"])
    assert cols["name"][0] == "tools/call say" and cols["kind"][0] == pb.SPAN_KIND_SERVER
    root = cols["span_id"][0]
    assert cols["parent_span_id"][1:] == [root] * 4
    assert len({bytes(t) for t in cols["trace_id"]}) == 1
    assert cols["gateway_instance"] == ["gw-1"] * 5
    attrs = orjson.loads(cols["attributes_json"][0])
    assert attrs["gen_ai.tool.name"] == "say" and attrs["jsonrpc.request.id"] == "7"
    assert attrs["http.request.headers"]["authorization"] == "[REDACTED]"
    assert attrs["user_agent.original"] == "agent/1" and "error.type" not in attrs
    by_name = {name: i for i, name in enumerate(cols["name"]) if name != "tools/call say"}
    upstream = orjson.loads(cols["attributes_json"][by_name["tools/call echo"]])
    assert {k: attrs.get(k) for k in ("client.address", "client.port", "network.protocol.version")} == {
        "client.address": "10.0.0.7", "client.port": 51234, "network.protocol.version": "1.1"}  # fmt: skip
    # The upstream call names the backend as reached (not its configured path), in its own session and ids.
    assert upstream == {"mcp.method.name": "tools/call", "gen_ai.tool.name": "echo",
                        "gen_ai.operation.name": "execute_tool", "slicewire.backend": "/b",
                        "server.address": "mcp.internal", "server.port": 8443, "network.transport": "tcp",
                        "network.protocol.name": "http", "mcp.protocol.version": "2025-11-25",
                        "mcp.session.id": session_key("backend-session-1"), "jsonrpc.request.id": "42"}  # fmt: skip
    # parse -> slice -> upstream -> respond, in time order, inside the root
    starts = [cols["start_time_unix_nano"][by_name[n]] for n in ("parse", "slice", "tools/call echo", "respond")]
    assert starts == sorted(starts) and starts[0] == cols["start_time_unix_nano"][0]
    assert cols["end_time_unix_nano"][by_name["respond"]] == cols["end_time_unix_nano"][0]


def test_child_span_ids_are_derived_and_stable() -> None:
    """A re-sent trace must expand to the same span ids, or the recorder could not de-duplicate it."""
    trace = call_trace({"text": "hi"}, {"content": []})
    first, second = columns_of(trace)["span_id"], columns_of(trace)["span_id"]
    assert first == second and len(set(first)) == 5
    root = span_id(trace.span_id)  # made when the record was first added, kept in it
    derived = {bytes(i) for i in first} - {root, span_id(trace.hops[0].span_id)}
    assert derived == {root[:7] + bytes([root[7] ^ k]) for k in (1, 2, 3)}


def test_failed_upstream_call_marks_the_hop_and_the_root() -> None:
    trace = call_trace({"text": "hi"}, {"content": []})
    trace.hops[0].error = (-32001, "Backend /b: timed out")
    trace.response = orjson.dumps({"jsonrpc": "2.0", "id": 7, "error": {"code": -32001, "message": "timed out"}})
    trace.error = (-32001, "timed out")  # as the gateway's encoder says of its answer
    cols = columns_of(trace)
    failed = {
        name: (code, msg)
        for name, status, code, msg in zip(
            cols["name"], cols["status"], cols["error_code"], cols["error_message"], strict=True
        )
        if status == 2
    }
    assert failed == {"tools/call say": (-32001, "timed out"), "tools/call echo": (-32001, "Backend /b: timed out")}
    assert orjson.loads(cols["attributes_json"][0])["error.type"] == "-32001"


def test_no_secret_through_any_payload() -> None:
    cases = [
        call_trace({"token": SECRET}, {"ok": True}),  # secret key in the client's arguments
        call_trace({"text": "x"}, {"content": [{"type": "text", "text": f"your key is {SECRET}"}]}),  # in the answer
        call_trace({"text": "x"}, {"inputRequests": {"k": {"message": SECRET}}}, relay_params={"message": SECRET}),
    ]
    for trace in cases:
        cols = columns_of(trace)
        blob = "".join(
            v or "" for name in ("request_payload", "response_payload", "attributes_json") for v in cols[name]
        )
        assert SECRET not in blob
        assert "[REDACTED]" in blob


def test_payload_capture_levels() -> None:
    ok = call_trace({"text": "hi"}, {"content": [{"type": "text", "text": "hi"}]})
    failed = call_trace({"text": "hi"}, {"content": []})
    failed.hops[0].error = (-32000, "Backend /b: down")
    for level, trace, expect_payloads in (("none", ok, False), ("errors", ok, False), ("errors", failed, True)):
        cols = columns_of(trace, payloads=level)
        carried = any(cols["request_payload"]) or any(cols["response_payload"])
        assert carried is expect_payloads, level
        headers = orjson.loads(cols["attributes_json"][0])["http.request.headers"]
        assert headers["authorization"] == "[REDACTED]"  # headers recorded and redacted at every level


def test_only_the_payloads_that_need_it_are_redacted_or_cut() -> None:
    """Three traces in one batch: clean, holding a secret, oversized. Each payload is fixed (or left
    alone) on its own row; the cut one is flagged."""
    builder = BatchBuilder(Redactor(RedactConfig().keys, [], RedactConfig().patterns, 300))
    clean = call_trace({"text": "hi"}, {"content": []})
    secret = call_trace({"password": "hunter2"}, {"content": []})
    big = call_trace({"text": "y" * 1000}, {"content": []})
    for trace in (clean, secret, big):
        builder.add(trace)
    rows = batch_to_arrow(builder.batch("gw-1")).to_pylist()
    roots = {r["span_id"]: r for r in rows if r["parent_span_id"] == b""}
    clean_root, secret_root, big_root = (roots[span_id(t.span_id)] for t in (clean, secret, big))
    assert clean_root["request_payload"] == orjson.dumps(clean.request).decode()
    assert not clean_root["payload_truncated"]
    assert "hunter2" not in secret_root["request_payload"] and MARKER in secret_root["request_payload"]
    upstream = next(r for r in rows if r["span_id"] == span_id(secret.hops[0].span_id))
    assert "hunter2" not in upstream["request_payload"]
    assert big_root["payload_truncated"] and len(big_root["request_payload"]) == 300


def test_stateless_runs_are_told_apart() -> None:
    from proxy.recording.helper._sessions import ModernSessions

    sessions = ModernSessions()
    meta = {"io.modelcontextprotocol/clientInfo": {"name": "my agent", "version": "1.0"}}
    t = 1_780_000_000 * 10**9

    def key(method: str, at: int, subject: str = "alice", baggage: str = "") -> str:
        return sessions.key("/v", subject, method, meta, baggage, at)

    first = key("server/discover", t)
    assert first.startswith("my-agent-") and key("tools/call", t + 1) == first == key("tools/list", t + 2)
    second = key("server/discover", t + 3)  # the next run of the same client
    assert second != first and key("tools/call", t + 4) == second
    assert key("tools/call", t + 5, subject="bob") not in (first, second)  # another caller, another session
    idle = t + 4 + (ModernSessions.RUN_IDLE_S + 1) * 10**9
    assert key("tools/call", idle) not in (first, second)  # a request after a long silence starts a run
    assert key("tools/call", t, baggage="other=1, session.id=run-7;ttl=3") == "run-7@alice"  # the agent names it
    assert key("tools/call", t, subject="bob", baggage="session.id=run-7") == "run-7@bob"  # not alice's run
    assert key("tools/call", t, subject="", baggage="session.id=run-7") == "run-7"  # a public virtual server


def test_a_payload_that_cannot_be_redacted_is_a_counted_marker_and_costs_no_other_record() -> None:
    """A dirty payload nested deeper than the redactor walks used to raise RecursionError in the helper and
    lose its whole batch, other callers' spans included, uncounted."""
    from proxy._jsonrpc import MAX_DEPTH
    from proxy.recording._redact import UNREDACTABLE

    red = redactor()
    builder = BatchBuilder(red)
    deep = b'{"password":"hunter2","x":' + b"[" * 600 + b"]" * 600 + b"}"  # orjson parses it; nobody walks it
    shallow = {"password": "hunter2", "x": [[["ok"]]]}
    traces = [call_trace({"n": i}, {"ok": i}) for i in range(3)]
    traces[1].request = deep
    traces[2].request = shallow
    spans = sum(builder.add(t) for t in traces)
    table = batch_to_arrow(builder.batch("gw-1"))
    assert table.num_rows == spans  # every record's spans, the unredactable one's too
    roots = {r["trace_id"]: r for r in table.to_pylist() if r["parent_span_id"] == b""}
    requests = [roots[t.trace_id]["request_payload"] for t in traces]
    assert orjson.loads(requests[0])["params"]["arguments"] == {"n": 0}
    assert requests[1].encode() == UNREDACTABLE and str(MAX_DEPTH) in requests[1]
    assert orjson.loads(requests[2]) == {"password": "[REDACTED]", "x": [[["ok"]]]}
    assert red.replaced == 1
    assert "hunter2" not in str(table.to_pylist())


def test_session_ids_are_recorded_as_keys_and_answers_by_what_they_answer() -> None:
    """A 2025-11-25 session id is a capability on a public virtual server: spans carry its digest, the
    same in the column and in `mcp.session.id`. A client's answer to a relayed request is named by it."""
    trace = Record.begin([(b"mcp-session-id", b"raw-session-id")])
    trace.received("(result)", 3, b'{"jsonrpc":"2.0","id":3,"result":{"action":"accept"}}', "result")
    trace.parsed("legacy", "2025-11-25", "raw-session-id")
    trace.answers("elicitation/create")
    trace.answered(b"", "/v")
    cols = columns_of(trace)
    assert cols["name"][0] == "elicitation/create result" and cols["message_kind"][0] == pb.MESSAGE_KIND_RESULT
    attrs = orjson.loads(cols["attributes_json"][0])
    assert cols["session_id"][0] == attrs["mcp.session.id"] == session_key("raw-session-id")
    assert attrs["mcp.method.name"] == "elicitation/create"
    assert "raw-session-id" not in repr(cols)  # not in a column, an attribute or the headers


def test_a_batch_from_before_a_column_is_stored_with_its_default() -> None:
    """A gateway older than a column (or its spool, replayed after an upgrade) sends batches without it."""
    builder = BatchBuilder(redactor())
    builder.add(call_trace({"text": "hi"}, {"content": []}))
    batch = builder.batch("gw-1")
    batch.traces.ClearField("client_address")
    batch.traces.ClearField("message_kind")
    batch.hops.ClearField("peer_address")
    table = batch_to_arrow(batch)
    root = next(r for r in table.to_pylist() if r["name"] == "tools/call say")
    assert root["message_kind"] == pb.MESSAGE_KIND_REQUEST  # told by its id, as before the column
    assert "client.address" not in orjson.loads(root["attributes_json"])

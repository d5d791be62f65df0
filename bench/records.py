"""Trace records shaped like bench/run.py's `tools/call`s, made with the gateway's own record helpers
(proxy/recording/_record.py): one client request, one upstream hop, payloads as the bytes on the wire."""

from __future__ import annotations

import orjson

from proxy.recording._record import (
    BACKEND,
    BACKEND_TOOL,
    END,
    ERA,
    HOP_END,
    HOP_REQUEST,
    HOP_RESPONSE,
    METHOD,
    PARSED,
    REQUEST,
    REQUEST_ID,
    RESPONSE,
    SESSION,
    SLICED,
    TOOL,
    VERSION,
    VIRTUAL_SERVER,
    Trace,
    add_upstream_hop,
    new_trace,
)  # fmt: skip

ARGS = {"text": "lorem ipsum dolor sit amet " * 8}
HEADERS = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
           (b"accept", b"application/json, text/event-stream"), (b"mcp-protocol-version", b"2026-07-28"),
           (b"mcp-method", b"tools/call"), (b"mcp-name", b"say"), (b"content-length", b"400")]  # fmt: skip


def tools_call(i: int, now: int, headers: list[tuple[bytes, bytes]] = HEADERS, session: str | None = None) -> Trace:
    """A finished tools/call record, as the gateway leaves it (session None: derived by the helper)."""
    trace = new_trace(now, list(headers))
    trace[METHOD], trace[REQUEST_ID], trace[ERA], trace[VERSION] = "tools/call", i, "modern", "2026-07-28"
    trace[REQUEST] = orjson.dumps(
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "say", "arguments": ARGS}}
    )
    trace[PARSED], trace[TOOL], trace[SLICED] = now + 20_000, "say", now + 25_000
    trace[BACKEND], trace[BACKEND_TOOL], trace[VIRTUAL_SERVER], trace[SESSION] = "/echo", "echo", "/v/bench", session
    hop, context = add_upstream_hop(trace, "tools/call", "/echo", "echo", now + 30_000)
    params = {"name": "echo", "arguments": ARGS, "_meta": {"traceparent": context}}
    hop[HOP_REQUEST] = orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
    result = {"content": [{"type": "text", "text": orjson.dumps(ARGS).decode()}], "structuredContent": ARGS}
    hop[HOP_RESPONSE] = orjson.dumps({"jsonrpc": "2.0", "id": i, "result": result})
    hop[HOP_END] = now + 200_000
    trace[RESPONSE], trace[END] = orjson.dumps({"jsonrpc": "2.0", "id": i, "result": result}), now + 210_000
    return trace

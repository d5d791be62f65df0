"""Trace records shaped like bench/run.py's `tools/call`s, made with the gateway's own record helpers
(proxy/recording/_record.py): one client request, one upstream hop, payloads as the bytes on the wire."""

from __future__ import annotations

import orjson

from proxy.recording import Record

ARGS = {"text": "lorem ipsum dolor sit amet " * 8}
HEADERS = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
           (b"accept", b"application/json, text/event-stream"), (b"mcp-protocol-version", b"2026-07-28"),
           (b"mcp-method", b"tools/call"), (b"mcp-name", b"say"), (b"content-length", b"400")]  # fmt: skip


def tools_call(i: int, now: int, headers: list[tuple[bytes, bytes]] = HEADERS, session: str | None = None) -> Record:
    """A finished tools/call record, as the gateway leaves it (session None: derived by the helper)."""
    request = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "say", "arguments": ARGS}}
    record = Record(now, list(headers), now + 20_000, sliced_ns=now + 25_000, method="tools/call", request_id=i,
                    request=orjson.dumps(request), era="modern", version="2026-07-28", session=session,
                    virtual_server="/v/bench", tool="say", backend="/echo", backend_tool="echo")  # fmt: skip
    hop, context = record.upstream("tools/call", "/echo", "echo")
    hop.start_ns, hop.end_ns = now + 30_000, now + 200_000
    params = {"name": "echo", "arguments": ARGS, "_meta": {"traceparent": context}}
    hop.request = orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
    result = {"content": [{"type": "text", "text": orjson.dumps(ARGS).decode()}], "structuredContent": ARGS}
    hop.response = orjson.dumps({"jsonrpc": "2.0", "id": i, "result": result})
    record.response, record.end_ns = orjson.dumps({"jsonrpc": "2.0", "id": i, "result": result}), now + 210_000
    return record

"""The MCP endpoint under generated input (Hypothesis, bounded in examples and time): whatever the body and
headers, the answer is a 4xx or a 2xx with a JSON-RPC body, never a 5xx, and never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import Config, create_app

METHODS = [
    "initialize", "notifications/initialized", "ping", "tools/list", "tools/call", "server/discover",
    "subscriptions/listen", "resources/list", "prompts/get", "completion/complete", "logging/setLevel",
    "notifications/cancelled", "nope", "",
]  # fmt: skip
VERSIONS = ["2025-11-25", "2025-06-18", "2026-07-28", "1999-01-01", "", "x" * 300]

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders write (orjson's range)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
ids = st.none() | ints | st.text(max_size=10) | st.booleans() | st.floats(allow_nan=False)
meta = st.fixed_dictionaries(
    {},
    optional={
        "io.modelcontextprotocol/protocolVersion": st.sampled_from(VERSIONS),
        "io.modelcontextprotocol/clientCapabilities": json_values,
        "io.modelcontextprotocol/clientInfo": json_values,
        "progressToken": ids,
        "traceparent": st.text(max_size=60),
    },
)
params = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["t", "nope", ""]) | st.text(max_size=10) | json_values,
        "arguments": json_values,
        "cursor": json_values,
        "_meta": meta | json_values,
        "protocolVersion": st.sampled_from(VERSIONS),
        "capabilities": json_values,
        "clientInfo": json_values,
    },
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2])},
    optional={"id": ids, "method": st.sampled_from(METHODS) | st.text(max_size=20), "params": params | json_values,
              "result": json_values, "error": json_values},
)  # fmt: skip
deep = st.integers(min_value=1, max_value=1100).map(lambda n: ("[" * n + "]" * n).encode())
CALL_WITH = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":%s}}}'
RAW = [
    b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":123456789012345678901234567890}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping"}{}',
    b"\xef\xbb\xbf{}",
    rb'"\ud800"',
    b"[]",
    b"null",
]
bodies = (
    messages.map(orjson.dumps)
    | json_values.map(orjson.dumps)
    | st.binary(max_size=200)
    | deep.map(lambda d: CALL_WITH % d)
    | st.sampled_from(RAW)
)  # fmt: skip
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", ""]),
        "accept": st.sampled_from(["application/json, text/event-stream", "application/json", "*/*", ""]),
        "mcp-protocol-version": st.sampled_from(VERSIONS),
        "mcp-session-id": st.text(alphabet="abcdef0123456789-", max_size=40),
        "mcp-method": st.sampled_from(METHODS),
        "mcp-name": st.text(alphabet="abcdefghijklmnop-_", max_size=12),
        "origin": st.sampled_from(["http://127.0.0.1:8080", "https://evil.example", "null"]),
        "baggage": st.text(alphabet="abc=;, .", max_size=30),
    },
)
verbs = st.sampled_from(["POST", "POST", "POST", "GET", "DELETE", "PUT"])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]]:
    config = Config.model_validate(
        {
            "backends": [
                {"path": "/b", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp", "timeout_s": 2}
            ],
            "virtual_servers": [
                {"path": "/v", "server_name": "V", "public": True,
                 "tool_mappings": [{"tool_name": "t", "backend_server_path": "/b"}]}
            ],
            "limits": {"max_body_bytes": 8192},
        }
    )  # fmt: skip
    loop = asyncio.new_event_loop()
    app = create_app(config, watch=False)
    loop.run_until_complete(app.gateway.start())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080")
    try:
        yield loop, client
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(app.gateway.close())
        loop.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=verbs, body=bodies, headers=headers)
def test_no_input_gets_a_5xx_or_hangs(
    endpoint: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient], verb: str, body: bytes, headers: dict[str, Any]
) -> None:
    loop, client = endpoint

    async def send() -> httpx.Response:
        if verb == "GET":  # a legacy stream would stay open by design: read its head only
            async with client.stream(verb, "/v/mcp", headers=headers) as response:
                return response
        return await client.request(verb, "/v/mcp", content=body, headers=headers)

    response = loop.run_until_complete(asyncio.wait_for(send(), 10))
    assert response.status_code < 500, (verb, body[:200], headers, response.status_code)

"""The client-facing transport rules, driven in-process through the ASGI app (no backend needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from proxy import Config, create_app

pytestmark = pytest.mark.anyio

ACCEPT = {"accept": "application/json, text/event-stream"}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def config(**overrides: Any) -> Config:
    return Config.model_validate(
        {
            "backends": [{"path": "/b", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"}],
            "virtual_servers": [
                {
                    "path": "/v",
                    "server_name": "V",
                    "public": True,
                    "tool_mappings": [{"tool_name": "t", "backend_server_path": "/b"}],
                }
            ],
            **overrides,
        }
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config(limits={"max_body_bytes": 2048}), watch=False)
    await app.gateway.start()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            yield http
    finally:
        await app.gateway.close()


async def post(
    http: httpx.AsyncClient, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> httpx.Response:
    h = {"content-type": "application/json", **ACCEPT, **(headers or {})}
    if raw is not None:
        return await http.post("/v/mcp", content=raw, headers=h)
    return await http.post("/v/mcp", json=body, headers=h)


async def initialize(http: httpx.AsyncClient, version: str = "2025-11-25") -> str:
    response = await post(
        http,
        {"jsonrpc": "2.0", "id": 0, "method": "initialize",
         "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
    )  # fmt: skip
    assert response.status_code == 200
    return response.headers["mcp-session-id"]


async def test_malformed_json_is_400_parse_error(client: httpx.AsyncClient) -> None:
    response = await post(client, None, raw=b'{"jsonrpc": "2.0", "id": 1,')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700


async def test_batches_are_refused(client: httpx.AsyncClient) -> None:
    response = await post(client, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600
    assert "batch" in response.json()["error"]["message"]


async def test_not_jsonrpc_is_invalid_request(client: httpx.AsyncClient) -> None:
    for body in ({"id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": True, "method": "x"}, {"jsonrpc": "2.0"}):
        response = await post(client, body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32600


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/v/mcp", content=b"{}", headers={"content-type": "text/plain", **ACCEPT})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == -32600


async def test_missing_accept_is_406(client: httpx.AsyncClient) -> None:
    for accept in ("", "application/json", "text/event-stream"):
        response = await client.post("/v/mcp", json={}, headers={"accept": accept})
        assert response.status_code == 406


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    big = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * 4096}}
    response = await post(client, big)
    assert response.status_code == 413
    assert "2048" in response.json()["error"]["message"]


async def test_unknown_path_is_404_with_jsonrpc_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/nope/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=ACCEPT)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32600
    assert (await client.get("/elsewhere")).status_code == 404


async def test_foreign_origin_and_host_are_403(client: httpx.AsyncClient) -> None:
    response = await post(client, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"origin": "https://evil.example"})
    assert response.status_code == 403
    response = await client.post("/v/mcp", json={}, headers={**ACCEPT, "host": "attacker.example"})
    assert response.status_code == 403
    ok = await post(
        client, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, {"origin": "http://localhost:3000"}
    )
    assert ok.status_code == 200


async def test_allowed_origins_from_config() -> None:
    app = create_app(config(security={"allowed_origins": ["https://app.example"]}), watch=False)
    await app.gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            good = await http.post("/v/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
                                   headers={**ACCEPT, "origin": "https://app.example"})  # fmt: skip
            bad = await http.post("/v/mcp", json={}, headers={**ACCEPT, "origin": "https://other.example"})
        assert good.status_code == 200 and bad.status_code == 403
    finally:
        await app.gateway.close()


async def test_legacy_session_lifecycle(client: httpx.AsyncClient) -> None:
    sid = await initialize(client)
    h = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
    assert (await post(client, {"jsonrpc": "2.0", "method": "notifications/initialized"}, h)).status_code == 202
    pong = await post(client, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, h)
    assert pong.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert pong.headers["mcp-session-id"] == sid
    # Only what the slice maps is advertised (tools here); other features are not there.
    missing = await post(client, {"jsonrpc": "2.0", "id": 2, "method": "resources/list"}, h)
    assert missing.json()["error"]["code"] == -32601
    wrong_version = await post(
        client, {"jsonrpc": "2.0", "id": 3, "method": "ping"}, {**h, "mcp-protocol-version": "1999-01-01"}
    )
    assert wrong_version.status_code == 400
    assert (await client.delete("/v/mcp", headers=h)).status_code == 200
    gone = await post(client, {"jsonrpc": "2.0", "id": 4, "method": "ping"}, h)
    assert gone.status_code == 404


async def test_initialize_negotiates_versions(client: httpx.AsyncClient) -> None:
    for requested, expected in (
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2099-01-01", "2025-11-25"),
    ):
        response = await post(client, {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                       "params": {"protocolVersion": requested, "capabilities": {}}})  # fmt: skip
        result = response.json()["result"]
        assert result["protocolVersion"] == expected
        assert result["capabilities"] == {"tools": {"listChanged": True}, "logging": {}}
        assert result["serverInfo"]["name"] == "V"


async def test_request_without_session_or_meta_is_400(client: httpx.AsyncClient) -> None:
    response = await post(client, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 400
    assert "Mcp-Session-Id" in response.json()["error"]["message"]


async def test_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    response = await post(client, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"mcp-session-id": "nope"})
    assert response.status_code == 404


async def test_get_and_delete_without_session_are_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v/mcp", headers={"accept": "text/event-stream"})).status_code == 405
    assert (await client.delete("/v/mcp")).status_code == 405
    assert (await client.put("/v/mcp", content=b"")).status_code == 405


def modern(method: str, id: int = 1, **params: Any) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"jsonrpc": "2.0", "id": id, "method": method, "params": {**params, "_meta": dict(MODERN_META)}}
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if "name" in params:
        headers["mcp-name"] = params["name"]
    return body, headers


async def test_modern_discover(client: httpx.AsyncClient) -> None:
    body, headers = modern("server/discover")
    result = (await post(client, body, headers)).json()["result"]
    assert "2026-07-28" in result["supportedVersions"] and "2025-11-25" in result["supportedVersions"]
    assert result["capabilities"] == {"tools": {"listChanged": True}, "logging": {}}
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "V"


async def test_modern_tools_list_is_private(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/list")
    result = (await post(client, body, headers)).json()["result"]
    assert result["cacheScope"] == "private" and result["ttlMs"] == 0 and result["tools"] == []


async def test_modern_header_mismatch_is_400_32020(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/call", name="t", arguments={})
    cases = [
        {**headers, "mcp-method": "tools/list"},
        {**headers, "mcp-name": "other"},
        {k: v for k, v in headers.items() if k != "mcp-name"},
        {k: v for k, v in headers.items() if k != "mcp-method"},
        {k: v for k, v in headers.items() if k != "mcp-protocol-version"},
    ]
    for h in cases:
        response = await post(client, body, h)
        assert response.status_code == 400, h
        assert response.json()["error"]["code"] == -32020, h


async def test_modern_name_header_base64(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/call", name="wörld", arguments={})
    headers["mcp-name"] = "=?base64?d8O2cmxk?="
    response = await post(client, body, headers)
    assert response.status_code == 200
    assert response.json()["error"]["message"] == "Unknown tool: wörld"


async def test_unsupported_modern_version_is_400_32022(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers["mcp-protocol-version"] = "2099-01-01"
    response = await post(client, body, headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022
    assert error["data"]["requested"] == "2099-01-01" and "2026-07-28" in error["data"]["supported"]


async def test_modern_unknown_method_is_404(client: httpx.AsyncClient) -> None:
    body, headers = modern("resources/list")
    response = await post(client, body, headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601


async def test_tool_outside_slice_never_reaches_a_backend(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/call", name="delete_repo", arguments={})
    response = await post(client, body, headers)
    assert response.json()["error"] == {"code": -32602, "message": "Unknown tool: delete_repo"}


async def test_mapped_tool_of_a_down_backend_names_it(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/call", name="t", arguments={})
    error = (await post(client, body, headers)).json()["error"]
    assert error["code"] == -32000 and error["message"].startswith("Backend /b:")
    assert error["data"] == {"backend": "/b"}


async def test_invalid_params(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/call", name="t", arguments=[1, 2])
    assert (await post(client, body, headers)).json()["error"]["code"] == -32602
    body, headers = modern("tools/list", cursor="%%%")
    assert (await post(client, body, headers)).json()["error"]["code"] == -32602


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"ready": False}  # which backends and tools exist is for admins only
    status = await client.get("/api/v1/status")
    assert status.status_code == 401 and status.headers["www-authenticate"].startswith("Bearer")


async def test_json_nested_past_the_depth_limit_is_400_invalid_request(client: httpx.AsyncClient) -> None:
    """The parser reads up to 1,024 levels but the gateway re-encodes at most 255: between the two, a
    message used to become an HTTP 500. One limit (MAX_DEPTH) now answers them all with 400."""
    from proxy._jsonrpc import MAX_DEPTH

    for depth in (MAX_DEPTH - 2, MAX_DEPTH + 1, 300, 600):  # the envelope and params add two levels
        nested = "[" * depth + "]" * depth
        raw = f'{{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{{"cursor":{nested}}}}}'.encode()
        response = await post(client, None, raw=raw, headers={"mcp-protocol-version": "2026-07-28"})
        if depth + 2 <= MAX_DEPTH:
            assert response.status_code != 400 or "nested" not in response.text
            continue
        assert response.status_code == 400, (depth, response.text)
        assert response.json()["id"] == 7
        assert response.json()["error"] == {
            "code": -32600,
            "message": f"Invalid request: JSON nested deeper than {MAX_DEPTH} levels",
        }


async def test_encoded_slashes_in_the_path_are_refused(client: httpx.AsyncClient) -> None:
    """`/v%2Fmcp` decodes to `/v/mcp`: a router reading the decoded path would serve a route the client
    never wrote. Encoded separators are refused instead, in any case."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": MODERN_META}}
    headers = {"content-type": "application/json", **ACCEPT, "mcp-protocol-version": "2026-07-28"}
    for path in ("/v%2Fmcp", "/v%2fmcp", "/x/..%2Fv/mcp", "/v%5Cmcp"):
        response = await client.post(path, json=body, headers={**headers, "mcp-method": "tools/list"})
        assert response.status_code == 400, (path, response.text)
        assert "encoded" in response.text
    response = await client.post("/v/mcp", json=body, headers={**headers, "mcp-method": "tools/list"})
    assert response.status_code == 200


async def test_modern_request_without_its_meta_is_400_invalid_params(client: httpx.AsyncClient) -> None:
    body, headers = modern("tools/list")
    for drop in ("io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities"):
        meta = {k: v for k, v in MODERN_META.items() if k != drop}
        response = await post(client, {**body, "params": {"_meta": meta}}, headers)
        assert response.status_code == 400, drop
        assert response.json()["error"]["code"] == -32602 and drop in response.json()["error"]["message"]
    no_meta = await post(client, {**body, "params": {}}, headers)
    assert no_meta.status_code == 400 and no_meta.json()["error"]["code"] == -32602
    # clientInfo is a SHOULD: a request without it is served.
    meta = {k: v for k, v in MODERN_META.items() if k != "io.modelcontextprotocol/clientInfo"}
    assert (await post(client, {**body, "params": {"_meta": meta}}, headers)).status_code == 200


async def test_initialize_of_the_2026_era_is_404(client: httpx.AsyncClient) -> None:
    response = await post(
        client,
        {"jsonrpc": "2.0", "id": 5, "method": "initialize",
         "params": {"protocolVersion": "2026-07-28", "capabilities": {}, "_meta": MODERN_META}},
        {"mcp-protocol-version": "2026-07-28", "mcp-method": "initialize"},
    )  # fmt: skip
    assert response.status_code == 404
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {"code": -32601, "message": "Method not found: initialize"},
    }


async def test_set_level_names_the_levels(client: httpx.AsyncClient) -> None:
    sid = await initialize(client)
    h = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
    bad = await post(client, {"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "loud"}}, h)
    assert bad.json()["error"]["code"] == -32602 and "debug, info" in bad.json()["error"]["message"]
    ok = await post(client, {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "error"}}, h)
    assert ok.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}


async def test_mcp_param_headers_must_carry_their_arguments() -> None:
    """SEP-2243: a tool whose schema marks `region` with x-mcp-header wants it in Mcp-Param-Region too."""
    app = create_app(config(), watch=False)
    await app.gateway.start()
    schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
    app.gateway.catalog.tools["/b"] = [{"name": "t", "inputSchema": schema}]  # what discovery would find
    app.gateway._rebuild(notify=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            body, headers = modern("tools/call", name="t", arguments={"region": "Hello"})
            for header, why in [
                (None, "is missing"),
                ("Bye", "does not match"),
                ("=?base64?SGVsbG8?=", "not valid base64"),  # no padding
                ("=?base64?SGVs!!!bG8=?=", "not valid base64"),
            ]:
                sent = {**headers, "mcp-param-region": header} if header is not None else headers
                response = await post(http, body, sent)
                assert response.status_code == 400, header
                assert response.json()["error"]["code"] == -32020 and why in response.json()["error"]["message"]
            # A matching header (plain or base64) passes the check; the call then fails at the absent backend.
            for header in ("Hello", "=?base64?SGVsbG8=?="):
                response = await post(http, body, {**headers, "mcp-param-region": header})
                assert response.status_code == 200 and response.json()["error"]["code"] == -32000, header
    finally:
        await app.gateway.close()

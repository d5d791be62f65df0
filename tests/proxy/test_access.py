"""Authorization, randomized: for many (subject, scopes, tool) combinations, what a client sees and may
call equals what the config says — zero escapes. In-process (the ASGI app, real gateway tokens in a
real state DB); the backend is unreachable, so an allowed call fails *at the backend* (-32000) and a
refused one is "Unknown tool" without any backend being contacted."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy import Config, create_app
from proxy._catalog import Offer
from proxy._state import StateDB

pytestmark = pytest.mark.anyio

SCOPES = ["a", "b", "c", "d"]
TOOLS = [f"t{i}" for i in range(8)]
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _policy(rng: random.Random) -> tuple[list[str], dict[str, list[str]]]:
    required = rng.sample(SCOPES, rng.randint(0, 1))
    overrides = {t: rng.sample(SCOPES, rng.randint(1, 2)) for t in TOOLS if rng.random() < 0.6}
    return required, overrides


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, StateDB, list[str], dict[str, list[str]]]]:
    rng = random.Random(20261121)
    required, overrides = _policy(rng)
    tools = [{"tool_name": "x", "backend_server_path": "/b", "alias": t} for t in TOOLS]
    # Every exposed tool needs a schema from discovery; the slice is built from a fake discovery below.
    config = Config.model_validate(
        {
            "auth": {"state_db": str(tmp_path / "state.db")},
            "backends": [{"path": "/b", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"}],
            "virtual_servers": [
                {
                    "path": "/v",
                    "server_name": "V",
                    "required_scopes": required,
                    "tool_mappings": tools,
                    "tool_scope_overrides": [{"tool_alias": t, "required_scopes": s} for t, s in overrides.items()],
                }
            ],
        }
    )
    app = create_app(config, watch=False)
    await app.gateway.start()
    # What discovery would have found (the backend is not running): one tool `x`, exposed eight times.
    app.gateway.catalog.tools["/b"] = [{"name": "x", "inputSchema": {"type": "object"}}]
    app.gateway._rebuild(notify=False)
    state = app.gateway.state
    assert state is not None
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            yield http, state, required, overrides
    finally:
        await app.gateway.close()


async def _rpc(http: httpx.AsyncClient, token: str, method: str, **params: Any) -> httpx.Response:
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
        "authorization": f"Bearer {token}",
    }
    if "name" in params or "uri" in params:
        headers["mcp-name"] = params.get("name", params.get("uri"))
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    return await http.post("/v/mcp", json=body, headers=headers)


async def test_random_subjects_see_and_call_exactly_what_the_config_allows(setup: Any) -> None:
    http, state, required, overrides = setup
    rng = random.Random(7)
    checked = 0
    for i in range(60):
        scopes = set(rng.sample(SCOPES, rng.randint(0, len(SCOPES))))
        token, _ = state.create_token(f"user{i}", rng.choice(["personal", "service"]), sorted(scopes))
        listing = await _rpc(http, token, "tools/list")
        if not set(required) <= scopes:
            assert listing.status_code == 403, (scopes, required)
            assert 'error="insufficient_scope"' in listing.headers["www-authenticate"]
            continue
        allowed = {t for t in TOOLS if set(overrides.get(t, [])) <= scopes}
        assert {t["name"] for t in listing.json()["result"]["tools"]} == allowed
        for tool in [*TOOLS, "not_mapped"]:
            error = (await _rpc(http, token, "tools/call", name=tool, arguments={})).json()["error"]
            if tool in allowed:
                assert error["code"] == -32000 and error["message"].startswith("Backend /b"), (tool, scopes)
            else:
                assert error == {"code": -32602, "message": f"Unknown tool: {tool}"}, (tool, scopes)
            checked += 1
    assert checked > 200  # enough admitted subjects to mean something


async def test_prompts_and_resources_a_caller_may_not_use_do_not_exist_for_it(tmp_path: Path) -> None:
    config = Config.model_validate({
        "auth": {"state_db": str(tmp_path / "state.db")},
        "backends": [{"path": "/b", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"}],
        "virtual_servers": [{
            "path": "/v", "server_name": "V",
            "prompt_mappings": [{"prompt_name": "p", "backend_server_path": "/b", "alias": "open"},
                                {"prompt_name": "q", "backend_server_path": "/b", "alias": "secret"}],
            "resource_mappings": [{"uri_prefix": "pub://", "backend_server_path": "/b"},
                                  {"uri_prefix": "hr://", "backend_server_path": "/b"}],
            "prompt_scope_overrides": [{"prompt_alias": "secret", "required_scopes": ["hr"]}],
            "resource_scope_overrides": [{"resource": "hr://", "required_scopes": ["hr"]}],
        }],
    })  # fmt: skip
    app = create_app(config, watch=False)
    await app.gateway.start()
    # What discovery would have found (the backend is not running).
    offer = Offer(resources=({"uri": "pub://a", "name": "a"}, {"uri": "hr://salaries", "name": "s"}),
                  prompts=({"name": "p"}, {"name": "q"}))  # fmt: skip
    app.gateway.catalog.offers["/b"] = offer
    app.gateway.catalog.tools["/b"] = []
    app.gateway._rebuild(notify=False)
    state = app.gateway.state
    assert state is not None
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080") as http:
            for scopes, prompts, uris in [
                ([], ["open"], ["pub://a"]),
                (["hr"], ["open", "secret"], ["pub://a", "hr://salaries"]),
            ]:
                token, _ = state.create_token(f"user-{len(scopes)}", "personal", scopes)
                listed = (await _rpc(http, token, "prompts/list")).json()["result"]["prompts"]
                assert [p["name"] for p in listed] == prompts
                assert [
                    r["uri"] for r in (await _rpc(http, token, "resources/list")).json()["result"]["resources"]
                ] == uris
                for name in ("open", "secret"):
                    error = (await _rpc(http, token, "prompts/get", name=name)).json()["error"]
                    # Allowed: forwarded, and the absent backend fails it. Not allowed: it does not exist.
                    assert error["code"] == (-32000 if name in prompts else -32602), (scopes, name, error)
                for uri in ("pub://a", "hr://salaries"):
                    error = (await _rpc(http, token, "resources/read", uri=uri)).json()["error"]
                    assert error["code"] == (-32000 if uri in uris else -32602), (scopes, uri, error)
    finally:
        await app.gateway.close()

"""Two real identity providers (oauth2-mock-server) whose users share a `sub`: issuer B's `alice` is
`partner:alice` at the gateway, so she is neither a user that roles name `alice` nor the owner of the
legacy session A's `alice` opened."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, start_fastmcp, start_idp

pytestmark = pytest.mark.e2e

SECRET = "cc-" + secrets.token_hex(12)
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def token(idp: str, audience: str, sub: str) -> str:
    data = {"grant_type": "client_credentials", "claims": json.dumps({"sub": sub, "aud": audience})}
    response = httpx.post(f"{idp}/token", data=data, auth=("gw", SECRET), timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def two_idps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("issuers")
    procs: list[Proc] = []
    gateway = None
    try:
        corp_proc, corp = start_idp(workdir, {"gw": SECRET})
        procs.append(corp_proc)
        partner_proc, partner = start_idp(workdir, {"gw": SECRET})
        procs.append(partner_proc)
        gamma, gamma_url = start_fastmcp("gamma", workdir)
        procs.append(gamma)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = {
            "auth": {
                "public_url": base,
                "jwt": [
                    {"issuer": corp, "jwks_url": f"{corp}/jwks"},
                    {"issuer": partner, "jwks_url": f"{partner}/jwks", "subject_prefix": "partner:"},
                ],
            },
            "backends": [{"path": "/plain", "transport": "streamable-http", "url": gamma_url}],
            "virtual_servers": [
                {
                    "path": "/v/mine",
                    "server_name": "Mine",
                    "public": False,
                    "roles": {"users": ["alice", "partner:bob"]},
                    "tool_mappings": [{"tool_name": "read_repo", "backend_server_path": "/plain"}],
                }
            ],
        }
        gateway = RunningGateway(config, workdir, name="issuers", port=port)
        yield {"corp": corp, "partner": partner, "url": gateway.url("/v/mine")}
    finally:
        if gateway is not None:
            gateway.stop()
        for proc in procs:
            proc.stop()


def post(url: str, bearer: str, body: dict[str, Any], extra: dict[str, str] | None = None) -> httpx.Response:
    headers = {**ACCEPT, "authorization": f"Bearer {bearer}", **(extra or {})}
    return httpx.post(url, json=body, headers=headers, timeout=30)


def test_the_same_sub_from_another_issuer_is_another_user(two_idps: dict[str, Any]) -> None:
    url = two_idps["url"]
    corp_alice = token(two_idps["corp"], url, "alice")
    partner_alice = token(two_idps["partner"], url, "alice")
    partner_bob = token(two_idps["partner"], url, "bob")
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
    opened = post(url, corp_alice, init)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    legacy = {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    assert post(url, corp_alice, listing, legacy).status_code == 200  # her own session
    taken = post(url, partner_alice, listing, legacy)
    assert taken.status_code in (403, 404), taken.text  # not hers: refused (404, or 403 as a non-user)
    refused = post(url, partner_alice, init)
    assert refused.status_code == 403 and "partner:alice" in refused.text  # roles name corp's alice only
    assert post(url, partner_bob, init).status_code == 200  # roles name partner:bob

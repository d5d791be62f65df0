"""Auth end to end: a real OAuth server (oauth2-mock-server), real backends that check the credential
they receive (FastMCP `gamma`), real MCP clients, the real CLI, a real recorder — one gateway."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proxy._vault import new_key
from tests.proxy.clients import fastmcp_client, sdk_session
from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, start_fastmcp, start_idp, wait_until
from tests.support.recorder import RunningRecorder

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

STATIC_SECRET = "static-" + secrets.token_hex(12)
CC_SECRET = "cc-" + secrets.token_hex(12)
CODE_SECRET = "code-" + secrets.token_hex(12)
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class Env:
    def __init__(self, gateway: RunningGateway, idp: str, recorder: RunningRecorder, workdir: Path, key: str) -> None:
        self.gateway, self.idp, self.recorder, self.workdir, self.key = gateway, idp, recorder, workdir, key
        self.secrets: set[str] = {STATIC_SECRET, CC_SECRET, CODE_SECRET}  # every secret used: none may leak

    def url(self, vs: str) -> str:
        return self.gateway.url(vs)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy", *args, "--config", str(self.gateway.config_path)],
            input=stdin,
            env={**os.environ, "SLICEWIRE_SECRET_KEY": self.key},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def token(self, subject: str, *flags: str) -> str:
        result = self.cli("tokens", "create", "--subject", subject, "--json", *flags)
        assert result.returncode == 0, result.stderr
        token = json.loads(result.stdout)["token"]
        self.secrets.add(token)
        return token

    def idp_token(self, **form: Any) -> str:
        data = {"grant_type": "client_credentials", **{k: v for k, v in form.items() if k != "claims"}}
        if "claims" in form:
            data["claims"] = json.dumps(form["claims"])
        response = httpx.post(f"{self.idp}/token", data=data, auth=("gw-cc", CC_SECRET), timeout=10)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        self.secrets.add(token)
        return token

    def idp_log(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.idp}/test/log", timeout=5).json()  # type: ignore[no-any-return]


def modern_post(
    url: str, token: str | None, method: str, extra: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    headers = {**ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": method, **(extra or {})}
    if "name" in params:
        headers["mcp-name"] = params["name"]
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": MODERN_META}}
    return httpx.post(url, json=body, headers=headers, timeout=30)


def tool_names(url: str, token: str | None) -> set[str]:
    response = modern_post(url, token, "tools/list")
    assert response.status_code == 200, response.text
    return {t["name"] for t in response.json()["result"]["tools"]}


def call(url: str, token: str, name: str, extra: dict[str, str] | None = None, **arguments: Any) -> dict[str, Any]:
    response = modern_post(url, token, "tools/call", extra, name=name, arguments=arguments)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def whoami(url: str, token: str, name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    answer = call(url, token, name, extra)
    assert "result" in answer, answer
    return answer["result"]["structuredContent"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("auth")
    procs: list[Proc] = []
    try:
        idp_proc, idp = start_idp(workdir, {"gw-cc": CC_SECRET, "gw-code": CODE_SECRET})
        procs.append(idp_proc)
        gamma, gamma_url = start_fastmcp("gamma", workdir)
        procs.append(gamma)
        strict, strict_url = start_fastmcp("gamma", workdir, env={"REQUIRE_AUTH": f"Bearer {STATIC_SECRET}"})
        procs.append(strict)
        recorder = RunningRecorder(workdir / "traces.duckdb", workdir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        def backend(path: str, url: str, **extra: Any) -> dict[str, Any]:
            return {"path": path, "transport": "streamable-http", "url": url, **extra}

        def tool(name: str, path: str, alias: str | None = None) -> dict[str, Any]:
            return {"tool_name": name, "backend_server_path": path, **({"alias": alias} if alias else {})}

        oauth = {"mode": "oauth2", "token_url": f"{idp}/token", "scopes": ["repo"]}
        config = {
            "recorder": {"target": recorder.target, "spool_dir": str(workdir / "spool"), "flush_interval_ms": 50},
            "auth": {
                "public_url": base,
                "jwt": [{"issuer": idp, "jwks_url": f"{idp}/jwks", "leeway_s": 5}],
                "groups": {"eng": ["repo:read"], "owners": ["repo:read", "repo:admin"]},
            },
            "backends": [
                backend("/plain", gamma_url, allow_header_override=True),
                backend(
                    "/static",
                    strict_url,
                    auth={"mode": "static", "headers": {"Authorization": "${env:SW_TEST_STATIC}", "X-Org": "acme"}},
                ),
                backend("/keyed", gamma_url, auth={"mode": "per_user_key", "instructions": "Ask IT for a key."}),
                backend("/pass", gamma_url, auth={"mode": "passthrough"}),
                backend(
                    "/cc",
                    gamma_url,
                    auth={
                        **oauth,
                        "grant": "client_credentials",
                        "client_id": "gw-cc",
                        "client_secret": "${env:SW_CC}",
                    },
                ),
                backend(
                    "/oauth",
                    gamma_url,
                    auth={
                        **oauth,
                        "grant": "authorization_code",
                        "authorization_url": f"{idp}/authorize",
                        "client_id": "gw-code",
                        "client_secret": "${env:SW_CODE}",
                        "refresh_margin_s": 30,
                    },
                ),
            ],
            "virtual_servers": [
                {
                    "path": "/v/repo",
                    "server_name": "Repos",
                    "public": False,
                    "required_scopes": ["repo:read"],
                    "tool_mappings": [tool("read_repo", "/plain"), tool("delete_repo", "/plain")],
                    "tool_scope_overrides": [{"tool_alias": "delete_repo", "required_scopes": ["repo:admin"]}],
                    "roles": {"managers": ["group:owners"]},
                },
                {
                    "path": "/v/mixed",
                    "server_name": "Mixed",
                    "public": False,
                    "tool_mappings": [
                        tool("whoami", "/plain", "plain_whoami"),
                        tool("whoami", "/static", "static_whoami"),
                        tool("whoami", "/keyed", "keyed_whoami"),
                        tool("whoami", "/pass", "pass_whoami"),
                        tool("whoami", "/cc", "cc_whoami"),
                    ],
                },
                {
                    "path": "/v/oauth",
                    "server_name": "OAuth",
                    "public": False,
                    "tool_mappings": [tool("whoami", "/oauth")],
                },
                {
                    "path": "/v/public",
                    "server_name": "Public",
                    "public": True,
                    "tool_mappings": [tool("read_repo", "/plain")],
                },
            ],
        }
        gateway_env = {
            "SW_TEST_STATIC": f"Bearer {STATIC_SECRET}",
            "SW_CC": CC_SECRET,
            "SW_CODE": CODE_SECRET,
            "SLICEWIRE_SECRET_KEY": new_key(),
        }
        gateway = RunningGateway(config, workdir, name="auth", port=port, env=gateway_env)
        yield Env(gateway, idp, recorder, workdir, gateway_env["SLICEWIRE_SECRET_KEY"])
        gateway.stop()
        recorder.stop()
    finally:
        for proc in procs:
            proc.stop()


# --- inbound ---------------------------------------------------------------------------------------


def test_no_token_is_401_with_protected_resource_metadata(env: Env) -> None:
    response = modern_post(env.url("/v/repo"), None, "tools/list")
    assert response.status_code == 401
    metadata_url = f"{env.gateway.base}/.well-known/oauth-protected-resource/v/repo/mcp"
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata_url}"'
    metadata = httpx.get(metadata_url, timeout=5).json()
    assert metadata["resource"] == env.url("/v/repo")
    assert metadata["authorization_servers"] == [env.idp]
    assert metadata["scopes_supported"] == ["repo:admin", "repo:read"]
    assert httpx.get(f"{env.gateway.base}/.well-known/oauth-protected-resource/nowhere/mcp").status_code == 404
    # A public virtual server needs no token.
    assert "read_repo" in tool_names(env.url("/v/public"), None)


def test_gateway_tokens_scopes_hide_tools_and_revocation(env: Env) -> None:
    url = env.url("/v/repo")
    reader = env.token("alice", "--scope", "repo:read")
    owner = env.token("olga", "--group", "owners")
    service = env.token("ci-bot", "--service", "--group", "eng")
    assert reader.startswith("swp_") and service.startswith("sws_")
    assert tool_names(url, reader) == {"read_repo"}
    assert tool_names(url, service) == {"read_repo"}
    assert tool_names(url, owner) == {"read_repo", "delete_repo"}
    assert tool_names(url, reader) == {"read_repo"}  # each view keeps its own encoded page
    # A tool the caller may not use answers exactly like a tool that does not exist.
    hidden = call(url, reader, "delete_repo", repo="x")["error"]
    missing = call(url, reader, "no_such_tool", repo="x")["error"]
    assert hidden == {**missing, "message": "Unknown tool: delete_repo"}
    assert missing["message"] == "Unknown tool: no_such_tool"
    assert call(url, owner, "delete_repo", repo="x")["result"]["content"][0]["text"] == "deleted x"
    # Valid token, not the server's scopes: 403 insufficient_scope naming them.
    outsider = env.token("zed")
    response = modern_post(url, outsider, "tools/list")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="repo:read"' in response.headers["www-authenticate"]
    # Revoked with the CLI: refused within a second or so.
    listed = json.loads(env.cli("tokens", "list", "--subject", "alice", "--json").stdout)
    assert len(listed) == 1 and "hash" not in listed[0] and reader not in json.dumps(listed)
    assert env.cli("tokens", "revoke", listed[0]["id"]).returncode == 0
    wait_until(lambda: modern_post(url, reader, "tools/list").status_code == 401, 10, what="revocation")
    again = env.cli("tokens", "revoke", listed[0]["id"])
    assert again.returncode == 1 and again.stderr.startswith("slicewire: no active token")


def test_roles_on_admin_endpoints_and_passthrough_warning(env: Env) -> None:
    base = env.gateway.base
    manager = env.token("mona", "--group", "owners")  # roles.managers of /v/repo: group:owners
    user = env.token("ursula", "--scope", "repo:read")

    def get(path: str, token: str) -> httpx.Response:
        return httpx.get(f"{base}{path}", headers={"authorization": f"Bearer {token}"}, timeout=10)

    mine = get("/api/v1/virtual-servers/v/repo/status", manager)
    assert mine.status_code == 200 and set(mine.json()["tools"]) == {"read_repo", "delete_repo"}
    # Not a manager: the server looks absent, as one that does not exist does.
    assert get("/api/v1/virtual-servers/v/repo/status", user).status_code == 404
    assert get("/api/v1/virtual-servers/v/mixed/status", manager).status_code == 404
    assert get("/api/v1/status", manager).status_code == 403  # auth.admins only
    assert get("/api/v1/status", env.gateway.admin_token).status_code == 200
    assert httpx.get(f"{base}/api/v1/status", timeout=10).status_code == 401
    assert "backend /pass uses auth mode 'passthrough'" in env.gateway.log()


async def test_legacy_session_is_bound_to_its_subject(env: Env) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        url = env.url("/v/repo")
        alice = env.token("alice2", "--scope", "repo:read")
        bob = env.token("bob2", "--scope", "repo:read")
        async with sdk_session(url, headers={"authorization": f"Bearer {alice}"}) as session:
            assert [t.name for t in (await session.list_tools()).tools] == ["read_repo"]
        opened = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": INITIALIZE},
            headers={**ACCEPT, "authorization": f"Bearer {alice}"},
        )  # fmt: skip
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        mine = await http.post(url, json=listing, headers={**ACCEPT, **session, "authorization": f"Bearer {alice}"})
        assert mine.status_code == 200
        # Bob presenting Alice's session id: no such session, as far as he can tell.
        theirs = await http.post(url, json=listing, headers={**ACCEPT, **session, "authorization": f"Bearer {bob}"})
        assert theirs.status_code == 404


def test_jwt_from_the_identity_provider(env: Env) -> None:
    url = env.url("/v/repo")
    good = env.idp_token(claims={"sub": "carol", "groups": ["eng"], "aud": url})
    assert tool_names(url, good) == {"read_repo"}
    owner = env.idp_token(claims={"sub": "odette", "groups": ["owners"], "aud": env.gateway.base})
    assert tool_names(url, owner) == {"read_repo", "delete_repo"}

    def refused(token: str, why: str, target: str = url) -> None:
        response = modern_post(target, token, "tools/list")
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge and why in challenge, challenge

    head, payload, signature = good.split(".")
    tampered = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    refused(f"{head}.{payload}.{tampered}", "signature")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["groups"] = ["owners"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    refused(f"{head}.{forged_payload}.{signature}", "signature")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    refused(f"{none_header}.{payload}.", "algorithm")
    refused(env.idp_token(expires_in=-120, claims={"sub": "carol", "aud": url}), "expired")
    # NumericDate claims are JSON numbers: a numeric string is not one (PyJWT alone would accept it).
    refused(env.idp_token(claims={"sub": "carol", "aud": url, "exp": "4102444800"}), "'exp' claim is not a number")
    refused(env.idp_token(claims={"sub": "carol", "aud": url, "nbf": "1"}), "'nbf' claim is not a number")
    refused(env.idp_token(claims={"sub": "carol", "aud": "https://elsewhere.example"}), "aud")
    refused(env.idp_token(claims={"sub": "carol", "aud": url, "iss": "https://evil.example"}), "issuer")
    # Issued for /v/repo: not good for /v/mixed, even once cached.
    refused(good, "aud", env.url("/v/mixed"))
    # An HS256 token signed with the issuer's public key as the HMAC secret (HS/RS confusion).
    jwks = httpx.get(f"{env.idp}/jwks").json()["keys"][0]
    public_pem = jwt.PyJWK(jwks).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": env.idp, "sub": "mallory", "aud": url, "exp": 4102444800, "scope": "repo:read"}
    confused = _hs256(claims, public_pem, jwks["kid"])
    refused(confused, "algorithm")


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    return f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


# --- outbound --------------------------------------------------------------------------------------


def test_outbound_credentials_per_backend_mode(env: Env) -> None:
    url = env.url("/v/mixed")
    dave = env.token("dave")
    # none: the backend gets no credential — least of all the caller's gateway token.
    assert whoami(url, dave, "plain_whoami") == {"authorization": None, "x_org": None}
    # static: the shared headers, from the environment; this backend refuses anything else, discovery
    # included, so its tool being listed proves discovery carried them too.
    assert "static_whoami" in tool_names(url, dave)
    assert whoami(url, dave, "static_whoami") == {"authorization": f"Bearer {STATIC_SECRET}", "x_org": "acme"}
    # passthrough: the caller's own token, unchanged.
    assert whoami(url, dave, "pass_whoami")["authorization"] == f"Bearer {dave}"
    # client credentials: a token the identity provider issued to the gateway's client.
    seen = whoami(url, dave, "cc_whoami")["authorization"]
    env.secrets.add(seen.removeprefix("Bearer "))
    assert jwt.decode(seen.removeprefix("Bearer "), options={"verify_signature": False})["client_id"] == "gw-cc"
    # per-user key: absent -> an error that says how to store one.
    error = call(url, dave, "keyed_whoami")["error"]
    assert error["code"] == -32003
    assert "slicewire creds set --backend /keyed" in error["message"] and "Ask IT for a key." in error["message"]
    dave_key = "dk-" + secrets.token_hex(16)
    env.secrets.add(dave_key)
    stored = httpx.put(
        f"{env.gateway.base}/api/v1/credentials/keyed",
        json={"key": dave_key},
        headers={"authorization": f"Bearer {dave}"},
    )
    assert stored.status_code == 200, stored.text
    assert whoami(url, dave, "keyed_whoami")["authorization"] == f"Bearer {dave_key}"
    # Another user, key stored with the CLI (from standard input): each gets their own.
    erin = env.token("erin")
    erin_key = "ek-" + secrets.token_hex(16)
    env.secrets.add(erin_key)
    result = env.cli("creds", "set", "--backend", "/keyed", "--subject", "erin", stdin=erin_key + "\n")
    assert result.returncode == 0, result.stderr
    assert whoami(url, erin, "keyed_whoami")["authorization"] == f"Bearer {erin_key}"
    assert whoami(url, dave, "keyed_whoami")["authorization"] == f"Bearer {dave_key}"
    listed = json.loads(env.cli("creds", "list", "--json").stdout)
    assert {(r["subject"], r["backend"]) for r in listed} >= {("dave", "/keyed"), ("erin", "/keyed")}
    assert dave_key not in json.dumps(listed)
    assert env.cli("creds", "revoke", "--backend", "/keyed", "--subject", "erin").returncode == 0
    wait_until(lambda: "error" in call(url, erin, "keyed_whoami"), 10, what="erin's key revoked")


def test_header_override_allowed_and_refused(env: Env) -> None:
    url = env.url("/v/mixed")
    frank = env.token("frank-override")
    override = {"x-mcp-headers": json.dumps({"/plain": {"X-Org": "override-org"}})}
    assert whoami(url, frank, "plain_whoami", override)["x_org"] == "override-org"
    alias = {"x-tfy-mcp-headers": json.dumps({"plain": {"X-Org": "via-alias"}})}
    assert whoami(url, frank, "plain_whoami", alias)["x_org"] == "via-alias"
    refused = modern_post(
        url, frank, "tools/call", {"x-mcp-headers": json.dumps({"/static": {"Authorization": "Bearer mine"}})},
        name="static_whoami", arguments={},
    )  # fmt: skip
    assert refused.status_code == 400
    assert "backend /static does not allow header overrides" in refused.json()["error"]["message"]
    flat = modern_post(url, frank, "tools/list", {"x-mcp-headers": json.dumps({"X-Org": "flat"})})
    assert flat.status_code == 400 and "several backends" in flat.json()["error"]["message"]
    injected = modern_post(
        url, frank, "tools/list", {"x-mcp-headers": json.dumps({"/plain": {"X-Org": "a\r\nEvil: 1"}})}
    )
    assert injected.status_code == 400 and "line break" in injected.json()["error"]["message"]


async def test_oauth_authorization_code_consent_and_refresh(env: Env) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        url = env.url("/v/oauth")
        grace = env.token("grace")
        await http.post(f"{env.idp}/test/settings", json={"access_ttl": 5}, timeout=5)  # below the 30 s refresh margin
        # The handshake (2026-07-28: server/discover) answers with where to authorize, as clients parse it.
        with pytest.raises(Exception) as caught:
            async with fastmcp_client(url, headers={"authorization": f"Bearer {grace}"}) as client:
                await client.list_tools()
        urls = _visit_urls(caught.value)
        assert len(urls) == 1 and urls[0].startswith(f"{env.idp}/authorize?")
        assert "code_challenge_method=S256" in urls[0] and "code_challenge=" in urls[0]
        # So does the 2025-11-25 initialize.
        initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INITIALIZE}
        answer = await http.post(url, json=initialize, headers={**ACCEPT, "authorization": f"Bearer {grace}"})
        legacy = answer.json()
        assert legacy["error"]["code"] == -32004 and re.search(r"Please visit:\s*(.+)$", legacy["error"]["data"])
        # The person at the browser: log in at the IdP as grace, follow the redirect to the gateway.
        to_gateway = await http.get(urls[0] + "&user=grace", follow_redirects=False, timeout=10)
        assert to_gateway.status_code == 302 and to_gateway.headers["location"].startswith(
            f"{env.gateway.base}/oauth/callback?"
        )
        page = await http.get(to_gateway.headers["location"], timeout=30)
        assert page.status_code == 200 and "Connected" in page.text
        assert (await http.get(to_gateway.headers["location"], timeout=30)).status_code == 400  # a code works once
        exchange = [e for e in env.idp_log() if e["grant_type"] == "authorization_code"][-1]
        assert exchange == {**exchange, "client_id": "gw-code", "user": "grace", "code_verifier": True}
        # Now the calls carry grace's own token; it expires within the margin, so the next use refreshes it.
        async with fastmcp_client(url, headers={"authorization": f"Bearer {grace}"}) as client:
            first = (await client.call_tool("whoami", {})).structured_content["authorization"]
            refreshes = len([e for e in env.idp_log() if e["grant_type"] == "refresh_token"])
            second = (await client.call_tool("whoami", {})).structured_content["authorization"]
        env.secrets.update({first.removeprefix("Bearer "), second.removeprefix("Bearer ")})
        assert jwt.decode(first.removeprefix("Bearer "), options={"verify_signature": False})["sub"] == "grace"
        assert jwt.decode(second.removeprefix("Bearer "), options={"verify_signature": False})["sub"] == "grace"
        assert len([e for e in env.idp_log() if e["grant_type"] == "refresh_token"]) > refreshes
        await http.post(f"{env.idp}/test/settings", json={"access_ttl": 3600}, timeout=5)
        # Revoked with the CLI: the next handshake asks again.
        assert env.cli("creds", "revoke", "--backend", "/oauth", "--subject", "grace").returncode == 0
        again = modern_post(url, grace, "server/discover")
        assert again.json()["error"]["code"] == -32004


def _visit_urls(exc: BaseException) -> list[str]:
    """The seeds' recipe: walk the exception chain for error data ending `Please visit: <urls>`."""
    current: BaseException | None = exc
    while current is not None:
        for candidate in (getattr(getattr(current, "error", None), "data", None), str(current)):
            if candidate and "Please visit:" in str(candidate):
                match = re.search(r"Please visit:\s*(\S+(?: , \S+)*)", str(candidate))
                if match:
                    return [u.strip() for u in match.group(1).split(" , ")]
        current = current.__cause__ or current.__context__
    raise AssertionError(f"no 'Please visit' URL in {exc!r}")


# --- secrets ---------------------------------------------------------------------------------------


def test_zz_no_secret_in_any_artifact(env: Env) -> None:
    """Runs last in this module: every secret the tests used is absent from logs, spans and DuckDB."""
    url = env.url("/v/mixed")
    henry = env.token("henry")
    whoami(url, henry, "static_whoami")
    whoami(url, henry, "pass_whoami")
    wait_until(lambda: env.gateway.status()["recorder"]["sent"] >= env.gateway.status()["recorder"]["emitted"], 20)
    env.gateway.stop()
    env.recorder.stop()
    # The gateway's log (debug level) and state DB, the recorder's log, DuckDB file and WAL, the spool.
    ours = ("auth", "recorder", "traces", "spans")
    artifacts = [p for p in env.workdir.rglob("*") if p.is_file() and p.name.startswith(ours)]
    assert {p.suffix for p in artifacts} >= {".log", ".duckdb", ".db"}
    # The echoed credentials were recorded, as markers: the check below looks at real spans.
    with duckdb.connect(str(env.recorder.db), read_only=True) as con:
        echoed = con.sql(
            "SELECT response_payload FROM spans WHERE tool_name = 'static_whoami' AND kind = 'SERVER'"
        ).fetchall()
    assert echoed and all("[REDACTED]" in row[0] for row in echoed)
    for path in artifacts:
        data = path.read_bytes()
        for secret in env.secrets:
            assert secret.encode() not in data, f"a secret ({secret[:6]}...) leaked into {path.name}"

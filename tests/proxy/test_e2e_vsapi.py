"""Virtual servers managed at run time through a real gateway: `slicewire vs` (the registry's
commands) against the admin API, a real client seeing the change without reconnecting, roles, ETags,
the registry's example JSON round-tripping, audit spans in the flight recorder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy._state import StateDB
from recorder import connect
from tests.proxy.clients import fastmcp_client
from tests.support.gateway import RunningGateway
from tests.support.procs import wait_until
from tests.support.recorder import RunningRecorder

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

EXAMPLE = Path(__file__).parent.parent / "data" / "virtual-server-combined-example.json"
PREFIX = "/api/v1/virtual-servers"


@dataclass
class Admin:
    gw: RunningGateway
    tokens: dict[str, Path]  # who -> token file
    rec: RunningRecorder

    def headers(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[who].read_text().strip()}"}

    def api(self, method: str, path: str, who: str | None = "ops", **kwargs: Any) -> httpx.Response:
        headers = {**(self.headers(who) if who else {}), **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.gw.base}{PREFIX}{path}", headers=headers, timeout=10, **kwargs)

    def vs(self, *args: str, who: str = "ops") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SLICEWIRE_URL": self.gw.base, "SLICEWIRE_TOKEN_FILE": str(self.tokens[who])}
        return subprocess.run([sys.executable, "-m", "proxy", "vs", *args], capture_output=True, text=True,
                              timeout=60, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def admin(backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    tmp = tmp_path_factory.mktemp("vsapi")
    (tmp / "vs.d").mkdir()
    rec = RunningRecorder(tmp / "audit.duckdb", tmp)
    state = tmp / "state.db"
    config = {
        "backends": [
            {"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"]},
            # The registry example's backends, served by alpha (it has none of their tools).
            {"path": "/context7", "transport": "streamable-http", "url": backends["alpha"]},
            {"path": "/currenttime", "transport": "streamable-http", "url": backends["alpha"]},
        ],
        "virtual_servers_dir": "vs.d",
        "virtual_servers": [{"path": "/virtual/inline", "server_name": "Inline",
                             "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/alpha"}]}],
        "auth": {"admins": ["ops"], "state_db": str(state)},
        "recorder": {"target": rec.target, "spool_dir": "spool", "flush_interval_ms": 50},
    }  # fmt: skip
    db = StateDB(state)
    tokens = {}
    for who in ("ops", "alice", "bob", "carol"):
        token, _ = db.create_token(who, "personal")
        tokens[who] = tmp / f"{who}.token"
        tokens[who].write_text(token)
    db.close()
    gw = RunningGateway(config, tmp, "vsapi")
    try:
        yield Admin(gw, tokens, rec)
    finally:
        gw.stop()
        rec.stop()


def server(path: str, tools: list[str], **extra: Any) -> dict[str, Any]:
    return {"path": path, "server_name": f"Server {path}", "description": "for the tests",
            "tool_mappings": [{"tool_name": t, "backend_server_path": "/alpha"} for t in tools],
            "roles": {"managers": ["alice"], "users": ["bob"]}, **extra}  # fmt: skip


async def test_a_server_created_with_the_cli_is_served_at_once_and_updates_reach_a_connected_client(
    admin: Admin, tmp_path: Path
) -> None:
    file = tmp_path / "tools.json"
    file.write_text(json.dumps(server("/virtual/tools", ["echo"])))
    made = admin.vs("create", "--config", str(file))
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("Virtual server created: /virtual/tools")
    created = time.monotonic()
    token = admin.tokens["bob"].read_text().strip()
    async with fastmcp_client(admin.gw.url("/virtual/tools"), headers={"authorization": f"Bearer {token}"}) as client:
        assert [t.name for t in await client.list_tools()] == ["echo"]
        assert time.monotonic() - created < 1.0
        file.write_text(json.dumps(server("/virtual/tools", ["echo", "add"])))
        updated = admin.vs("update", "--path", "/virtual/tools", "--config", str(file), who="alice")  # a manager
        assert updated.returncode == 0, updated.stderr
        changed = time.monotonic()
        assert sorted(t.name for t in await client.list_tools()) == ["add", "echo"]  # same session
        assert time.monotonic() - changed < 1.0
        assert (await client.call_tool("add", {"a": 2, "b": 3})).data == 5

    shown = admin.vs("get", "--path", "/virtual/tools")
    assert shown.returncode == 0, shown.stderr
    assert "Virtual MCP Server: /virtual/tools" in shown.stdout and "Created By: ops" in shown.stdout
    assert "    - add\n      Backend: /alpha" in shown.stdout
    listed = json.loads(admin.vs("list", "--json", who="bob").stdout)
    assert [s["path"] for s in listed["virtual_servers"]] == ["/virtual/inline", "/virtual/tools"]
    assert [s["path"] for s in json.loads(admin.vs("list", "--json", who="carol").stdout)["virtual_servers"]] == [
        "/virtual/inline"]  # fmt: skip
    files = list((admin.gw.workdir / "vs.d").glob("*.json"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600

    toggled = admin.vs("toggle", "--path", "/virtual/tools", "--enabled", "false", who="alice")
    assert toggled.returncode == 0, toggled.stderr
    async with httpx.AsyncClient() as http:
        assert (
            await http.post(admin.gw.url("/virtual/tools"), json={}, headers=admin.headers("bob"))
        ).status_code == 404
    assert json.loads(admin.vs("list", "--enabled-only", "--json").stdout)["total_count"] == 1
    assert admin.vs("toggle", "--path", "/virtual/tools", "--enabled", "true").returncode == 0

    assert admin.vs("rate", "--path", "/virtual/tools", "--rating", "4", who="bob").returncode == 0
    assert admin.vs("rate", "--path", "/virtual/tools", "--rating", "2", who="alice").returncode == 0
    assert json.loads(admin.vs("rating", "--path", "/virtual/tools", "--json", who="bob").stdout) == {
        "path": "/virtual/tools", "num_stars": 3.0, "rating_count": 2}  # fmt: skip
    details = json.loads(admin.vs("rating", "--path", "/virtual/tools", "--json", who="alice").stdout)
    assert details["rating_details"] == [{"user": "bob", "rating": 4}, {"user": "alice", "rating": 2}]

    deleted = admin.vs("delete", "--path", "/virtual/tools", "--force")
    assert deleted.returncode == 0, deleted.stderr
    assert not list((admin.gw.workdir / "vs.d").glob("*.json"))
    assert admin.api("GET", "/virtual/tools").status_code == 404


def test_roles_etags_validation_and_read_only_servers(admin: Admin) -> None:
    doc = server("/virtual/roles", ["echo"])
    assert admin.api("POST", "", who="alice", json=doc).status_code == 403  # only admins create
    assert admin.api("POST", "", who=None, json=doc).status_code == 401
    made = admin.api("POST", "", json=doc)
    assert made.status_code == 201 and made.headers["location"] == f"{PREFIX}/virtual/roles"
    assert admin.api("POST", "", json=doc).status_code == 409  # the path is taken

    got = admin.api("GET", "/virtual/roles", who="bob")  # a user reads what it may call
    assert got.status_code == 200 and got.json()["created_by"] == "ops"
    assert admin.api("GET", "/virtual/roles", who="carol").status_code == 404  # a stranger sees nothing
    assert admin.api("GET", "/virtual/roles", who=None).status_code == 401
    etag = got.headers["etag"]
    assert admin.api("PUT", "/virtual/roles", who="bob", json=doc).status_code == 403  # users do not change it
    assert admin.api("POST", "/virtual/roles/toggle", who="bob", json={"enabled": False}).status_code == 403
    assert admin.api("DELETE", "/virtual/roles", who="alice").status_code == 403  # managers do not delete
    widened = {**doc, "roles": {"managers": ["alice"], "users": ["bob", "carol"]}}
    refused = admin.api("PUT", "/virtual/roles", who="alice", json=widened)
    assert refused.status_code == 403 and "only admins" in refused.json()["error"]

    # Two writers read the same version; the second one's write is refused.
    first = admin.api("PUT", "/virtual/roles", who="alice", json={**doc, "description": "one"},
                      headers={"if-match": etag})  # fmt: skip
    second = admin.api("PUT", "/virtual/roles", json={**doc, "description": "two"}, headers={"if-match": etag})
    assert first.status_code == 200 and second.status_code == 412
    assert admin.api("GET", "/virtual/roles").json()["description"] == "one"

    bad = admin.api("PUT", "/virtual/roles", json={**doc, "tool_mappings": [{"tool_name": "echo"}], "tags": "x"})
    assert bad.status_code == 422
    assert bad.json()["problems"] == [
        "body: tool_mappings[0].backend_server_path: required field is missing",
        "body: tags: input should be a valid list, found 'x'",
    ]
    missing = admin.api("PUT", "/virtual/roles", json=server("/virtual/roles", ["nope"]))
    assert missing.status_code == 422 and missing.json()["problems"] == [
        "body: tool_mappings[0].tool_name: backend /alpha has no tool named 'nope' (pass allow_missing=true to "
        "create it anyway)"]  # fmt: skip
    unknown = admin.api("PUT", "/virtual/roles", json={**doc, "tool_mappings": [
        {"tool_name": "echo", "backend_server_path": "/nowhere"}]})  # fmt: skip
    assert unknown.status_code == 422 and "/nowhere" in " ".join(unknown.json()["problems"])
    inline = admin.api(
        "PUT",
        "/virtual/inline",
        json={
            "path": "/virtual/inline",
            "server_name": "x",
            "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/alpha"}],
        },
    )
    assert inline.status_code == 409 and "defined in the config file" in inline.json()["error"]
    assert admin.api("DELETE", "/virtual/roles").status_code == 200


def test_the_registry_example_round_trips_unchanged_and_changes_are_audited(admin: Admin) -> None:
    made = admin.vs("create", "--config", str(EXAMPLE), "--allow-missing")
    assert made.returncode == 0, made.stderr
    shown = json.loads(admin.vs("get", "--path", "/virtual/combined-tools", "--json").stdout)
    example = json.loads(EXAMPLE.read_text())
    assert {k: v for k, v in shown.items() if k in example} == example
    stored = [json.loads(f.read_text()) for f in (admin.gw.workdir / "vs.d").glob("*.json")]
    assert example in stored
    refused = admin.vs("create", "--config", str(EXAMPLE))
    assert refused.returncode == 1 and "exists already" in refused.stderr
    assert admin.vs("delete", "--path", "/virtual/combined-tools", "--force").returncode == 0

    def audited() -> list[dict[str, Any]]:
        with connect(admin.rec.target) as r:
            return r.rows("SELECT method, subject, request_payload FROM spans WHERE kind = 'SERVER' "
                          "AND method LIKE 'admin/%' AND virtual_server = '/virtual/combined-tools' "
                          "ORDER BY start_ns")  # fmt: skip

    wait_until(lambda: len(audited()) >= 2, 10, what="the audit spans recorded")
    rows = audited()
    assert [(r["method"], r["subject"]) for r in rows] == [
        ("admin/virtual-servers/create", "ops"), ("admin/virtual-servers/delete", "ops")]  # fmt: skip
    create, delete = (json.loads(r["request_payload"]) for r in rows)
    assert create["before"] is None and create["after"] == example
    assert delete["before"] == example and delete["after"] is None


def test_cli_bad_input(admin: Admin, tmp_path: Path) -> None:
    missing = admin.vs("create", "--config", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and missing.stderr.startswith("slicewire: --config")
    (tmp_path / "bad.json").write_text("{")
    assert "invalid JSON" in admin.vs("create", "--config", str(tmp_path / "bad.json")).stderr
    toggled = admin.vs("toggle", "--path", "/virtual/inline", "--enabled", "maybe")
    assert toggled.returncode == 2 and "expected true or false" in toggled.stderr
    gone = admin.vs("get", "--path", "/virtual/none")
    assert gone.returncode == 1 and gone.stderr.startswith("slicewire: 404: no virtual server /virtual/none")
    rated = admin.vs("rate", "--path", "/virtual/inline", "--rating", "9")
    assert rated.returncode == 2

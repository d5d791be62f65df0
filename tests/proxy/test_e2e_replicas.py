"""Two gateway replicas behind a real round-robin load balancer (HAProxy), sharing their state on a real
PostgreSQL and passing what one cannot finish alone over a real Redis; one recorder for both.

One client's 2025-11-25 session alternates between the replicas request by request (HAProxy names the
one that answered in `X-Served-By`): calls, elicitations answered on the other replica, cancellations
sent to the other replica, a backend's `list_changed`; then a replica is killed mid-session, the session
goes on with the other, and every call the client was answered has its span in DuckDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as mt
import pytest

from proxy._state import StateDB
from recorder import connect
from tests.support.gateway import RunningGateway
from tests.support.procs import start_fastmcp, wait_until
from tests.support.recorder import RunningRecorder
from tests.support.services import HAProxy, Postgres, Redis

from .clients import Notifications, fastmcp_client, sdk_session, text_of, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

TOOLS = ["echo", "ask", "sleep", "grow", "sprout", "call_log"]


@dataclass
class Cluster:
    alpha: str
    replicas: dict[str, RunningGateway]
    balancer: HAProxy
    recorder: RunningRecorder
    token: str

    @property
    def url(self) -> str:
        return f"{self.balancer.base}/virtual/r/mcp"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    started: list[Any] = []
    try:
        pg = Postgres.start(tmp)
        started.append(pg)
        redis = Redis.start(tmp)
        started.append(redis)
        alpha_proc, alpha = start_fastmcp("alpha", tmp)
        started.append(alpha_proc)
        recorder = RunningRecorder(tmp / "traces.duckdb", tmp)
        started.append(recorder)
        shared = tmp / "virtual-servers"
        shared.mkdir()
        state = StateDB(pg.url)
        token, _ = state.create_token("alice", "personal", description="tests/proxy/test_e2e_replicas.py")
        state.close()
        config = {
            "backends": [{"path": "/alpha", "transport": "streamable-http", "url": alpha,
                          "protocol_version": "2025-11-25"}],
            "virtual_servers": [{"path": "/virtual/r", "server_name": "R", "public": False, "tool_mappings": [
                {"tool_name": name, "backend_server_path": "/alpha"} for name in TOOLS]}],
            "auth": {"state_db": pg.url},
            "sessions": {"channel": redis.url},
            "virtual_servers_dir": str(shared),  # storage every replica mounts
            "recorder": {"target": recorder.target, "flush_interval_ms": 50},
        }  # fmt: skip
        replicas = {}
        for name in ("gw1", "gw2"):
            # --no-reload: a change made through one replica's admin API reaches the other over Redis only.
            replicas[name] = RunningGateway(config, tmp, name=name, args=("--no-reload",))
            started.append(replicas[name])
        balancer = HAProxy.start(tmp, {name: gw.port for name, gw in replicas.items()})
        started.append(balancer)
        yield Cluster(alpha, replicas, balancer, recorder, token)
    finally:
        for thing in reversed(started):
            thing.stop()


class Served:
    """Which replica answered each HTTP request of the session, from HAProxy's X-Served-By."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []  # (what: a JSON-RPC method, "answer" or "GET"), replica

    async def hook(self, response: Any) -> None:
        request = response.request
        what = request.method
        if request.method == "POST":
            body = json.loads(request.content or b"{}")
            what = body.get("method") or "answer"
        self.log.append((what, response.headers.get("x-served-by", "?")))

    def by(self, what: str) -> list[str]:
        return [replica for method, replica in self.log if method == what]


def client(token: str, served: Served) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        headers={"authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [served.hook]},
    )


async def call_log(url: str) -> list[str]:
    async with fastmcp_client(url) as direct:
        return list((await direct.call_tool("call_log", {})).structured_content["result"])


def test_a_server_made_through_one_replica_is_served_by_the_other(cluster: Cluster) -> None:
    import httpx

    gw1, gw2 = cluster.replicas["gw1"], cluster.replicas["gw2"]
    assert gw2.proc.alive()  # runs before the test that kills a replica
    doc = {"path": "/virtual/made", "server_name": "Made", "public": True,
           "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/alpha"}]}  # fmt: skip
    admin = {"authorization": f"Bearer {gw1.admin_token}"}
    made = httpx.post(f"{gw1.base}/api/v1/virtual-servers", json=doc, headers=admin, timeout=10)
    assert made.status_code == 201, made.text
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    def served_by_gw2() -> bool:
        return httpx.post(gw2.url("/virtual/made"), json=init, headers=headers, timeout=10).status_code == 200

    wait_until(served_by_gw2, 10, what="gw2 serving the server made through gw1")


def test_a_modern_retry_is_resumed_by_the_replica_holding_the_call(cluster: Cluster) -> None:
    """A 2026-07-28 client, a 2025-11-25 backend that elicits: the first request parks the backend's
    call on one replica, round robin sends the retry to the other, which has the first resume it (Redis)."""
    import httpx

    headers = {"authorization": f"Bearer {cluster.token}", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "ask"}  # fmt: skip
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}  # fmt: skip
    with httpx.Client(headers=headers, timeout=30) as http:

        def call(**extra: Any) -> tuple[dict[str, Any], str]:
            params = {"name": "ask", "arguments": {"question": "Name?"}, "_meta": meta, **extra}
            body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params}
            response = http.post(cluster.url, json=body)
            return response.json(), response.headers["x-served-by"]

        for n in range(3):
            asked, first = call()
            (key,) = asked["result"]["inputRequests"]
            answer = {key: {"action": "accept", "content": {"value": f"grace-{n}"}}}
            done, second = call(inputResponses=answer, requestState=asked["result"]["requestState"])
            assert done["result"]["content"][0]["text"] == f"hello grace-{n}", done
            assert first != second  # round robin: the retry reached the replica not holding the call
    # Each retry's trace (where it arrived) has the resumed backend call, recorded where it ran.
    for gw in cluster.replicas.values():
        wait_until(lambda gw=gw: _recorded(gw), 20, what="spans shipped")
    with connect(cluster.recorder.target) as db:
        resumed = db.rows(
            "SELECT s.trace_id FROM spans s JOIN spans r ON r.trace_id = s.trace_id AND r.kind = 'SERVER' "
            "WHERE s.name = 'tools/call ask (resumed)' AND s.kind = 'CLIENT'"
        )
    assert len(resumed) == 3


async def test_one_session_across_two_replicas_and_one_killed(cluster: Cluster) -> None:
    served = Served()
    asked = 0

    async def elicit(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        nonlocal asked
        asked += 1
        return mt.ElicitResult(action="accept", content={"value": f"ada-{asked}"})

    seen = Notifications()
    echoes = 0
    async with sdk_session(
        cluster.url, http=client(cluster.token, served), elicitation_callback=elicit, message_handler=seen.handler
    ) as session:
        for n in range(8):
            assert text_of(await session.call_tool("echo", {"text": f"hop {n}"})) == f"hop {n}"
            echoes += 1
        assert set(served.by("tools/call")) == {"gw1", "gw2"}  # round robin: the session is served by both

        # Elicitations: the call waits on one replica, the client's answer is a new request (the next replica).
        for n in range(1, 5):
            assert text_of(await session.call_tool("ask", {"question": f"Name {n}?"})) == f"hello ada-{n}"
        calls, answers = served.by("tools/call")[-4:], served.by("answer")[-4:]
        assert any(call != answer for call, answer in zip(calls, answers, strict=True)), served.log

        # Cancellations reach the backend whichever replica receives notifications/cancelled.
        for _ in range(2):
            before = len(await call_log(cluster.alpha))
            with anyio.move_on_after(0.5) as scope:
                await session.call_tool("sleep", {"seconds": 30})
            assert scope.cancelled_caught
            await until(lambda b=before: _cancelled_since(cluster.alpha, b), within_s=15)
        sleeps, cancels = served.by("tools/call")[-2:], served.by("notifications/cancelled")[-2:]
        assert any(s != c for s, c in zip(sleeps, cancels, strict=True)), served.log

        # A backend's list_changed: heard by the replica that called `grow`, told to the other over Redis;
        # the client's GET stream (on either) gets the notification, and both replicas list the new tool.
        assert text_of(await session.call_tool("grow", {"name": "sprout"})) == "added sprout"
        await seen.wait_for("notifications/tools/list_changed")
        for _ in range(4):
            assert "sprout" in [t.name for t in (await session.list_tools()).tools]
        assert set(served.by("tools/list")[-4:]) == {"gw1", "gw2"}

        # A replica dies mid-session (its recording helper outlives it and ships what it was handed).
        victim = cluster.replicas["gw2"]
        wait_until(lambda: _recorded(victim), 20, what="gw2's spans handed to its helper and shipped")
        victim.proc.kill()
        # Until its health check sees the replica gone (<= 250 ms here), HAProxy may still send it a request.
        wait_until(lambda: "gw2 is DOWN" in cluster.balancer.proc.output(), 10, what="HAProxy to see gw2 gone")
        for n in range(6):
            assert text_of(await session.call_tool("echo", {"text": f"after {n}"})) == f"after {n}"
            echoes += 1
        assert served.by("tools/call")[-6:] == ["gw1"] * 6

    survivor = cluster.replicas["gw1"]
    wait_until(lambda: _recorded(survivor), 20, what="gw1's spans shipped")
    with connect(cluster.recorder.target) as db:  # the recorder still runs: ask it
        rows = db.rows("SELECT gateway_instance, session_id FROM spans "
                       "WHERE kind = 'SERVER' AND name = 'tools/call echo'")  # fmt: skip
    assert len(rows) == echoes == 14
    assert len({row["session_id"] for row in rows}) == 1  # one session, whichever replica served it
    assert len({row["gateway_instance"] for row in rows}) == 2


async def _cancelled_since(url: str, before: int) -> bool:
    return "sleep-cancelled" in (await call_log(url))[before:]


def _recorded(gw: RunningGateway) -> bool:
    counters = gw.status()["recorder"]
    return bool(counters["sent"] >= counters["emitted"] > 0)


async def test_a_token_revoked_in_postgres_is_refused_by_every_replica(cluster: Cluster, tmp_path: Path) -> None:
    state = StateDB(cluster.replicas["gw1"].config["auth"]["state_db"])
    token, record = state.create_token("bob", "personal")
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
               "content-type": "application/json", "mcp-protocol-version": "2025-11-25"}  # fmt: skip
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    alive = [gw for gw in cluster.replicas.values() if gw.proc.alive()]
    async with httpx2.AsyncClient(timeout=10) as http:
        for gw in alive:
            response = await http.post(gw.url("/virtual/r"), json=init, headers=headers)
            assert response.status_code == 200
            session = {**headers, "mcp-session-id": response.headers["mcp-session-id"]}
            assert (await http.post(gw.url("/virtual/r"), json=ping, headers=session)).status_code == 200
        assert state.revoke_token(record.id)

        async def refused_everywhere() -> bool:
            codes = {(await http.post(gw.url("/virtual/r"), json=init, headers=headers)).status_code for gw in alive}
            return codes == {401}

        await until(refused_everywhere, within_s=15)
    state.close()

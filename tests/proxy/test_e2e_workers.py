"""`slicewire serve --workers 2`: two gateway processes on one port, any of them serving any request of a
2025-11-25 session — the client here opens a new connection per request, so the kernel spreads them."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp.types as mt
import pytest

from tests.support.gateway import RunningGateway
from tests.support.procs import start_fastmcp, wait_until

from .clients import Notifications, fastmcp_client, sdk_session, text_of, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

TOOLS = ["echo", "ask", "sleep", "grow", "sprout", "call_log"]


@pytest.fixture(scope="module")
def alpha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_fastmcp("alpha", tmp_path_factory.mktemp("workers-alpha"))
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def gateway(alpha: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = {
        "backends": [{"path": "/alpha", "transport": "streamable-http", "url": alpha,
                      "protocol_version": "2025-11-25"}],
        "virtual_servers": [
            {"path": "/virtual/w", "server_name": "W", "tool_mappings": [
                {"tool_name": name, "backend_server_path": "/alpha"} for name in TOOLS]},
            {"path": "/virtual/approve", "server_name": "A", "tool_mappings": [
                {"tool_name": "echo", "backend_server_path": "/alpha", "guardrails": {"approval": "required"}}]},
        ],
    }  # fmt: skip
    gw = RunningGateway(config, tmp_path_factory.mktemp("workers"), args=("--workers", "2"))
    yield gw
    gw.stop()


def worker_pids(gw: RunningGateway, want: int = 2, within_s: float = 20) -> set[int]:
    """The pids that answer /api/v1/status, each asked on a new connection, until `want` are seen."""
    seen: set[int] = set()

    def enough() -> bool:
        seen.add(gw.status()["pid"])  # httpx.get: one connection per call
        return len(seen) >= want

    wait_until(enough, within_s, interval=0.02, what=f"{want} workers answering")
    return seen


def fresh_connections() -> httpx2.AsyncClient:
    """A client that never reuses a connection: each request may reach the other worker."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(30.0, read=300.0), limits=httpx2.Limits(max_keepalive_connections=0)
    )


async def call_log(url: str) -> list[str]:
    async with fastmcp_client(url) as direct:
        return list((await direct.call_tool("call_log", {})).structured_content["result"])


def test_two_workers_answer_and_the_supervisor_says_so(gateway: RunningGateway) -> None:
    pids = worker_pids(gateway)
    assert gateway.proc.pid not in pids  # the supervisor serves nothing itself
    assert "2 workers" in gateway.log()


async def test_a_legacy_session_is_served_by_both_workers(gateway: RunningGateway, alpha: str) -> None:
    answers: list[str] = []

    async def elicit(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        answers.append(params.message)
        return mt.ElicitResult(action="accept", content={"value": f"ada-{len(answers)}"})

    seen = Notifications()
    async with sdk_session(
        gateway.url("/virtual/w"), http=fresh_connections(), elicitation_callback=elicit, message_handler=seen.handler
    ) as session:
        assert [t.name for t in (await session.list_tools()).tools] == ["echo", "ask", "sleep", "grow", "call_log"]
        for n in range(12):
            assert text_of(await session.call_tool("echo", {"text": f"hop {n}"})) == f"hop {n}"
        # Elicitation: the answer is a new POST, which may reach the worker not holding the call.
        for n in range(1, 5):
            assert text_of(await session.call_tool("ask", {"question": f"Name {n}?"})) == f"hello ada-{n}"
        # Cancellation: notifications/cancelled may reach the worker not running the call.
        for _ in range(3):
            before = len(await call_log(alpha))
            with anyio.move_on_after(0.5) as scope:
                await session.call_tool("sleep", {"seconds": 30})
            assert scope.cancelled_caught
            await until(lambda b=before: _cancelled_since(alpha, b), within_s=15)
        # A backend's list_changed, heard by the worker that called `grow`, reaches the session's GET stream
        # (wherever it is), and every worker's slice has the new tool.
        assert text_of(await session.call_tool("grow", {"name": "sprout"})) == "added sprout"
        await seen.wait_for("notifications/tools/list_changed")
        for _ in range(4):
            names = [t.name for t in (await session.list_tools()).tools]
            assert "sprout" in names
            assert text_of(await session.call_tool("sprout", {})) == "sprout is new"


async def _cancelled_since(url: str, before: int) -> bool:
    return "sleep-cancelled" in (await call_log(url))[before:]


HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}


def initialize(url: str) -> dict[str, str]:
    """A raw 2025-11-25 initialize; the headers that use its session."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    session_id = httpx.post(url, json=init, headers=HEADERS, timeout=10).headers["mcp-session-id"]
    return {**HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}


def test_a_session_deleted_on_one_worker_is_gone_on_both(gateway: RunningGateway) -> None:
    url = gateway.url("/virtual/w")
    session = initialize(url)
    for _ in range(6):  # new connections: both workers open the sealed id
        assert httpx.post(url, json=PING, headers=session, timeout=10).status_code == 200
    assert httpx.delete(url, headers=session, timeout=10).status_code == 200

    def refused_everywhere() -> bool:
        codes = {httpx.post(url, json=PING, headers=session, timeout=10).status_code for _ in range(8)}
        return codes == {404}

    wait_until(refused_everywhere, 10, what="the deleted session refused by every worker")


def test_a_tampered_session_id_is_not_found(gateway: RunningGateway) -> None:
    url = gateway.url("/virtual/w")
    session = initialize(url)
    sid = session["mcp-session-id"]
    flipped = sid[:-3] + ("A" if sid[-3] != "A" else "B") + sid[-2:]
    response = httpx.post(url, json=PING, headers={**session, "mcp-session-id": flipped}, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Session not found")


def test_a_modern_clients_approval_is_taken_by_either_worker_once(gateway: RunningGateway) -> None:
    """The approval's requestState is sealed, not kept in one worker: the retry (a new connection, so
    either worker) goes on; the same state presented again is refused by both."""
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "tools/call", "mcp-name": "echo"}  # fmt: skip
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}  # fmt: skip
    yes = {"approval": {"action": "accept", "content": {"approve": True}}}
    url = gateway.url("/virtual/approve")

    def call(text: str, **extra: Any) -> dict[str, Any]:
        params = {"name": "echo", "arguments": {"text": text}, "_meta": meta, **extra}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        return dict(httpx.post(url, json=body, headers=headers, timeout=10).json())

    for n in range(6):
        asked = call(f"approved {n}")
        state = asked["result"]["requestState"]
        done = call(f"approved {n}", inputResponses=yes, requestState=state)
        assert done["result"]["content"][0]["text"] == f"approved {n}", done
    for _ in range(6):  # the last state again, on either worker: used up
        again = call("approved 5", inputResponses=yes, requestState=state)
        assert "unknown, expired, or for another call" in again["error"]["message"]


def test_a_modern_clients_retry_resumes_the_backend_call_in_the_other_worker(gateway: RunningGateway) -> None:
    """A 2025-11-25 backend elicits mid-call; the 2026-07-28 client gets InputRequiredResult and retries
    on a new connection: whichever worker gets the retry, the backend's waiting call is resumed (by the
    worker holding it, over the bus) and the answer reaches the client."""
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "tools/call", "mcp-name": "ask"}  # fmt: skip
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}  # fmt: skip
    url = gateway.url("/virtual/w")

    def call(**extra: Any) -> dict[str, Any]:
        params = {"name": "ask", "arguments": {"question": "Name?"}, "_meta": meta, **extra}
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
        return dict(httpx.post(url, json=body, headers=headers, timeout=30).json())

    for n in range(10):
        asked = call()
        assert asked["result"]["resultType"] == "input_required", asked
        (key,) = asked["result"]["inputRequests"]
        answer = {key: {"action": "accept", "content": {"value": f"ada-{n}"}}}
        done = call(inputResponses=answer, requestState=asked["result"]["requestState"])
        assert done["id"] == 7 and done["result"]["content"][0]["text"] == f"hello ada-{n}", done
    unknown = call(inputResponses={"input-1": {}}, requestState="sw1.nobody-holds-this")
    assert "requestState is unknown or expired" in unknown["error"]["message"]  # after CLAIM_S, not forever


def test_each_worker_counts_what_crossed_the_bus(gateway: RunningGateway) -> None:
    url = gateway.url("/virtual/w")
    session = initialize(url)
    assert httpx.delete(url, headers=session, timeout=10).status_code == 200  # "ended": to the other worker
    admin = {"authorization": f"Bearer {gateway.admin_token}"}

    def counted(direction: str) -> bool:
        text = httpx.get(f"{gateway.base}/metrics", headers=admin, timeout=10).text  # either worker's
        sample = rf'slicewire_bus_messages_total{{direction="{direction}",kind="ended"}} [1-9]'
        return re.search(sample, text) is not None

    wait_until(lambda: counted("sent"), 10, interval=0.02, what="a worker that sent 'ended'")
    wait_until(lambda: counted("received"), 10, interval=0.02, what="a worker that received it")
    assert "slicewire_sessions_open " in httpx.get(f"{gateway.base}/metrics", headers=admin, timeout=10).text


def test_a_killed_worker_is_replaced_and_sigterm_drains_all(alpha: str, tmp_path: Path) -> None:
    config = {
        "backends": [{"path": "/alpha", "transport": "streamable-http", "url": alpha}],
        "virtual_servers": [{"path": "/virtual/w", "server_name": "W", "tool_mappings": [
            {"tool_name": "echo", "backend_server_path": "/alpha"}]}],
    }  # fmt: skip
    gw = RunningGateway(config, tmp_path, args=("--workers", "2"))
    try:
        first = worker_pids(gw)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in worker_pids(gw), 30, what="a new worker in place of the killed one")
        now = worker_pids(gw)
        assert len(now) == 2 and victim not in now
        assert f"worker {victim} exited with code -9; starting another" in gw.log()
        gw.proc.process.send_signal(signal.SIGTERM)  # the supervisor only: it drains its workers
        assert gw.proc.process.wait(30) == 0
        wait_until(lambda: not any(_alive(pid) for pid in now), 10, what="the workers gone with their supervisor")
    finally:
        gw.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

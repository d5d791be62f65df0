"""Tasks (2025-11-25) through a real gateway to server-everything's task-only tool
(`simulate-research-query`, execution.taskSupport "required"): the TypeScript SDK's task API end to
end, the gateway's own task ids, and one client's tasks invisible to another."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import RunningGateway
from tests.support.procs import ROOT, ts_client

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def research_config(backends: dict[str, str]) -> dict[str, Any]:
    return {
        "backends": [{"path": "/everything", "transport": "streamable-http", "url": backends["everything"]}],
        "virtual_servers": [{
            "path": "/virtual/research", "server_name": "Research",
            "tool_mappings": [
                {"tool_name": "simulate-research-query", "backend_server_path": "/everything", "alias": "research"},
                {"tool_name": "echo", "backend_server_path": "/everything"},
            ],
        }],
    }  # fmt: skip


@pytest.fixture(scope="module")
def research(backends: dict[str, str], workdir: Path) -> Iterator[RunningGateway]:
    gw = RunningGateway(research_config(backends), workdir, name="tasks")
    try:
        yield gw
    finally:
        gw.stop()


def test_the_typescript_sdk_runs_a_task_through_the_gateway(research: RunningGateway) -> None:
    seen = ts_client(research.url("/virtual/research"), "task", "research", json.dumps({"topic": "bees"}))
    events = seen["events"]
    ids = {e["taskId"] for e in events if "taskId" in e}
    assert len(ids) == 1 and next(iter(ids)).startswith("swt-"), events  # the gateway's id, never the backend's
    task_id = ids.pop()
    assert events[0] == {"type": "taskCreated", "taskId": task_id, "status": "working"}
    assert events[-2]["status"] == "completed"
    result = events[-1]["result"]
    assert "Research Report: bees" in result["content"][0]["text"]
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert seen["listed"] == [task_id]
    assert seen["got"]["taskId"] == task_id and seen["got"]["status"] == "completed"


class RawSession:
    """A 2025-11-25 session over plain HTTP (the mcp SDK validates a tools/call answer as a tool result,
    so it cannot take a CreateTaskResult)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url, self.headers = http, url, {"accept": "application/json, text/event-stream"}
        self.ids = 0

    async def open(self) -> dict[str, Any]:
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        response = await self.http.post(self.url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                                        "params": params}, headers=self.headers)  # fmt: skip
        self.headers |= {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        return response.json()["result"]  # type: ignore[no-any-return]

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        body = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}
        response = await self.http.post(self.url, json=body, headers=self.headers)
        text = response.text
        if response.headers["content-type"].startswith("text/event-stream"):
            text = [line[6:] for line in text.splitlines() if line.startswith("data: ") and '"id"' in line][-1]
        return json.loads(text)  # type: ignore[no-any-return]


async def test_one_clients_task_does_not_exist_for_another(research: RunningGateway) -> None:
    url = research.url("/virtual/research")
    async with httpx.AsyncClient(timeout=60) as http:
        alice, mallory = RawSession(http, url), RawSession(http, url)
        capabilities = (await alice.open())["capabilities"]
        assert capabilities["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        await mallory.open()
        created = await alice.request("tools/call", {"name": "research", "arguments": {"topic": "ants"},
                                                     "task": {"ttl": 60000}})  # fmt: skip
        task_id = created["result"]["task"]["taskId"]
        assert task_id.startswith("swt-")
        # The other session (anonymous, on a public server: tasks belong to their session) sees nothing.
        assert (await mallory.request("tasks/list", {}))["result"]["tasks"] == []
        stolen = await mallory.request("tasks/get", {"taskId": task_id})
        assert stolen["error"]["code"] == -32602 and "Unknown task" in stolen["error"]["message"]
        assert (await mallory.request("tasks/cancel", {"taskId": task_id}))["error"]["code"] == -32602
        # Its creator can follow it, and cancel it.
        assert (await alice.request("tasks/get", {"taskId": task_id}))["result"]["taskId"] == task_id
        cancelled = await alice.request("tasks/cancel", {"taskId": task_id})
        assert cancelled["result"] == {**cancelled["result"], "taskId": task_id, "status": "cancelled"}
        listed = (await alice.request("tasks/list", {}))["result"]["tasks"]
        assert [(t["taskId"], t["status"]) for t in listed] == [(task_id, "cancelled")]


async def test_a_2026_client_is_not_offered_tasks(research: RunningGateway) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "server/discover"}  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(research.url("/virtual/research"), headers=headers, json=body)
    assert "tasks" not in response.json()["result"]["capabilities"]


def test_check_warns_about_task_only_tools(backends: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(yaml.safe_dump(research_config(backends)))
    done = subprocess.run([sys.executable, "-m", "proxy", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not a problem
    assert "warning" in done.stdout and "research: runs only as a task" in " ".join(done.stdout.split())

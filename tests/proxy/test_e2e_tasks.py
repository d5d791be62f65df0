"""Tasks through a real gateway to server-everything's task-only tool (`simulate-research-query`,
execution.taskSupport "required"), a backend with 2025-11-25 tasks: the TypeScript SDK's task API
end to end, the gateway's own task ids, one client's tasks invisible to another; and for 2026-07-28
clients (the tasks extension, SEP-2663) the same task bridged: fastmcp's client runs it, answers its
question, and the wire shows the extension's shapes."""

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

from .clients import tasks_client, text_of, until

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
    """A 2025-11-25 session over plain HTTP. The mcp SDK (2.3) cannot create a task: its client validates
    every tools/call answer as a CallToolResult, so a CreateTaskResult raises before the caller sees it
    (python-sdk PR #3161 is open), and it has no 2026-07-28 tasks yet (PR #3005)."""

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


async def test_fastmcp_runs_the_task_through_the_gateway(research: RunningGateway) -> None:
    async with tasks_client(research.url("/virtual/research")) as client:
        result = await client.call_tool("research", {"topic": "bees"})
    assert "Research Report: bees" in text_of(result)


async def test_fastmcp_answers_the_tasks_question(research: RunningGateway) -> None:
    """server-everything asks (elicitation/create on its tasks/result stream) when the query is
    ambiguous; the gateway shows it in tasks/get as input_required, and tasks/update answers it."""
    asked: list[str] = []

    async def clarify(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
        asked.append(message)
        return {"interpretation": "historical"}

    async with tasks_client(research.url("/virtual/research"), elicitation_handler=clarify) as client:
        result = await client.call_tool("research", {"topic": "bees", "ambiguous": True})
    assert asked and "bees" in asked[0]
    assert "historical" in text_of(result)


TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": TASKS}


class StatelessClient:
    """2026-07-28 requests over plain HTTP, to see the wire shapes."""

    def __init__(self, http: httpx.AsyncClient, url: str, meta: dict[str, Any] = META) -> None:
        self.http, self.url, self.meta, self.ids = http, url, meta, 0

    async def request(self, method: str, params: dict[str, Any], name: str | None = None) -> httpx.Response:
        self.ids += 1
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                   "mcp-method": method}  # fmt: skip
        if name is not None:
            headers["mcp-name"] = name
        body = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": {**params, "_meta": self.meta}}
        return await self.http.post(self.url, headers=headers, json=body)

    async def task(self, method: str, task_id: str, **params: Any) -> dict[str, Any]:
        return (await self.request(method, {"taskId": task_id, **params}, task_id)).json()  # type: ignore[no-any-return]


async def test_the_bridged_task_in_the_extensions_shapes(research: RunningGateway) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        client = StatelessClient(http, research.url("/virtual/research"))
        discovered = (await client.request("server/discover", {})).json()["result"]
        assert discovered["capabilities"]["extensions"] == {"io.modelcontextprotocol/tasks": {}}
        assert "tasks" not in discovered["capabilities"]  # the 2025-11-25 slot is not the extension's
        created = (await client.request("tools/call", {"name": "research", "arguments": {"topic": "ants"}},
                                        "research")).json()["result"]  # fmt: skip
        task_id = created["taskId"]
        assert created["resultType"] == "task" and task_id.startswith("swt-") and "task" not in created
        assert created["status"] == "working" and isinstance(created["ttlMs"], int) and "ttl" not in created
        assert created["lastUpdatedAt"] and created["createdAt"]
        # Polled until it ends: the result is inlined, without the 2025-11-25 related-task _meta.
        got: dict[str, Any] = {}

        async def ended() -> bool:
            got.update((await client.task("tasks/get", task_id))["result"])
            return got["status"] != "working"

        await until(ended, 60, every_s=0.2)
        assert got["status"] == "completed" and got["taskId"] == task_id and got["resultType"] == "complete"
        assert "Research Report: ants" in got["result"]["content"][0]["text"]
        assert "io.modelcontextprotocol/related-task" not in got["result"].get("_meta", {})
        # Cancelling an ended task is acknowledged all the same (idempotent); its status stays.
        assert (await client.task("tasks/cancel", task_id))["result"]["resultType"] == "complete"
        assert (await client.task("tasks/get", task_id))["result"]["status"] == "completed"
        # The 2025-11-25 methods are not the extension's.
        assert (await client.task("tasks/result", task_id))["error"]["code"] == -32601


async def test_a_bridged_task_is_cancelled(research: RunningGateway) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        client = StatelessClient(http, research.url("/virtual/research"))
        created = (await client.request("tools/call", {"name": "research", "arguments": {"topic": "moths"}},
                                        "research")).json()["result"]  # fmt: skip
        ack = await client.task("tasks/cancel", created["taskId"])
        assert ack["result"] == {"resultType": "complete", "_meta": ack["result"]["_meta"]}
        assert (await client.task("tasks/get", created["taskId"]))["result"]["status"] == "cancelled"


async def test_a_client_without_the_extension_is_refused_a_task_only_tool(research: RunningGateway) -> None:
    plain = {**META, "io.modelcontextprotocol/clientCapabilities": {}}
    async with httpx.AsyncClient(timeout=60) as http:
        client = StatelessClient(http, research.url("/virtual/research"), plain)
        refused = await client.request("tools/call", {"name": "research", "arguments": {"topic": "x"}}, "research")
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == -32021
        assert error["data"] == {"requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}
        # Its tasks/* requests too, whatever the id.
        assert (await client.task("tasks/get", "swt-anything"))["error"]["code"] == -32021
        # A tool that is not task-only answers at once.
        echoed = (await client.request("tools/call", {"name": "echo", "arguments": {"message": "hi"}}, "echo")).json()
        assert "hi" in echoed["result"]["content"][0]["text"]


def test_check_warns_about_task_only_tools(backends: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(yaml.safe_dump(research_config(backends)))
    done = subprocess.run([sys.executable, "-m", "proxy", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not a problem
    assert "warning" in done.stdout and "research: runs only as a task" in " ".join(done.stdout.split())

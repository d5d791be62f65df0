"""Hot reload on a real gateway: edits apply without a restart or dropped sessions; bad edits are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.support.gateway import RunningGateway

from .clients import Notifications, sdk_session, text_of, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def slice_config(backends: dict[str, str], tools: list[str]) -> dict[str, Any]:
    return {
        "backends": [{"path": "/beta", "transport": "streamable-http", "url": backends["beta"]}],
        "virtual_servers": [
            {"path": "/virtual/r", "server_name": "R",
             "tool_mappings": [{"tool_name": t, "backend_server_path": "/beta"} for t in tools]}
        ],
    }  # fmt: skip


async def test_edit_applies_to_open_sessions(backends: dict[str, str], tmp_path: Path) -> None:
    gw = RunningGateway(slice_config(backends, ["get_issue"]), tmp_path)
    seen = Notifications()
    try:
        async with sdk_session(gw.url("/virtual/r"), message_handler=seen.handler) as session:
            assert [t.name for t in (await session.list_tools()).tools] == ["get_issue"]
            with pytest.raises(Exception, match="Unknown tool: search"):
                await session.call_tool("search", {"query": "x"})

            gw.write_config({"listen": gw.config["listen"], **slice_config(backends, ["get_issue", "search"])})
            await seen.wait_for("notifications/tools/list_changed")
            # Same session, new slice.
            assert [t.name for t in (await session.list_tools()).tools] == ["get_issue", "search"]
            result = await session.call_tool("search", {"query": "router"})
            assert result.structured_content == {"result": ["router-1", "router-2"]}
            assert gw.status()["config_reloads"] == 1

            # An invalid edit is logged and the previous config keeps serving.
            bad = slice_config(backends, ["get_issue"])
            bad["virtual_servers"][0]["tool_mappings"][0]["backend_server_path"] = "/nowhere"
            gw.write_config({"listen": gw.config["listen"], **bad})
            await until(lambda: "config reload rejected" in gw.log())
            assert "'/nowhere'" in gw.log()
            assert gw.status()["config_reloads"] == 1  # the rejected edit was not applied
            assert [t.name for t in (await session.list_tools()).tools] == ["get_issue", "search"]
            assert text_of(await session.call_tool("get_issue", {"number": 3}))
    finally:
        gw.stop()


async def test_modern_listen_stream_hears_list_changes(backends: dict[str, str], tmp_path: Path) -> None:
    gw = RunningGateway(slice_config(backends, ["get_issue"]), tmp_path)
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen",
            "params": {"notifications": {"toolsListChanged": True}, "_meta": meta}}  # fmt: skip
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "subscriptions/listen"}  # fmt: skip
    events: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            async with http.stream("POST", gw.url("/virtual/r"), json=body, headers=headers) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                with anyio.fail_after(20):
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        events.append(json.loads(line[6:]))
                        if len(events) == 1:
                            gw.write_config(
                                {"listen": gw.config["listen"], **slice_config(backends, ["get_issue", "search"])}
                            )
                        if events[-1].get("method") == "notifications/tools/list_changed":
                            break
    finally:
        gw.stop()
    ack, changed = events[0], events[-1]
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["notifications"] == {"toolsListChanged": True}
    assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 9


@pytest.mark.parametrize("backend_path", ["/alpha", "/alpha-legacy"])
async def test_backend_list_change_refilters_and_tells_clients(tmp_path: Path, backend_path: str) -> None:
    """A backend adds a tool and says so; the slice that maps it grows, and its clients are told."""
    from tests.support.procs import start_fastmcp

    alpha, alpha_url = start_fastmcp("alpha", tmp_path)
    backends_config = [
        {"path": "/alpha", "transport": "streamable-http", "url": alpha_url},
        {"path": "/alpha-legacy", "transport": "streamable-http", "url": alpha_url, "protocol_version": "2025-11-25"},
    ]
    config = {
        "backends": backends_config,
        "virtual_servers": [
            {"path": "/virtual/grow", "server_name": "G", "tool_mappings": [
                {"tool_name": "grow", "backend_server_path": backend_path},
                {"tool_name": "sprout", "backend_server_path": backend_path}]}
        ],
    }  # fmt: skip
    gw = RunningGateway(config, tmp_path)
    seen = Notifications()
    try:
        async with sdk_session(gw.url("/virtual/grow"), message_handler=seen.handler) as session:
            assert [t.name for t in (await session.list_tools()).tools] == ["grow"]
            assert text_of(await session.call_tool("grow", {"name": "sprout"})) == "added sprout"
            await seen.wait_for("notifications/tools/list_changed")
            tools = (await session.list_tools()).tools
            assert [t.name for t in tools] == ["grow", "sprout"]
            assert tools[1].description == "Added at run time: sprout"
            assert text_of(await session.call_tool("sprout", {})) == "sprout is new"
    finally:
        gw.stop()
        alpha.stop()

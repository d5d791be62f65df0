"""Real clients through a real `slicewire serve` to real backends: each sees exactly its slice."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import SUPPORT_SLICE
from tests.support.gateway import RunningGateway

from .clients import fastmcp_client, sdk_session, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def direct_tools(url: str) -> dict[str, dict]:
    async with fastmcp_client(url) as client:
        return {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in await client.list_tools()}


async def test_fastmcp_client_sees_exactly_the_slice(gateway: RunningGateway, backends: dict[str, str]) -> None:
    async with fastmcp_client(gateway.url("/virtual/support")) as client:
        tools = {t.name: t for t in await client.list_tools()}
    assert list(tools) == SUPPORT_SLICE
    assert "delete_repo" not in tools and "call_log" not in tools and "add" not in tools
    alpha = await direct_tools(backends["alpha"])
    # Alias and description override applied; the backend's schema, annotations kept.
    assert tools["plus"].description == "Adds two integers for the agent."
    assert tools["plus"].input_schema == alpha["add"]["inputSchema"]
    assert tools["plus"].output_schema == alpha["add"]["outputSchema"]
    assert tools["echo"].description == alpha["echo"]["description"]
    assert tools["echo"].annotations is not None and tools["echo"].annotations.read_only_hint is True


async def test_sdk_client_sees_exactly_the_slice(gateway: RunningGateway) -> None:
    async with sdk_session(gateway.url("/virtual/support")) as session:
        listed = await session.list_tools()
    assert [t.name for t in listed.tools] == SUPPORT_SLICE


async def test_allowed_call_returns_what_the_backend_returns(gateway: RunningGateway, backends: dict[str, str]) -> None:
    async with fastmcp_client(backends["alpha"]) as direct:
        expected = await direct.call_tool_mcp("structured", {"name": "ada"})
        expected_add = await direct.call_tool_mcp("add", {"a": 2, "b": 40})
    async with fastmcp_client(gateway.url("/virtual/support")) as client:
        got = await client.call_tool_mcp("structured", {"name": "ada"})
        got_add = await client.call_tool_mcp("plus", {"a": 2, "b": 40})
    assert got.structured_content == expected.structured_content == {"greeting": "hello ada", "length": 3}
    assert [c.model_dump() for c in got.content] == [c.model_dump() for c in expected.content]
    assert got.is_error is False
    assert got_add.structured_content == expected_add.structured_content == {"result": 42}


async def test_tool_error_passes_through_as_is_error(gateway: RunningGateway) -> None:
    async with sdk_session(gateway.url("/virtual/support")) as session:
        result = await session.call_tool("fail", {"message": "boom"})
    assert result.is_error is True
    assert "boom" in text_of(result)


@pytest.mark.parametrize("client_kind", ["fastmcp", "sdk"])
async def test_hidden_tool_is_refused_and_never_reaches_the_backend(
    gateway: RunningGateway, backends: dict[str, str], client_kind: str
) -> None:
    url = gateway.url("/virtual/support")
    for hidden in ("delete_repo", "call_log", "add"):  # destructive, internal, and a name hidden by an alias
        if client_kind == "fastmcp":
            async with fastmcp_client(url) as client:
                with pytest.raises(MCPError) as info:
                    await client.call_tool_mcp(hidden, {"repo": "acme/prod"})
        else:
            async with sdk_session(url) as session:
                with pytest.raises(MCPError) as info:
                    await session.call_tool(hidden, {"repo": "acme/prod"})
        assert info.value.error.code == -32602
        assert info.value.error.message == f"Unknown tool: {hidden}"
    async with fastmcp_client(backends["alpha"]) as direct:
        log = (await direct.call_tool("call_log", {})).structured_content["result"]
    assert "delete_repo" not in log


async def test_tools_from_every_backend_kind(gateway: RunningGateway, backends: dict[str, str]) -> None:
    async with sdk_session(gateway.url("/virtual/support")) as session:
        issue = await session.call_tool("get_issue", {"number": 7})
        echoed = await session.call_tool("everything-echo", {"message": "hi there"})
        doc = await session.call_tool("read-doc", {"path": f"{backends['data']}/guide.txt"})
    assert issue.structured_content == {"number": 7, "title": "Issue 7", "state": "open"}
    assert "hi there" in text_of(echoed)  # server-everything, legacy era over streamable HTTP
    assert text_of(doc) == "Reset the router, then call support.\n"  # server-filesystem over stdio
    async with fastmcp_client(gateway.url("/virtual/sums")) as client:
        tools = [t.name for t in await client.list_tools()]
        total = await client.call_tool_mcp("get-sum", {"a": 2, "b": 3})
    assert tools == ["get-sum"]
    assert "5" in text_of(total)  # server-everything over the legacy HTTP+SSE transport


async def test_disabled_and_unknown_servers_are_404(gateway: RunningGateway) -> None:
    import httpx

    for path in ("/virtual/off/mcp", "/virtual/nope/mcp"):
        async with httpx.AsyncClient() as http:
            response = await http.post(
                gateway.base + path,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"accept": "application/json, text/event-stream"},
            )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == -32600


async def test_backend_pagination_is_followed(gateway: RunningGateway, backends: dict[str, str]) -> None:
    """beta lists its tools two per page; the gateway's discovery follows nextCursor to the end."""
    import httpx

    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "tools/list"}  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
    async with httpx.AsyncClient() as http:
        first = await http.post(backends["beta"], headers=headers, json=body)
    page = first.json()["result"]
    assert len(page["tools"]) == 2 and page.get("nextCursor")  # the backend really paginates
    assert gateway.status()["backends"]["/beta"]["tools"] == 3  # get_issue, search, call_log: both pages

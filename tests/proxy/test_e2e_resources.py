"""Resources, prompts, completion and logging through a real gateway to server-everything, with the
official `mcp` SDK (2025-11-25) and `fastmcp.Client` (2026-07-28): only what the slice maps exists,
under the URIs and names the slice gives it."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as mt
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from tests.support.gateway import RunningGateway
from tests.support.procs import ts_client

from .clients import fastmcp_client, sdk_session, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

DOCS = "demo://resource/static/document/"


def slice_config(backends: dict[str, str]) -> dict[str, Any]:
    return {
        "backends": [{"path": "/everything", "transport": "streamable-http", "url": backends["everything"]}],
        "virtual_servers": [
            {
                "path": "/virtual/docs",
                "server_name": "Docs",
                "tool_mappings": [
                    {"tool_name": "get-resource-links", "backend_server_path": "/everything", "alias": "links"},
                    {"tool_name": "toggle-simulated-logging", "backend_server_path": "/everything", "alias": "chatty"},
                    {
                        "tool_name": "toggle-subscriber-updates",
                        "backend_server_path": "/everything",
                        "alias": "updates",
                    },
                ],
                "resource_mappings": [
                    # The static documents, renamed; one dynamic template, renamed; nothing else.
                    {"backend_server_path": "/everything", "uri_prefix": DOCS, "expose_as": "docs://"},
                    {
                        "backend_server_path": "/everything",
                        "uri_template": "demo://resource/dynamic/text/{resourceId}",
                        "expose_as": "text://{resourceId}",
                        "description_override": "A numbered text",
                    },
                ],
                "prompt_mappings": [
                    {
                        "backend_server_path": "/everything",
                        "prompt_name": "args-prompt",
                        "alias": "weather",
                        "description_override": "Weather in a city",
                    },
                    {"backend_server_path": "/everything", "prompt_name": "completable-prompt"},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def docs(backends: dict[str, str], workdir: Path) -> Iterator[RunningGateway]:
    gw = RunningGateway(slice_config(backends), workdir, name="resources")
    try:
        yield gw
    finally:
        gw.stop()


async def test_sdk_client_lists_and_reads_only_the_mapped_resources(docs: RunningGateway) -> None:
    async with sdk_session(docs.url("/virtual/docs")) as session:
        capabilities = session.server_capabilities
        assert capabilities is not None and capabilities.resources is not None and capabilities.prompts is not None
        assert capabilities.resources.subscribe  # server-everything serves resources/subscribe
        listed = [str(r.uri) for r in (await session.list_resources()).resources]
        assert listed and all(uri.startswith("docs://") for uri in listed), listed
        templates = (await session.list_resource_templates()).resource_templates
        assert [(t.uri_template, t.description) for t in templates] == [("text://{resourceId}", "A numbered text")]
        read = await session.read_resource(listed[0])
        assert str(read.contents[0].uri) == listed[0] and getattr(read.contents[0], "text", "")
        dynamic = await session.read_resource("text://7")
        assert str(dynamic.contents[0].uri) == "text://7" and "7" in getattr(dynamic.contents[0], "text", "")
        for outside in (f"{DOCS}architecture.md", "demo://resource/dynamic/blob/1", "docs:/"):
            with pytest.raises(MCPError) as refused:
                await session.read_resource(outside)
            assert refused.value.error.code == -32602 and "Resource not found" in refused.value.error.message
        # In the slice, but the backend has no such resource: its error, naming the slice's URI only.
        with pytest.raises(MCPError) as missing:
            await session.read_resource("text://")
        assert "text://" in missing.value.error.message and "demo://" not in missing.value.error.message


async def test_prompts_and_completion_are_routed_by_their_exposed_names(docs: RunningGateway) -> None:
    async with sdk_session(docs.url("/virtual/docs")) as session:
        prompts = {p.name: p for p in (await session.list_prompts()).prompts}
        assert set(prompts) == {"weather", "completable-prompt"}
        assert prompts["weather"].description == "Weather in a city"
        got = await session.get_prompt("weather", {"city": "Lisbon", "state": "Lisboa"})
        assert "Lisbon" in str(got.messages[0].content)
        with pytest.raises(MCPError) as unknown:
            await session.get_prompt("simple-prompt")  # the backend has it; the slice does not
        assert unknown.value.error.code == -32602
        done = await session.complete(mt.PromptReference(type="ref/prompt", name="completable-prompt"),
                                      {"name": "department", "value": "E"})  # fmt: skip
        assert done.completion.values and all(v.startswith("E") for v in done.completion.values)
        with pytest.raises(MCPError):
            await session.complete(mt.PromptReference(type="ref/prompt", name="resource-prompt"),
                                   {"name": "resourceType", "value": ""})  # fmt: skip


async def test_resource_links_point_into_the_slice_or_are_left_out(docs: RunningGateway) -> None:
    async with sdk_session(docs.url("/virtual/docs")) as session:
        result = await session.call_tool("links", {"count": 4})
        links = [c for c in result.content if c.type == "resource_link"]
        # server-everything links dynamic text and blob resources: texts map to text://, blobs are not in the slice.
        assert links and all(str(link.uri).startswith("text://") for link in links), links
        assert all("blob" not in str(link.uri) for link in links)


async def test_a_modern_client_gets_the_same_slice(docs: RunningGateway) -> None:
    async with fastmcp_client(docs.url("/virtual/docs")) as client:
        listed = [str(r.uri) for r in await client.list_resources()]
        assert listed and all(uri.startswith("docs://") for uri in listed)
        contents = await client.read_resource("text://3")
        assert "3" in getattr(contents[0], "text", "")
        prompt = await client.get_prompt("weather", {"city": "Porto", "state": "Norte"})
        assert "Porto" in str(prompt.messages[0].content)


async def test_backend_logs_reach_a_session_that_set_a_level(docs: RunningGateway) -> None:
    logged: list[mt.LoggingMessageNotificationParams] = []

    async def on_log(params: mt.LoggingMessageNotificationParams) -> None:
        logged.append(params)

    async with sdk_session(docs.url("/virtual/docs"), logging_callback=on_log) as session:
        with warnings.catch_warnings():  # deprecated in 2026-07-28, current in 2025-11-25
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.set_logging_level("debug")
        await session.call_tool("chatty", {})  # server-everything starts logging every few seconds
        try:
            await until(lambda: logged, within_s=30)
        finally:
            await session.call_tool("chatty", {})  # and stops
        assert logged[0].level in ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def test_the_typescript_sdk_sees_the_same_slice(docs: RunningGateway) -> None:
    seen = ts_client(docs.url("/virtual/docs"), "slice")
    assert seen["tools"] == ["links", "chatty", "updates"]
    assert seen["resources"] and all(uri.startswith("docs://") for uri in seen["resources"])
    assert seen["read"]["contents"][0]["uri"] == seen["resources"][0]
    assert sorted(seen["prompts"]) == ["completable-prompt", "weather"]


async def test_a_subscribed_session_hears_of_updates_under_the_slice_uri(docs: RunningGateway) -> None:
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        message = getattr(message, "root", message)
        if getattr(message, "method", None) == "notifications/resources/updated":
            updated.append(str(message.params.uri))

    async with sdk_session(docs.url("/virtual/docs"), message_handler=on_message) as session:
        uri = str((await session.list_resources()).resources[0].uri)
        with warnings.catch_warnings():  # removed in 2026-07-28 (subscriptions/listen), current in 2025-11-25
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.subscribe_resource(uri)
        await session.call_tool("updates", {})  # server-everything: updates for subscribed resources, every few s
        try:
            await until(lambda: uri in updated, within_s=30)
        finally:
            await session.call_tool("updates", {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.unsubscribe_resource(uri)
    assert set(updated) == {uri}  # the slice's URI (docs://...), never the backend's


async def test_a_listen_stream_hears_of_updates_of_its_resource_subscriptions(docs: RunningGateway) -> None:
    """2026-07-28: the URIs go in subscriptions/listen's filter; updates come on that stream, tagged."""
    url = docs.url("/virtual/docs")
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}

    def headers(method: str, name: str | None = None) -> dict[str, str]:
        found = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                 "mcp-method": method}  # fmt: skip
        return {**found, "mcp-name": name} if name else found

    async with fastmcp_client(url) as client:
        uri = str((await client.list_resources())[0].uri)
    listen = {"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
              "params": {"notifications": {"resourceSubscriptions": [uri, "demo://resource/dynamic/blob/1"]},
                         "_meta": meta}}  # fmt: skip
    toggle = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "updates", "arguments": {}, "_meta": meta}}  # fmt: skip
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=60) as http:
        async with http.stream("POST", url, json=listen, headers=headers("subscriptions/listen")) as stream:
            toggled = False
            try:
                with anyio.fail_after(30):
                    async for line in stream.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        events.append(json.loads(line[6:]))
                        if not toggled:  # acknowledged first: now make the backend send updates
                            toggled = True
                            await http.post(url, json=toggle, headers=headers("tools/call", "updates"))
                        if events[-1].get("method") == "notifications/resources/updated":
                            break
            finally:
                if toggled:
                    await http.post(url, json={**toggle, "id": 3}, headers=headers("tools/call", "updates"))
    acknowledged, updated = events[0], events[-1]
    assert acknowledged["method"] == "notifications/subscriptions/acknowledged"
    # Only what the slice has is granted (the blob is not in it).
    assert acknowledged["params"]["notifications"] == {"resourceSubscriptions": [uri]}
    assert updated["params"]["uri"] == uri
    assert updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "sub-1"

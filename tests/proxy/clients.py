"""Real MCP clients for the tests: the official `mcp` SDK (2025-11-25) and `fastmcp.Client` (2026-07-28)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import mcp.types as mt
from fastmcp import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def sdk_session(
    url: str, headers: dict[str, str] | None = None, http: Any = None, **callbacks: Any
) -> AsyncIterator[ClientSession]:
    """A legacy-era session (initialize, Mcp-Session-Id) through the official SDK; `http`: its own
    httpx2.AsyncClient (headers then go on it)."""
    if headers and http is None:
        import httpx2

        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
    async with (
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, **callbacks) as session,
    ):
        result = await session.initialize()
        assert result.protocol_version == "2025-11-25"
        yield session


def fastmcp_client(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Client:
    """A modern-era client: opens with server/discover, stateless requests."""
    if headers:
        from fastmcp.client.transports import StreamableHttpTransport

        return Client(StreamableHttpTransport(url, headers=headers), **kwargs)
    return Client(url, **kwargs)


def tasks_client(url: str, **kwargs: Any) -> Client:
    """A modern-era client that follows tasks (the 2026-07-28 tasks extension): fastmcp-tasks' client
    half, given to this client only. (Importing fastmcp_tasks folds it into every Client of the process;
    the other tests' clients must stay plain, so the registration is undone.)"""
    from fastmcp.client import extension_hooks
    from fastmcp.client.elicitation import create_elicitation_callback
    from fastmcp_tasks.client import TasksClientExtension, _build_tasks_client_extension

    with contextlib.suppress(ValueError):
        extension_hooks._internal_client_extension_factories.remove(_build_tasks_client_extension)
    handler = kwargs.get("elicitation_handler")
    callback = create_elicitation_callback(handler) if handler is not None else None
    return Client(url, extensions=[TasksClientExtension(callback)], **kwargs)


def text_of(result: mt.CallToolResult | Any) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


class Notifications:
    """Collects the methods of notifications a client receives; `wait_for` polls with a deadline.

    seen = Notifications()
    async with sdk_session(url, message_handler=seen.handler) as session: ...
    await seen.wait_for("notifications/tools/list_changed")
    """

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def handler(self, message: Any) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if method:
            self.methods.append(method)

    async def wait_for(self, method: str, within_s: float = 15) -> None:
        await until(lambda: method in self.methods, within_s)


async def until(condition: Callable[[], Any], within_s: float = 15, every_s: float = 0.05) -> None:
    """Poll `condition` (sync or async) until it is true; fail after `within_s` seconds."""
    with anyio.fail_after(within_s):
        while True:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await anyio.sleep(every_s)

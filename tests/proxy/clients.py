"""Real MCP clients for the tests: the official `mcp` SDK (2025-11-25) and `fastmcp.Client` (2026-07-28)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import mcp.types as mt
from fastmcp import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def sdk_session(url: str, **callbacks: Any) -> AsyncIterator[ClientSession]:
    """A legacy-era session (initialize, Mcp-Session-Id) through the official SDK."""
    async with streamable_http_client(url) as (read, write), ClientSession(read, write, **callbacks) as session:
        result = await session.initialize()
        assert result.protocol_version == "2025-11-25"
        yield session


def fastmcp_client(url: str, **kwargs: Any) -> Client:
    """A modern-era client: opens with server/discover, stateless requests."""
    return Client(url, **kwargs)


def text_of(result: mt.CallToolResult | Any) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")

"""Call the demo's support slice with the official `mcp` SDK (2.x, the 2025-11-25 era: initialize and a
session). The SDK's HTTP client is httpx2; headers such as the gateway token go on it.

.venv/bin/python examples/client_mcp_sdk.py      # with ./scripts/demo running
"""

import asyncio
import os
from pathlib import Path

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

URL = os.environ.get("SLICEWIRE_URL", "http://127.0.0.1:8080") + "/virtual/support/mcp"
TOKEN = Path(os.environ.get("SLICEWIRE_TOKEN_FILE", ".demo/token")).read_text().strip()


async def main() -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    async with (
        streamable_http_client(URL, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        print((await session.initialize()).server_info.name)
        print([tool.name for tool in (await session.list_tools()).tools])
        print((await session.call_tool("get_issue", {"number": 2})).structured_content)
        try:
            await session.call_tool("delete_repo", {"repo": "acme/prod"})  # not in the slice
        except MCPError as refused:  # a JSON-RPC error: the call never reached a backend
            print(f"refused ({refused.code}): {refused.message}")


asyncio.run(main())

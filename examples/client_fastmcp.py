"""Call the demo's support slice with fastmcp (the 2026-07-28 era): list, call, and be refused.

.venv/bin/python examples/client_fastmcp.py      # with ./scripts/demo running
"""

import asyncio
import os
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.shared.exceptions import MCPError

URL = os.environ.get("SLICEWIRE_URL", "http://127.0.0.1:8080") + "/virtual/support/mcp"
TOKEN = Path(os.environ.get("SLICEWIRE_TOKEN_FILE", ".demo/token")).read_text().strip()


async def main() -> None:
    transport = StreamableHttpTransport(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    async with Client(transport) as client:
        print([tool.name for tool in await client.list_tools()])
        print((await client.call_tool("get_issue", {"number": 1})).data)
        print((await client.call_tool("read-doc", {"path": "guide.txt"})).content[0].text.rstrip())  # stdio backend
        try:
            await client.call_tool("delete_repo", {"repo": "acme/prod"})  # not in the slice
        except MCPError as refused:  # a JSON-RPC error: the call never reached a backend
            print(f"refused ({refused.code}): {refused.message}")


asyncio.run(main())

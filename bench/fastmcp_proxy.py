"""FastMCP's proxy in front of one backend, as a peer in bench/run.py.

`fastmcp.server.create_proxy(url)` builds a fresh backend client for every request (its default:
session isolation), which measured ~100 ms of CPU per call here. FastMCP documents session reuse as
opt-in by passing an already-connected client, which is what this does: the fastest configuration it
offers, so that the comparison is with FastMCP at its best.

    python bench/fastmcp_proxy.py --port 9600 --upstream http://127.0.0.1:9500/mcp
"""

from __future__ import annotations

import argparse
import asyncio

from fastmcp import Client
from fastmcp.server import create_proxy


async def serve(args: argparse.Namespace) -> None:
    async with Client(args.upstream) as client:
        proxy = create_proxy(client)
        await proxy.run_http_async(
            show_banner=False, host="127.0.0.1", port=args.port, log_level="warning", json_response=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the backend's MCP URL")
    args = parser.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

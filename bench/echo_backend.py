"""A deliberately fast MCP backend for benchmarks: raw asyncio + httptools, 2026-07-28 and 2025-11-25.

It answers `server/discover`, `initialize`, `tools/list` (`echo`, plus `tool_0001`... with
`--tools N`) and `tools/call` (echoes the arguments back as text and structured content, whatever
the tool) with JSON bodies over keep-alive HTTP/1.1, so that it is never the bottleneck of a gateway
measurement (bench/run.py measures it alone first). One process can serve several ports: each is
an independent backend with the same tools (bench/scale.py's 20 backends).

    python bench/echo_backend.py --port 9500
    python bench/echo_backend.py --port 9501 --port 9502 --tools 100
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import orjson
import uvloop

TOOL = {
    "name": "echo",
    "description": "Echo the arguments back.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
SERVER_INFO = {"name": "bench-echo", "version": "1.0.0"}
TOOLS = [TOOL]


def answer(message: dict) -> dict | None:
    method = message.get("method")
    if method == "tools/call":
        arguments = message.get("params", {}).get("arguments", {})
        text = orjson.dumps(arguments).decode()
        result = {
            "content": [{"type": "text", "text": text}],
            "structuredContent": arguments,
            "isError": False,
            "resultType": "complete",
        }
    elif method == "server/discover":
        result = {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "ttlMs": 0,
            "cacheScope": "public",
            "resultType": "complete",
            "_meta": {"io.modelcontextprotocol/serverInfo": SERVER_INFO},
        }
    elif method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": SERVER_INFO}
    elif method == "tools/list":
        result = {"tools": TOOLS, "ttlMs": 0, "cacheScope": "public", "resultType": "complete"}
    elif method == "ping":
        result = {}
    elif "id" not in message:
        return None
    else:
        return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


class Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.parser.get_method() != b"POST":
            self.transport.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return
        reply = answer(orjson.loads(b"".join(self.body)))
        if reply is None:
            self.transport.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            return
        body = orjson.dumps(reply)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        self.transport.write(head + body)


async def serve(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Protocol, "127.0.0.1", port, backlog=4096) for port in ports]
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, action="append", required=True, help="repeat for several backends")
    parser.add_argument("--tools", type=int, default=1, help="tools listed: echo, then tool_0001, tool_0002, ...")
    args = parser.parse_args()
    TOOLS.extend({**TOOL, "name": f"tool_{i:04d}"} for i in range(1, args.tools))
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()

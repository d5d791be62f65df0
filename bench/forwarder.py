"""A naive Starlette forwarder (no MCP logic) with a choice of upstream HTTP client.

It exists to measure what the upstream client alone costs per proxied request: the figures that
led Slicewire to its own HTTP/1.1 client (proxy/_upstream/_h1.py; see bench/README.md):

    python bench/forwarder.py --port 9600 --upstream http://127.0.0.1:9500/mcp --client aiohttp
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httptools
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Forward = Callable[[bytes, dict[str, str]], Awaitable[tuple[int, bytes, str]]]
PASS_HEADERS = ("accept", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id")


def httpx_client(upstream: str, transport: str) -> Forward:
    import httpx

    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        client = httpx.AsyncClient(transport=AiohttpTransport())
    else:
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))

    async def forward(body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        response = await client.post(upstream, content=body, headers=headers)
        return response.status_code, response.content, response.headers.get("content-type", "")

    return forward


def aiohttp_client(upstream: str) -> Forward:
    import aiohttp

    session: aiohttp.ClientSession | None = None

    async def forward(body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with session.post(upstream, data=body, headers=headers) as response:
            return response.status, await response.read(), response.headers.get("content-type", "")

    return forward


class _RawConnection(asyncio.Protocol):
    """HTTP/1.1 keep-alive over a bare asyncio transport, parsed with httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes, str]] | None = None
        self.body: list[bytes] = []
        self.content_type = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("upstream closed the connection"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.waiter is not None
        self.waiter.set_result((self.parser.get_status_code(), b"".join(self.body), self.content_type))


def raw_client(upstream: str) -> Forward:
    url = urlsplit(upstream)
    host, port, path = url.hostname or "127.0.0.1", url.port or 80, url.path
    idle: list[_RawConnection] = []

    async def forward(body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        loop = asyncio.get_running_loop()
        if idle:
            conn = idle.pop()
        else:
            _, conn = await loop.create_connection(_RawConnection, host, port)
        conn.waiter = loop.create_future()
        conn.body = []
        head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        assert conn.transport is not None
        conn.transport.write(head.encode() + b"\r\n" + body)
        result = await conn.waiter
        idle.append(conn)
        return result

    return forward


def build(upstream: str, client: str) -> Starlette:
    forward = {
        "httpx": lambda: httpx_client(upstream, "default"),
        "httpx-aiohttp": lambda: httpx_client(upstream, "aiohttp"),
        "aiohttp": lambda: aiohttp_client(upstream),
        "raw": lambda: raw_client(upstream),
    }[client]()

    async def mcp(request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k in PASS_HEADERS}
        status, content, content_type = await forward(body, headers)
        return Response(content, status_code=status, media_type=content_type or None)

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description="Naive forwarder for upstream-client measurements.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--client", choices=["httpx", "httpx-aiohttp", "aiohttp", "raw"], default="aiohttp")
    args = parser.parse_args()
    uvicorn.run(
        build(args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

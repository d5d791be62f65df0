"""Closed-loop load generator for MCP `tools/call`: N keep-alive connections, every response validated.

Raw asyncio + httptools so that it stays cheap on its own core. Speaks 2026-07-28 (stateless,
`_meta` + `Mcp-Method`/`Mcp-Name` headers) or 2025-11-25 (one `initialize` per connection, then the
session header). Prints one JSON object: requests, errors, req/s, latency percentiles in ms.

    python bench/loadgen.py --url http://127.0.0.1:8080/virtual/bench/mcp --tool echo -c 64 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "slicewire-bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class _Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.done = asyncio.get_running_loop().create_future()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Connection:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.session: bytes | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[bytes, bytes], bytes]:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"host: {self.host}:{self.port}",
            f"content-length: {len(body)}",
            "content-type: application/json",
            "accept: application/json, text/event-stream",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if self.session is not None:
            lines.append("mcp-session-id: " + self.session.decode())
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not response.done.done():
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            parser.feed_data(data)
        return parser.get_status_code(), response.headers, b"".join(response.body)


def _result_of(body: bytes, content_type: bytes) -> dict:
    if content_type.startswith(b"text/event-stream"):
        for line in body.splitlines():
            if line.startswith(b"data: "):
                message = orjson.loads(line[6:])
                if "id" in message:
                    return message
        raise ValueError("no response in the SSE stream")
    return orjson.loads(body)


async def worker(
    conn: Connection, args: argparse.Namespace, stop_at: float, latencies: list[float], errors: list[str]
) -> None:
    text = "x" * args.arg_bytes
    arguments = {"text": text}
    request_id = 0
    auth = {"authorization": f"Bearer {args.token}"} if args.token else {}
    if args.era == "legacy":
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "b", "version": "1"},
            },
        }
        status, headers, _ = await conn.post(orjson.dumps(init), auth)
        conn.session = headers.get(b"mcp-session-id")
        headers_out = {"mcp-protocol-version": "2025-11-25", **auth}
        await conn.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}', headers_out)
    else:
        headers_out = {"mcp-protocol-version": "2026-07-28", "mcp-method": args.method, **auth}
        if args.method == "tools/call":
            headers_out["mcp-name"] = args.tool
    # --rate: this worker's share of a fixed request rate (open loop: a late answer delays only its own
    # connection's next request, never the schedule); 0: as fast as answers come (closed loop).
    interval = args.concurrency / args.rate if args.rate else 0.0
    next_at = time.monotonic()
    while time.monotonic() < stop_at:
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        request_id += 1
        params: dict = {"name": args.tool, "arguments": arguments} if args.method == "tools/call" else {}
        if args.era == "modern":
            params["_meta"] = MODERN_META
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": args.method, "params": params})
        started = time.perf_counter()
        try:
            status, headers, payload = await conn.post(body, headers_out)
            message = _result_of(payload, headers.get(b"content-type", b""))
            result = message.get("result") or {}
            if args.method == "tools/call":
                valid = result.get("structuredContent") == arguments
            else:
                valid = len(result.get("tools") or ()) == args.expect_tools if args.expect_tools else "tools" in result
            if status != 200 or message.get("id") != request_id or not valid:
                errors.append(f"HTTP {status}: {payload[:200]!r}")
                continue
        except (OSError, ValueError, ConnectionError) as exc:
            errors.append(repr(exc))
            await conn.open()
            continue
        latencies.append(time.perf_counter() - started)


async def run(args: argparse.Namespace) -> dict:
    url = urlsplit(args.url)
    conns = [Connection(url.hostname or "127.0.0.1", url.port or 80, url.path) for _ in range(args.concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    latencies: list[float] = []
    errors: list[str] = []
    if args.warmup > 0:
        warm_until = time.monotonic() + args.warmup
        await asyncio.gather(*(worker(c, args, warm_until, [], errors) for c in conns))
        errors.clear()
        if args.era == "legacy":
            for c in conns:
                c.session = None
    started = time.monotonic()
    stop_at = started + args.duration
    await asyncio.gather(*(worker(c, args, stop_at, latencies, errors) for c in conns))
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "concurrency": args.concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 3),
        "p90_ms": round(pct(0.90), 3),
        "p99_ms": round(pct(0.99), 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Closed-loop MCP tools/call load generator.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", default="echo")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--arg-bytes", type=int, default=200)
    parser.add_argument("--era", choices=["modern", "legacy"], default="modern")
    parser.add_argument("--method", choices=["tools/call", "tools/list"], default="tools/call")
    parser.add_argument("--expect-tools", type=int, default=0, help="tools/list: the number of tools to expect")
    parser.add_argument("--rate", type=float, default=0, help="requests per second in all (0: closed loop)")
    parser.add_argument("--token-file", help="a gateway token, sent as `Authorization: Bearer` on every request")
    args = parser.parse_args()
    args.token = Path(args.token_file).read_text().strip() if args.token_file else None
    result = uvloop.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()

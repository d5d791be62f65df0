"""A small HTTP/1.1 client for backend calls: keep-alive connections on bare asyncio transports,
responses parsed by httptools (the parser uvicorn uses).

Why not aiohttp or httpx: measured in bench/ on this project's machines, a naive forwarder spends
~2x the CPU per proxied request with aiohttp and ~30x with httpx's default pool than with this
client; the upstream client is most of a gateway's cost. It does only what backend traffic needs:
POST/GET/DELETE, JSON and SSE (chunked) bodies, TLS, connection reuse, abort.

    pool = H1Pool("http://127.0.0.1:9001/mcp", connect_timeout=10)
    response = await pool.request("POST", headers, body)
    data = await response.read()
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

from ._proxy import Proxy

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "H1ConnectionError",
    "H1Pool",
    "H1Response",
    "H1ResponseTooLarge",
    "encode_headers",
]

_MAX_IDLE = 512
# An idle connection is reused only this soon after its last response. Servers close idle keep-alive
# connections after a few seconds (uvicorn and Node 5 s, gunicorn 2 s); a request written as the server
# closes is lost, and a POST is never re-sent (it may have run), so a connection near that age is not used.
_REUSE_WITHIN_S = 1.5
# A streamed body (SSE, read with chunks()) stops being read from the backend while this much waits for the
# consumer. A body read whole (read()) is not paused: it is bounded by the response limit instead.
_PAUSE_AT = 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """Header lines for `H1Pool.request`; values must already be safe header values."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if exc.errno is not None and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or 'unknown reason'})"
    return type(exc).__name__


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
}


class H1ConnectionError(Exception):
    """Could not connect, or the connection broke before the response was complete."""


class H1ResponseTooLarge(H1ConnectionError):
    """The backend's answer held more than the pool's `max_response_bytes` waiting to be read (the
    connection is closed, the rest unread)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answered more than {limit} bytes")
        self.limit = limit


class H1Response:
    """One response. Read the body with `read()` or `chunks()`; then `release()` (or `close()` to abort)."""

    __slots__ = (
        "_buffered",
        "_conn",
        "_error",
        "_headers_done",
        "_pool",
        "_waiter",
        "_whole",
        "body",
        "complete",
        "headers",
        "keep_alive",
        "received",
        "status",
    )

    def __init__(self, conn: _Connection, pool: H1Pool) -> None:
        self._conn = conn
        self._pool = pool
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self._buffered = 0  # body bytes received and not yet taken by chunks()
        self._whole = False  # read() is collecting the whole body: no pausing
        self.complete = False
        self.keep_alive = True
        self.received = False
        self._error: BaseException | None = None
        self._headers_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is not None:
            return  # the first cause stands (an abort after a refused body closes the connection too)
        self._error = error
        if not self._headers_done.done():
            self._headers_done.set_exception(error)
            self._headers_done.exception()  # retrieved here; request() re-raises it
        self._wake()

    async def read(self) -> bytes:
        """The whole body (waits for the end of the response). Raises H1ResponseTooLarge past the pool's
        `max_response_bytes`."""
        self._whole = True
        self._conn.resume()  # a body larger than the pause threshold may have stopped the reading
        while not self.complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (for SSE)."""
        while True:
            if self.body:
                data = b"".join(self.body)
                self.body = []
                self._buffered = 0
                self._conn.resume()
                yield data
                continue
            if self.complete:
                return
            if self._error is not None:
                raise self._error
            await self._wait()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def release(self) -> None:
        """Done with this response: the connection goes back to the pool if it can be reused."""
        conn = self._conn
        if conn.response is not self:
            return
        conn.response = None
        if self.complete and self.keep_alive and self._error is None and not conn.closed:
            self._pool._put(conn)
        else:
            conn.abort()

    def close(self) -> None:
        """Abort: the backend sees the connection close (how a modern backend learns of cancellation)."""
        if self._conn.response is self:
            self._conn.response = None
        self._conn.abort()
        if not self.complete and self._error is None:
            self._fail(H1ConnectionError("closed by the gateway"))


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: H1Response | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0  # loop time at which it went back to the pool

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.abort()  # bytes nobody asked for: the connection is not safe to reuse
            return
        response.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response._fail(H1ConnectionError("unexpected protocol upgrade"))
            self.abort()
        except httptools.HttpParserError as exc:
            response._fail(H1ConnectionError(f"invalid HTTP response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            response._fail(H1ConnectionError("the connection closed before the response was complete"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response.keep_alive = self.parser.should_keep_alive()
        if not response._headers_done.done():
            response._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.body.append(body)
        response._buffered += len(body)
        if response._buffered > response._pool.max_response_bytes:
            response.body = []
            response._fail(H1ResponseTooLarge(response._pool.max_response_bytes))
            self.abort()  # the rest of the answer is not read: the connection cannot be reused
            return
        if response._buffered > _PAUSE_AT and not response._whole and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        response._wake()

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        response.complete = True
        response._wake()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _TunnelHandshake(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT (up to the blank line); `status` is its status code."""

    def __init__(self) -> None:
        self.status: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._head = b""

    def data_received(self, data: bytes) -> None:
        self._head += data
        if not self.status.done() and b"\r\n\r\n" in self._head:
            line = self._head.split(b"\r\n", 1)[0].split(b" ")
            self.status.set_result(line[1].decode("latin-1", "replace") if len(line) > 1 else "?")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(ConnectionError("closed"))


class H1Pool:
    """Keep-alive connections to one origin."""

    def __init__(
        self,
        url: str,
        connect_timeout: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        # An IPv6 literal is bracketed in Host and in a request target (RFC 7230 §5.4, RFC 3986 §3.2.2).
        authority_host = f"[{self.host}]" if ":" in self.host else self.host
        host_header = authority_host if default_port else f"{authority_host}:{self.port}"
        self._host_line = f"host: {host_header}\r\n".encode("latin-1")
        self._target = f"{self.target} HTTP/1.1".encode("latin-1")
        self.proxy = proxy
        if proxy is not None and not self.tls:  # http:// through a proxy: absolute-form requests to it
            self._target = f"http://{host_header}{self.target} HTTP/1.1".encode("latin-1")
            if proxy.authorization:
                self._host_line += f"proxy-authorization: {proxy.authorization}\r\n".encode("latin-1")
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes
        self._idle: list[_Connection] = []

    def _put(self, conn: _Connection) -> None:
        if len(self._idle) < _MAX_IDLE:
            conn.parser = httptools.HttpResponseParser(conn)
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.abort()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        try:
            async with asyncio.timeout(self.connect_timeout):
                if proxy is None:
                    _, conn = await loop.create_connection(
                        _Connection,
                        self.host,
                        self.port,
                        ssl=self._ssl,
                        server_hostname=self.host if self.tls else None,
                    )
                elif self.tls:
                    conn = await self._tunnel(proxy)
                else:
                    _, conn = await loop.create_connection(_Connection, proxy.host, proxy.port)
        except TimeoutError:
            raise H1ConnectionError(f"connect timed out after {self.connect_timeout:g}s") from None
        except OSError as exc:
            # Say why without the backend's address: these messages reach clients and logs.
            raise H1ConnectionError(f"cannot connect: {_reason(exc)}") from None
        return conn

    async def _tunnel(self, proxy: Proxy) -> _Connection:
        """A TLS connection to the backend through the proxy's CONNECT tunnel."""
        loop = asyncio.get_running_loop()
        raw, handshake = await loop.create_connection(_TunnelHandshake, proxy.host, proxy.port)
        authority = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        auth = f"proxy-authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        raw.write(f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n{auth}\r\n".encode("latin-1"))
        try:
            status = await handshake.status
        except ConnectionError:
            raw.abort()
            raise H1ConnectionError("the proxy closed the connection instead of opening a tunnel") from None
        if status != "200":
            raw.abort()
            raise H1ConnectionError(f"the proxy refused the tunnel (HTTP {status})")
        assert self._ssl is not None
        transport = await loop.start_tls(raw, handshake, self._ssl, server_hostname=self.host)
        assert transport is not None
        conn = _Connection()
        transport.set_protocol(conn)
        conn.connection_made(transport)
        return conn

    async def request(self, method: str, headers: list[tuple[str, str]] | bytes, body: bytes = b"") -> H1Response:
        """Send a request; return once the response headers arrived.

        `headers` is a list of (name, value), or header lines already encoded (`b"name: value\\r\\n"...`).
        """
        if not isinstance(headers, bytes):
            headers = encode_headers(headers)
        data = b"%s %s\r\n%scontent-length: %d\r\n%s\r\n%s" % (
            method.encode(),
            self._target,
            self._host_line,
            len(body),
            headers,
            body,
        )
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > _REUSE_WITHIN_S:
                conn.abort()  # the server may be closing it right now
                continue
            response = await self._send(conn, data)
            if response is not None:
                return response
            # The backend closed the reused connection without answering. A GET or DELETE is sent again
            # on a fresh one; a POST may have reached the backend and run (a tools/call twice): never.
            if method == "POST":
                raise H1ConnectionError("the connection closed as the request was sent (not re-sent: it may have run)")
        response = await self._send(await self._connect(), data)
        if response is None:
            raise H1ConnectionError("the connection closed before the response was complete")
        return response

    async def _send(self, conn: _Connection, data: bytes) -> H1Response | None:
        response = H1Response(conn, self)
        conn.response = response
        assert conn.transport is not None
        conn.transport.write(data)
        try:
            await response._headers_done
        except H1ConnectionError:
            if not response.received:
                conn.response = None
                return None
            raise
        except asyncio.CancelledError:
            response.close()
            raise
        return response

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle.clear()

"""The upstream HTTP/1.1 client (proxy/_upstream/_h1.py) against a raw asyncio server that misbehaves
on purpose: keep-alive reuse, idle connections the server closed, chunked SSE, pause and resume, large
bodies, the response limit, garbage, a request lost as the server closes, and cancelling mid-body."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import pytest

from proxy._config import TLSConfig
from proxy._upstream._h1 import H1ConnectionError, H1Pool, H1ResponseTooLarge
from proxy._upstream._proxy import proxy_for
from proxy._upstream._tls import tls_context

pytestmark = pytest.mark.anyio

yield_to_loop = functools.partial(asyncio.sleep, 0)  # one turn of the event loop, not a wait for time
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Listening:
    """An asyncio server on 127.0.0.1 (a free port) for the life of an `async with`; subclasses serve."""

    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class Server(Listening):
    """Counts connections and requests; each connection is served by `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        body = await reader.readexactly(length)
        self.requests.append(body)
        return body


def json_response(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def keep_alive_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
    while True:
        body = await server.read_request(reader)
        writer.write(json_response(b'{"echo":' + body + b"}"))
        await writer.drain()


@pytest.fixture
async def pool_of() -> AsyncIterator[Callable[..., H1Pool]]:
    pools: list[H1Pool] = []

    def make(url: str, **kwargs: Any) -> H1Pool:
        pools.append(H1Pool(url, connect_timeout=5, **kwargs))
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


async def post(pool: H1Pool, body: bytes) -> bytes:
    response = await pool.request("POST", [("content-type", "application/json")], body)
    try:
        return await response.read()
    finally:
        response.release()


async def test_keep_alive_reuses_one_connection(pool_of: Callable[..., H1Pool]) -> None:
    async with Server(keep_alive_json) as server:
        pool = pool_of(server.url)
        for i in range(5):
            assert await post(pool, str(i).encode()) == b'{"echo":%d}' % i
        assert server.connections == 1 and len(server.requests) == 5


async def test_an_idle_connection_the_server_closed_is_not_used(pool_of: Callable[..., H1Pool]) -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        body = await s.read_request(reader)
        writer.write(json_response(body))
        await writer.drain()  # ... and the handler returns: the server closes the kept-alive connection

    async with Server(one_answer_then_close) as server:
        pool = pool_of(server.url)
        assert await post(pool, b"1") == b"1"
        await asyncio.wait_for(server.closed.wait(), 5)
        idle = pool._idle[0]
        async with asyncio.timeout(5):  # the client's loop reads the close
            while not idle.closed:
                await yield_to_loop()
        assert await post(pool, b"2") == b"2"  # on a new connection, sent once
        assert server.connections == 2 and server.requests == [b"1", b"2"]


async def test_a_post_lost_as_the_server_closes_is_not_sent_again(pool_of: Callable[..., H1Pool]) -> None:
    """The server reads the second request, then closes without answering: it may have run it. A
    POST is not re-sent on a fresh connection (a tools/call would run twice)."""

    async def answer_once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        writer.write(json_response(await s.read_request(reader)))
        await writer.drain()
        await s.read_request(reader)  # read, never answered
        writer.transport.abort()

    async with Server(answer_once_then_drop) as server:
        pool = pool_of(server.url)
        assert await post(pool, b"1") == b"1"
        with pytest.raises(H1ConnectionError, match="not re-sent"):
            await post(pool, b"2")
        assert server.requests == [b"1", b"2"]  # the second was received once, and only once


async def test_chunked_sse_arrives_as_it_is_sent(pool_of: Callable[..., H1Pool]) -> None:
    go_on = asyncio.Event()

    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await go_on.wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with Server(sse) as server:
        response = await pool_of(server.url).request("POST", [], b"{}")
        assert response.content_type == "text/event-stream"
        received = []
        async for chunk in response.chunks():
            received.append(chunk)
            go_on.set()  # the second event is sent only after the first arrived: no buffering to the end
        response.release()
        assert b"".join(received) == b"data: one\n\ndata: two\n\n"


async def test_large_bodies_streamed_and_read_whole(pool_of: Callable[..., H1Pool]) -> None:
    """Past the 1 MiB read-ahead a streamed body pauses until the consumer takes it, and resumes; a body
    read whole is not paused at all (it used to stop there and wait out the caller's timeout)."""
    size = 5 * 1024 * 1024

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            writer.write(json_response(b'"' + b"x" * (size - 2) + b'"'))
            await writer.drain()

    async with Server(big) as server:
        pool = pool_of(server.url)
        assert len(await asyncio.wait_for(post(pool, b"{}"), 10)) == size
        response = await pool.request("POST", [], b"{}")
        total = 0
        async for chunk in response.chunks():
            total += len(chunk)
            await yield_to_loop()  # a consumer slower than the socket
        response.release()
        assert total == size


async def test_a_body_past_the_limit_is_refused_and_its_connection_closed(pool_of: Callable[..., H1Pool]) -> None:
    async with Server(keep_alive_json) as server:
        pool = pool_of(server.url, max_response_bytes=2 * 1024 * 1024)
        assert await post(pool, b"1") == b'{"echo":1}'
        with pytest.raises(H1ResponseTooLarge, match="more than 2097152 bytes"):
            await post(pool, b'"' + b"y" * (3 * 1024 * 1024) + b'"')
        assert await post(pool, b"2") == b'{"echo":2}'  # a new connection serves the next request
        assert server.connections == 2


async def test_garbage_is_an_invalid_response(pool_of: Callable[..., H1Pool]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with Server(garbage) as server:
        with pytest.raises(H1ConnectionError, match="invalid HTTP response"):
            await post(pool_of(server.url), b"{}")


async def test_closing_mid_body_closes_the_connection(pool_of: Callable[..., H1Pool]) -> None:
    """How a modern backend learns that its client cancelled: the gateway closes the connection."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:  # until the client goes: drain() waits while the socket is full, then fails
            writer.write(b"c\r\ndata: tick\n\n\r\n")
            await writer.drain()

    async with Server(endless) as server:
        response = await pool_of(server.url).request("POST", [], b"{}")
        async for _ in response.chunks():
            break
        response.close()
        await asyncio.wait_for(server.closed.wait(), 5)


async def test_connection_refused_says_so(pool_of: Callable[..., H1Pool]) -> None:
    async with Server(keep_alive_json) as server:
        url = server.url
    with pytest.raises(H1ConnectionError, match="connection refused"):
        await post(pool_of(url), b"{}")


def _certificates(tmp: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (tmp / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    write("ca", ca, ca_key)
    for stem, usage, san in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("gateway.test")]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name(stem)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        write(stem, cert, key)
    return {p.stem + p.suffix: p for p in tmp.iterdir()}


async def test_tls_with_a_test_ca_and_mutual_tls(tmp_path: Path, pool_of: Callable[..., H1Pool]) -> None:
    """https:// backends: the CA bundle of `tls.ca_file`, `verify: false`, and a client certificate for a
    server that requires one (mTLS)."""
    files = _certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(files["server.pem"], files["server.key"])
    server_context.load_verify_locations(files["ca.pem"])
    server_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    server = await asyncio.start_server(
        lambda r, w: keep_alive_json(r, w, Server(keep_alive_json)), "127.0.0.1", 0, ssl=server_context
    )
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    try:
        with pytest.raises(H1ConnectionError, match="TLS handshake failed"):  # the system's CAs do not know it
            await post(pool_of(url), b"1")
        no_client_cert = tls_context(TLSConfig(ca_file=str(files["ca.pem"])))
        with pytest.raises(H1ConnectionError):  # the server wants a client certificate
            await post(pool_of(url, ssl_context=no_client_cert), b"1")
        client = {"cert_file": str(files["client.pem"]), "key_file": str(files["client.key"])}
        mutual = tls_context(TLSConfig(ca_file=str(files["ca.pem"]), **client))
        assert await post(pool_of(url, ssl_context=mutual), b"1") == b'{"echo":1}'
        unchecked = tls_context(TLSConfig(verify=False, **client))
        assert await post(pool_of(url, ssl_context=unchecked), b"2") == b'{"echo":2}'
    finally:
        server.close()


class ForwardProxy(Listening):
    """An HTTP proxy for the tests: CONNECT tunnels and absolute-form requests, optionally demanding a
    Proxy-Authorization. Records what it was asked."""

    def __init__(self, authorization: str | None = None) -> None:
        self.authorization = authorization
        self.seen: list[bytes] = []  # request lines

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *header_lines = head.split(b"\r\n")
            self.seen.append(line)
            given = {h.split(b":", 1)[0].lower(): h.split(b":", 1)[1].strip() for h in header_lines if b":" in h}
            if self.authorization and given.get(b"proxy-authorization") != self.authorization.encode():
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                return
            method, target, _ = line.split(b" ")
            if method == b"CONNECT":
                host, port = target.decode().rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # absolute-form: forward the request as it came, to the origin it names
                origin = urlsplit(target.decode())
                up_reader, up_writer = await asyncio.open_connection(origin.hostname, origin.port)
                up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_backends_through_an_http_proxy(
    tmp_path: Path, pool_of: Callable[..., H1Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY / HTTP_PROXY (with credentials in the proxy URL) and NO_PROXY, read as curl reads them:
    https:// through a CONNECT tunnel (TLS end to end), http:// as absolute-form requests to the proxy."""
    files = _certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(files["server.pem"], files["server.key"])
    tls_backend = await asyncio.start_server(
        lambda r, w: keep_alive_json(r, w, Server(keep_alive_json)), "127.0.0.1", 0, ssl=server_context
    )
    async with Server(keep_alive_json) as plain_backend, ForwardProxy("Basic dTpwQHNz") as proxy:  # u:p@ss
        https_url = f"https://127.0.0.1:{tls_backend.sockets[0].getsockname()[1]}/mcp"
        monkeypatch.setenv("HTTPS_PROXY", f"http://u:p%40ss@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("HTTP_PROXY", f"http://u:p%40ss@127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        trusted = tls_context(TLSConfig(ca_file=str(files["ca.pem"])))
        via = proxy_for(https_url)
        assert via is not None and "p@ss" not in repr(via)
        assert await post(pool_of(https_url, ssl_context=trusted, proxy=via), b"1") == b'{"echo":1}'
        assert proxy.seen[-1] == f"CONNECT 127.0.0.1:{https_url.split(':')[2].split('/')[0]} HTTP/1.1".encode()
        assert await post(pool_of(plain_backend.url, proxy=proxy_for(plain_backend.url)), b"2") == b'{"echo":2}'
        assert proxy.seen[-1] == f"POST {plain_backend.url} HTTP/1.1".encode()
        wrong = proxy_for(https_url).__class__("127.0.0.1", proxy.port, "Basic bm9wZQ==")
        with pytest.raises(H1ConnectionError, match=r"the proxy refused the tunnel \(HTTP 407\)"):
            await post(pool_of(https_url, ssl_context=trusted, proxy=wrong), b"3")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert proxy_for(https_url) is None and proxy_for(plain_backend.url) is None
    tls_backend.close()


async def test_an_ipv6_backend_gets_a_bracketed_host(pool_of: Callable[..., H1Pool]) -> None:
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(json_response(b"{}"))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "::1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        assert await post(pool_of(f"http://[::1]:{port}/mcp"), b"{}") == b"{}"
        assert f"host: [::1]:{port}\r\n".encode() in heads[0].lower()
    finally:
        server.close()

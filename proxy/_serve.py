"""Run the gateway under uvicorn with uvloop and httptools (the fast client-facing stack).

The listening socket is bound here, before the app starts, so that a busy or forbidden address is one
`ListenError` line for the CLI instead of uvicorn's log; `on_listening` is called once the server
really accepts connections.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._app import create_app
from ._catalog import BackendFactory
from ._config import Config

__all__ = ["ListenError", "bind", "run"]

_WHY = {
    errno.EADDRINUSE: "the address is in use (another process listens there; choose another port)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no network interface of this machine has that address",
}


class ListenError(Exception):
    """An address the server cannot listen on; the message is one line for the user."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (not yet listening), without SO_REUSEPORT: a port another process
    holds is refused, never shared."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        # SO_REUSEADDR only lets a restarted server reuse a port in TIME_WAIT; it never shares a listening port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
        raise ListenError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def _protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline for a request's headers: from the connection's start,
    and from each request's first byte, the headers must be complete within `header_timeout_s`, or the
    connection is closed. uvicorn has none: a client sending a header byte every few seconds (slowloris)
    held its connection forever. The keep-alive timeout between requests stays uvicorn's."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_listening is not None:
            self._on_listening()


def run(
    config: Config,
    config_file: str | None,
    reload: bool = True,
    backend_factory: BackendFactory | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. Raises ListenError (before anything starts) when the address is refused."""
    sock = bind(config.listen.host, config.listen.port)
    app = create_app(config, config_file, watch=reload, backend_factory=backend_factory)
    server = _Server(
        uvicorn.Config(
            app,
            loop="uvloop",
            http=_protocol(config.limits.header_timeout_s),
            lifespan="on",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # X-Forwarded-* are not trusted unless a deployment says so
            server_header=False,
            timeout_graceful_shutdown=5,
        ),
        on_listening,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

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
from typing import Any

import uvicorn

from ._app import create_app
from ._catalog import BackendFactory
from ._config import Config

__all__ = ["ListenError", "bind", "run", "serve_socket"]

_WHY = {
    errno.EADDRINUSE: "the address is in use (another process listens there; choose another port)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no network interface of this machine has that address",
}


class ListenError(Exception):
    """An address the server cannot listen on; the message is one line for the user."""


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port (not yet listening). Without SO_REUSEPORT a port another process
    holds is refused, never shared; `serve --workers` binds one socket per worker with it, after checking
    with a plain bind that nobody holds the port (the kernel then spreads connections over the workers)."""
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
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
        raise ListenError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


class _HeaderDeadline:
    """Closes connections that take longer than `timeout_s` to send a request's headers (slowloris: a
    header byte every few seconds held a connection forever; uvicorn has no such timeout).

    A sweep every `timeout_s / 2` looks at uvicorn's connections: one with no request in progress and no
    keep-alive timer running is reading headers (or has sent nothing yet); seen so, with the same last
    request, on sweeps `timeout_s` apart, it is closed. Nothing runs per request (a timer per request cost
    ~10k instructions, 2 % of a proxied call). Reads uvicorn's httptools protocol state (`cycle`,
    `timeout_keep_alive_task`): uvicorn is pinned below 1.0."""

    def __init__(self, connections: set[Any], timeout_s: float) -> None:
        self.connections = connections
        self.timeout_s = timeout_s
        self._suspects: dict[Any, tuple[float, int]] = {}  # connection -> (first seen waiting, its last cycle)

    async def sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.timeout_s / 2)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        suspects = {}
        for conn in list(self.connections):
            cycle = getattr(conn, "cycle", None)
            busy = cycle is not None and not cycle.response_complete
            if busy or getattr(conn, "timeout_keep_alive_task", None) is not None:
                continue  # serving a request, or idle under uvicorn's keep-alive timeout
            seen = self._suspects.get(conn)
            if seen is not None and seen[1] == id(cycle):
                if now - seen[0] >= self.timeout_s:
                    conn.transport.close()
                    continue
                suspects[conn] = seen
            else:
                suspects[conn] = (now, id(cycle))
        self._suspects = suspects


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, on_listening: Callable[[], None] | None, header_timeout_s: float
    ) -> None:
        super().__init__(config)
        self._on_listening = on_listening
        self._header_timeout_s = header_timeout_s
        self._sweeper: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            deadline = _HeaderDeadline(self.server_state.connections, self._header_timeout_s)
            self._sweeper = asyncio.get_running_loop().create_task(deadline.sweep_forever(), name="header deadline")
            if self._on_listening is not None:
                self._on_listening()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await super().shutdown(sockets)


def run(
    config: Config,
    config_file: str | None,
    reload: bool = True,
    backend_factory: BackendFactory | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. Raises ListenError (before anything starts) when the address is refused."""
    sock = bind(config.listen.host, config.listen.port)
    try:
        serve_socket(config, config_file, sock, reload, backend_factory, on_listening)
    finally:
        sock.close()


def serve_socket(
    config: Config,
    config_file: str | None,
    sock: socket.socket,
    reload: bool = True,
    backend_factory: BackendFactory | None = None,
    on_listening: Callable[[], None] | None = None,
) -> bool:
    """Serve on a bound socket (this process's own, or one `serve --workers` shares) until SIGINT/SIGTERM."""
    app = create_app(config, config_file, watch=reload, backend_factory=backend_factory)
    server = _Server(
        uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # X-Forwarded-* are not trusted unless a deployment says so
            server_header=False,
            timeout_graceful_shutdown=5,
        ),
        on_listening,
        config.limits.header_timeout_s,
    )
    server.run(sockets=[sock])
    return bool(server.started)  # False: the gateway failed to start (logged)

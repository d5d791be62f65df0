"""The ASGI application: security checks, the MCP endpoints, health, lifespan and hot reload.

`/…/mcp` goes straight to the MCP endpoint (the hot path skips Starlette's router); everything
else — `/healthz`, `/readyz` — is a small Starlette app.

    app = create_app(load_config("slicewire.yaml"))
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._admin import AdminApi
from ._catalog import BackendFactory
from ._config import Config, ConfigError, StartError, load_config
from ._endpoint import McpEndpoint
from ._gateway import Gateway
from ._jsonrpc import INVALID_REQUEST, encode_error
from ._responder import Receive, Send
from ._resume import serve_resume
from ._vsapi import VirtualServerApi

logger = logging.getLogger(__name__)

__all__ = ["SlicewireApp", "create_app"]

GC_GEN0_THRESHOLD = 20_000
# The gateway's own endpoints (metadata, OAuth callback, API); no virtual server path starts so.
_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)
_OWN_PREFIXES = ("/.well-known/", "/oauth/", "/api/")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """`example.com:8080` -> `example.com`, `[::1]:80` -> `[::1]`."""
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SlicewireApp:
    """The gateway as one ASGI callable. `gateway` is live once the lifespan has started."""

    def __init__(
        self,
        config: Config,
        config_file: str | None = None,
        watch: bool = True,
        backend_factory: BackendFactory | None = None,
    ) -> None:
        self.gateway = Gateway(config, backend_factory=backend_factory)
        self.config_file = config_file
        if config_file is not None:
            self.gateway.reload_from_file = self.reload
        self.gateway.on_resume = lambda message: serve_resume(self.gateway, message)
        self.watch = watch and config_file is not None
        self.endpoint = McpEndpoint(self.gateway)
        self._watcher: asyncio.Task[None] | None = None
        self._loopback_bind = _is_loopback(config.listen.host)
        # Verdicts per (Host, Origin) pair, valid for one security config (cleared when it changes).
        self._verdicts: dict[tuple[str | None, str | None], str | None] = {}
        self._verdicts_for: object = None
        self.admin = AdminApi(self.gateway)
        self.servers_api = VirtualServerApi(self.gateway, self.admin.identify, config_file)
        self.aux = Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/readyz", self._readyz),
                *self.admin.routes(),  # before the servers API: /api/v1/virtual-servers/<vs>/status is here
                *self.servers_api.routes(),
            ],
        )

    # --- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            refusal = self._refuse(scope)
            if refusal is not None:
                await _plain_error(send, 403, refusal)
                return
            raw_path: bytes = scope.get("raw_path") or b""
            if raw_path.find(b"%") != -1 and _ENCODED_SEPARATOR.search(raw_path):
                # Decoded, `/virtual/a%2Fmcp` would name another route than the one the client wrote.
                await _plain_error(send, 400, "Bad request: an encoded '/' or '\\' in the path")
                return
            path: str = scope["path"]
            if path.endswith(("/mcp", "/mcp/")) and not path.startswith(_OWN_PREFIXES):
                await self.endpoint(scope, receive, send)
                return
            if path in ("/healthz", "/readyz", "/metrics") or path.startswith(_OWN_PREFIXES):
                await self.aux(scope, receive, send)
                return
            await _plain_error(send, 404, f"Not found: {path}")
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _refuse(self, scope: dict[str, Any]) -> str | None:
        """DNS-rebinding protection: Host and Origin must be ones this gateway is meant to serve."""
        host = origin = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
        security = self.gateway.config.security
        if self._verdicts_for is not security or len(self._verdicts) > 1024:
            self._verdicts = {}
            self._verdicts_for = security
        key = (host, origin)
        try:
            return self._verdicts[key]
        except KeyError:
            verdict = self._verdicts[key] = self._judge(host, origin)
            return verdict

    def _judge(self, host: str | None, origin: str | None) -> str | None:
        security = self.gateway.config.security
        loopback_bind = self._loopback_bind
        if host is not None:
            name = _host_name(host).lower()
            if security.allowed_hosts:
                if name not in security.allowed_hosts and host.lower() not in security.allowed_hosts:
                    return f"Forbidden: Host {host!r} is not in security.allowed_hosts"
            elif loopback_bind and name not in _LOOPBACK_NAMES:
                return f"Forbidden: Host {host!r} is not a loopback name (set security.allowed_hosts)"
        if origin is not None and origin != "null":
            if origin in security.allowed_origins:
                return None
            hostname = urlsplit(origin).hostname or ""
            if not (loopback_bind and _is_loopback(hostname)):
                return f"Forbidden: Origin {origin!r} is not in security.allowed_origins"
        elif origin == "null" and "null" not in security.allowed_origins:
            return "Forbidden: Origin 'null' is not allowed"
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await self.gateway.start()
            if self.watch:
                self._watcher = asyncio.get_running_loop().create_task(self._watch_config())
        except StartError as exc:  # a setting it cannot start with: the message says which
            logger.error("gateway failed to start: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        except Exception as exc:
            logger.exception("gateway failed to start")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        # Everything built at start-up lives as long as the process: keep it out of the cyclic GC's
        # scans, and collect the young generation less often (the hot path allocates many short-lived
        # dicts; measured in bench/).
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        if self._watcher is not None:
            self._watcher.cancel()
        await self.gateway.close()
        await send({"type": "lifespan.shutdown.complete"})

    # --- health ----------------------------------------------------------------------------------

    async def _healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, request: Request) -> JSONResponse:
        # Readiness only: which backends and tools exist is for admins (/api/v1/status).
        ready = self.gateway.catalog.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    # --- hot reload ------------------------------------------------------------------------------

    def _watched(self) -> tuple[set[Path], set[Path], Path | None]:
        """The YAML file, the directories to watch, and the virtual-servers directory if any."""
        assert self.config_file is not None
        config_file = Path(self.config_file).resolve()
        files = {config_file}
        dirs = {config_file.parent}
        vs_dir = None
        if self.gateway.config.virtual_servers_dir:
            vs_dir = (config_file.parent / self.gateway.config.virtual_servers_dir).resolve()
            if vs_dir.is_dir():
                dirs.add(vs_dir)
        return files, dirs, vs_dir

    async def _watch_config(self) -> None:
        from watchfiles import awatch

        while True:
            files, dirs, vs_dir = self._watched()

            def relevant(change: Any, path: str, files: set[Path] = files, vs_dir: Path | None = vs_dir) -> bool:
                p = Path(path).resolve()
                return p in files or (p.suffix == ".json" and p.parent == vs_dir)

            async for _ in awatch(*dirs, watch_filter=relevant, debounce=200, step=50):
                await self.reload()
                break  # the watched set may have changed with the new config

    async def reload(self) -> bool:
        """Load the config file again and serve it; on error keep the current config. True if applied."""
        assert self.config_file is not None
        try:
            config = load_config(self.config_file)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error("config reload rejected, still serving the previous config: %s", problem)
            return False
        config = config.model_copy(update={"listen": self.gateway.config.listen})
        await self.gateway.reload(config)
        return True


async def _plain_error(send: Send, status: int, message: str) -> None:
    body = encode_error(None, INVALID_REQUEST, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    config: Config, config_file: str | None = None, watch: bool = True, backend_factory: BackendFactory | None = None
) -> SlicewireApp:
    return SlicewireApp(config, config_file, watch, backend_factory)

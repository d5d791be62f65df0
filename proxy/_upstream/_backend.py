"""What every backend transport shares: the era handshake, listing tools, unsolicited notifications.

Subclasses provide three primitives — `_connect_transport`, `_open_raw` and `_notify_raw` — and get
`open()`, `request()`, `list_tools()` and reconnection for free.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from .._config import BackendConfig
from .._jsonrpc import Message
from .._mcp import (
    LATEST_LEGACY,
    LEGACY_VERSIONS,
    META_SERVER_INFO,
    MODERN_VERSIONS,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from ._base import (
    GATEWAY_CLIENT_CAPABILITIES,
    GATEWAY_CLIENT_INFO,
    BackendError,
    BackendProtocolError,
    BackendUnavailable,
    Exchange,
    IdSource,
    ServerIdentity,
    answer_without_client,
    modern_meta,
)
from ._h1 import DEFAULT_MAX_RESPONSE_BYTES, H1Pool
from ._proxy import proxy_for
from ._tls import tls_context

logger = logging.getLogger(__name__)

__all__ = ["Backend", "BackendRpcError", "Headers"]

Headers = list[tuple[str, str]]

# Pages of tools/list we follow before deciding a backend's cursor loops.
_MAX_PAGES = 1000


class BackendRpcError(BackendError):
    """The backend answered with a JSON-RPC error."""

    def __init__(self, backend: str, error: dict[str, Any]) -> None:
        self.code = error.get("code")
        self.data = error.get("data")
        super().__init__(backend, f"error {self.code}: {error.get('message')}")


class Backend(abc.ABC):
    """One configured backend MCP server, connected in whichever era it speaks."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.path = config.path
        self.identity: ServerIdentity | None = None
        self.last_error: str | None = None
        # Called with (backend, message) for notifications and requests not tied to a request of ours.
        self.on_notification: Callable[[Backend, Message], None] = lambda backend, message: None
        # Called after every successful (re)connection, e.g. to rediscover tools after a restart.
        self.on_connected: Callable[[Backend], None] = lambda backend: None
        # Headers every request to this backend carries (static credentials, a client-credentials
        # token), from the gateway's credential layer; HTTP transports only.
        self.shared_headers: Callable[[], Awaitable[Headers]] | None = None
        # The largest answer read whole (limits.max_response_bytes, set by the gateway); HTTP transports only.
        self.max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES
        self._tls_context: ssl.SSLContext | None = None
        # Resource URIs a 2026-07-28 backend's subscriptions/listen stream asks updates for.
        self.watched: set[str] = set()
        self._ids = IdSource()
        self._connect_lock = asyncio.Lock()
        self._closed = False
        # The backend as the gateway reaches it, for the flight recorder's upstream spans: (server
        # address, port, network transport, MCP version, its session id); kept current on (re)connect.
        self.peer: tuple[str, int, str, str, str] = (*_address(config), "", "")

    @property
    def session_id(self) -> str | None:
        """The backend's own session id for the gateway (2025-11-25 over HTTP), if it gave one."""
        return None

    def _update_peer(self) -> None:
        identity = self.identity
        version = identity.protocol_version if identity is not None else ""
        self.peer = (*self.peer[:3], version, self.session_id or "")

    def _pool(self, url: str) -> H1Pool:
        """Keep-alive connections to `url` with this backend's settings: connect timeout, response limit,
        TLS context, and the proxy the environment names for it."""
        return H1Pool(url, self.config.connect_timeout_s, self.max_response_bytes, self._tls(), proxy_for(url))

    def _tls(self) -> ssl.SSLContext | None:
        """The TLS context for this backend's https:// URLs (made once; None for plain HTTP)."""
        url = self.config.url or ""
        if not url.startswith("https://"):
            return None
        if self._tls_context is None:
            try:
                self._tls_context = tls_context(self.config.tls, self.path)
            except (ssl.SSLError, OSError) as exc:
                raise BackendUnavailable(self.path, f"its tls files cannot be used ({exc})") from None
        return self._tls_context

    # --- primitives a transport provides -------------------------------------------------------

    @abc.abstractmethod
    async def _connect_transport(self) -> None:
        """Make the transport usable (spawn the process, open the HTTP pool). Idempotent."""

    @abc.abstractmethod
    async def _open_raw(
        self, method: str, params: dict[str, Any] | None, era: str, headers: Headers | None = None
    ) -> Exchange:
        """Send one request as-is (ids assigned here) and return its exchange. `headers`: this
        request's own (a user's credential), over the backend's shared ones; HTTP transports only."""

    @abc.abstractmethod
    async def _notify_raw(self, method: str, params: dict[str, Any] | None, era: str) -> None:
        """Send one notification."""

    async def _after_handshake(self) -> None:  # noqa: B027 - optional hook
        """Open whatever carries unsolicited notifications (GET stream, subscriptions/listen)."""

    async def _rewatch(self) -> None:  # noqa: B027 - optional hook
        """Reopen the subscriptions/listen stream with the current `watched` URIs (2026-07-28 backends)."""

    async def _reset(self) -> None:  # noqa: B027 - optional hook
        """Forget the session after the backend lost it (restart, expiry)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything; the backend is not used again."""

    # --- shared behaviour ------------------------------------------------------------------------

    async def connect(self) -> ServerIdentity:
        """Connect and run the era handshake, once; concurrent callers wait for the same attempt."""
        if self.identity is not None:
            return self.identity
        async with self._connect_lock:
            if self.identity is not None:
                return self.identity
            if self._closed:
                raise BackendUnavailable(self.path, "the gateway is shutting down")
            try:
                await self._connect_transport()
                identity = await self._handshake()
            except BackendError as exc:
                self.last_error = exc.detail
                raise
            self.identity = identity
            self.last_error = None
            logger.info(
                "backend %s connected: %s era, protocol %s, server %s %s",
                self.path,
                identity.era,
                identity.protocol_version,
                identity.server_info.get("name", "?"),
                identity.version or "",
            )
            self._update_peer()
            await self._after_handshake()
        self.on_connected(self)
        return identity

    async def disconnect(self, reason: str) -> None:
        """Drop the session so that the next request handshakes again."""
        if self.identity is not None:
            logger.warning("backend %s: %s; reconnecting on next use", self.path, reason)
        self.identity = None
        self.last_error = reason
        await self._reset()
        self._update_peer()

    async def _handshake(self) -> ServerIdentity:
        pinned = self.config.protocol_version
        if pinned == "auto" or pinned in MODERN_VERSIONS:
            identity = await self._try_discover(required=pinned != "auto")
            if identity is not None:
                return identity
        version = pinned if pinned in LEGACY_VERSIONS else LATEST_LEGACY
        result = await self._raw_request(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": GATEWAY_CLIENT_CAPABILITIES,
                "clientInfo": GATEWAY_CLIENT_INFO,
            },
            "legacy",
        )
        negotiated = result.get("protocolVersion")
        if negotiated not in LEGACY_VERSIONS:
            raise BackendProtocolError(self.path, f"initialize answered with unknown protocol version {negotiated!r}")
        identity = ServerIdentity(
            era="legacy",
            protocol_version=negotiated,
            server_info=_dict(result.get("serverInfo")),
            capabilities=_dict(result.get("capabilities")),
            instructions=result.get("instructions") if isinstance(result.get("instructions"), str) else None,
        )
        self.identity = identity  # the session exists from here on; initialized is sent within it
        await self._notify_raw("notifications/initialized", None, "legacy")
        return identity

    async def _try_discover(self, required: bool) -> ServerIdentity | None:
        """Probe `server/discover`. None means "speaks the legacy era": fall back to initialize."""
        try:
            result = await self._raw_request("server/discover", {"_meta": modern_meta(None)}, "modern", probe=True)
        except BackendRpcError as exc:
            if exc.code == UNSUPPORTED_PROTOCOL_VERSION:
                supported = exc.data.get("supported") if isinstance(exc.data, dict) else None
                if isinstance(supported, list) and not any(v in LEGACY_VERSIONS for v in supported):
                    raise BackendProtocolError(
                        self.path, f"speaks only protocol versions {supported}, none of which Slicewire knows"
                    ) from None
            if required:
                raise
            return None
        except BackendProtocolError:
            if required:
                raise
            return None
        supported = result.get("supportedVersions")
        if not isinstance(supported, list) or not any(v in MODERN_VERSIONS for v in supported):
            if required:
                raise BackendProtocolError(self.path, f"server/discover lists no modern version: {supported!r}")
            return None
        meta = _dict(result.get("_meta"))
        return ServerIdentity(
            era="modern",
            protocol_version=[v for v in MODERN_VERSIONS if v in supported][-1],
            server_info=_dict(meta.get(META_SERVER_INFO)),
            capabilities=_dict(result.get("capabilities")),
            instructions=result.get("instructions") if isinstance(result.get("instructions"), str) else None,
        )

    async def _raw_request(
        self, method: str, params: dict[str, Any] | None, era: str, probe: bool = False
    ) -> dict[str, Any]:
        exchange = await self._open_raw(method, params, era)
        if probe:
            # A legacy stdio server may ignore a method it does not know; do not wait the full timeout.
            exchange.timeout_s = min(exchange.timeout_s, 5.0)
        return await self._drain(exchange)

    async def _drain(self, exchange: Exchange) -> dict[str, Any]:
        """Wait for the final answer, refusing any server-to-client request on the way."""
        while True:
            msg = await exchange.next()
            if msg.kind == "result":
                result = msg.result
                if not isinstance(result, dict):
                    raise BackendProtocolError(self.path, "the result is not a JSON object")
                return result
            if msg.kind == "error":
                raise BackendRpcError(self.path, msg.error)
            if msg.kind == "request" and msg.id is not None:
                await exchange.answer(msg.id, answer_without_client(msg.method))

    async def open(
        self,
        method: str,
        params: dict[str, Any] | None,
        headers: Headers | None = None,
        envelope: dict[str, Any] | None = None,
    ) -> Exchange:
        """Send a request in the backend's era: for a modern backend, with the `_meta` envelope — the
        gateway's, over which `envelope` puts the client's own (its capabilities, its log level)."""
        identity = await self.connect()
        if identity.era == "modern":
            params = dict(params) if params else {}
            meta = modern_meta(params.get("_meta"))
            if envelope:
                meta.update(envelope)
            params["_meta"] = meta
        return await self._open_raw(method, params, identity.era, headers)

    async def subscribe(self, uri: str, headers: Headers | None = None) -> None:
        """Ask for `notifications/resources/updated` about a URI: `resources/subscribe` in the legacy era,
        the URI in the subscriptions/listen filter in the modern one. Raises BackendError."""
        identity = await self.connect()
        if identity.era == "modern":
            self.watched.add(uri)
            await self._rewatch()
            return
        await self._drain(await self.open("resources/subscribe", {"uri": uri}, headers))

    async def unsubscribe(self, uri: str) -> None:
        identity = await self.connect()
        if identity.era == "modern":
            self.watched.discard(uri)
            await self._rewatch()
            return
        await self._drain(await self.open("resources/unsubscribe", {"uri": uri}))

    async def notify(self, method: str, params: dict[str, Any] | None) -> None:
        identity = await self.connect()
        await self._notify_raw(method, params, identity.era)

    async def request(
        self, method: str, params: dict[str, Any] | None = None, headers: Headers | None = None
    ) -> dict[str, Any]:
        """A request whose server-to-client requests nobody can answer (discovery, health, task status)."""
        return await self._drain(await self.open(method, params, headers))

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the backend offers, following pagination."""
        return await self.list_all("tools/list", "tools", "name")

    async def list_all(self, method: str, key: str, name: str) -> list[dict[str, Any]]:
        """Every item of a paginated list (`tools/list` → "tools", ...), keeping objects with a string `name`."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            result = await self.request(method, {"cursor": cursor} if cursor else None)
            page = result.get(key)
            if not isinstance(page, list):
                raise BackendProtocolError(self.path, f"{method} result has no {key!r} array")
            items.extend(item for item in page if isinstance(item, dict) and isinstance(item.get(name), str))
            cursor = result.get("nextCursor")
            if not cursor:
                return items
        raise BackendProtocolError(self.path, f"{method} did not end after {_MAX_PAGES} pages")

    async def close(self) -> None:
        self._closed = True
        self.identity = None
        await self.aclose()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _address(config: BackendConfig) -> tuple[str, int, str]:
    """(server.address, server.port, network.transport) of a backend, from its configuration."""
    if config.transport == "stdio" or not config.url:
        return "", 0, "pipe"
    url = urlsplit(config.url)
    try:
        port = url.port
    except ValueError:
        port = None
    return url.hostname or "", port or (443 if url.scheme == "https" else 80), "tcp"

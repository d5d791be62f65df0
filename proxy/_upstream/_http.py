"""Streamable HTTP backends, both eras, over one keep-alive connection pool per backend.

The pool is `_h1.H1Pool`, a small httptools-based client: the fastest correct upstream client
measured for this workload (bench/README.md has the figures for aiohttp and httpx).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from .._config import BackendConfig
from .._jsonrpc import Message, ProtocolError, RequestId, encode_notification, encode_request, parse_message
from .._mcp import (
    LATEST_LEGACY,
    LATEST_MODERN,
    META_SUBSCRIPTION_ID,
    PROTOCOL_VERSION_HEADER,
    SESSION_ID_HEADER,
    encode_header_value,
    name_param,
)
from .._sse import SSEDecoder
from ._backend import Backend, Headers
from ._base import BackendProtocolError, BackendUnavailable, Exchange, answer_without_client, modern_meta
from ._h1 import H1ConnectionError, H1Pool, H1Response, H1ResponseTooLarge, encode_headers

logger = logging.getLogger(__name__)

__all__ = ["StreamableHTTPBackend"]

_ACCEPT = "application/json, text/event-stream"
_JSON = "application/json"
_RECONNECT_DELAY_S = 1.0
_MODERN_HEAD = encode_headers([("accept", _ACCEPT), ("content-type", _JSON), (PROTOCOL_VERSION_HEADER, LATEST_MODERN)])


class StreamableHTTPBackend(Backend):
    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        assert config.url is not None
        self.url = config.url
        self._http: H1Pool | None = None
        self._session_id: str | None = None
        self._listener: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str | None:
        return self._session_id

    async def _connect_transport(self) -> None:
        if self._http is None:
            self._http = self._pool(self.url)

    def _headers(self, method: str | None, params: dict[str, Any] | None, era: str) -> bytes:
        """Encoded header lines for a POST in `era` (the constant part is built once per era)."""
        if era == "modern":
            head = _MODERN_HEAD
            if method is not None:
                head += b"mcp-method: " + method.encode("latin-1") + b"\r\n"
                key = name_param(method)
                if key is not None and params is not None and isinstance(params.get(key), str):
                    head += b"mcp-name: " + encode_header_value(params[key]).encode("latin-1") + b"\r\n"
            return head
        headers = [("accept", _ACCEPT), ("content-type", _JSON)]
        if self.identity is not None:
            headers.append((PROTOCOL_VERSION_HEADER, self.identity.protocol_version))
        if self._session_id is not None:
            headers.append((SESSION_ID_HEADER, self._session_id))
        return encode_headers(headers)

    async def _auth_lines(self, own: Headers | None) -> bytes:
        """Credential header lines: the backend's shared ones, overridden by this request's own."""
        shared = await self.shared_headers() if self.shared_headers is not None else None
        if not own:
            return encode_headers(shared) if shared else b""
        if not shared:
            return encode_headers(own)
        names = {name.lower() for name, _ in own}
        return encode_headers([h for h in shared if h[0].lower() not in names] + own)

    async def _open_raw(
        self, method: str, params: dict[str, Any] | None, era: str, headers: Headers | None = None
    ) -> Exchange:
        upstream_id = self._ids.next()
        body = encode_request(upstream_id, method, params)
        auth = await self._auth_lines(headers) if headers or self.shared_headers is not None else b""
        state: dict[str, Any] = {}

        async def cancel() -> None:
            response = state.get("response")
            if response is not None:
                response.close()
            if era == "legacy" and method != "initialize" and self.identity is not None:
                await self._notify_raw("notifications/cancelled", {"requestId": upstream_id}, era)

        return Exchange(
            self.path,
            upstream_id,
            self.config.timeout_s,
            self._messages(body, self._headers(method, params, era), auth, upstream_id, method, state),
            lambda rid, response: self._send_response(rid, response, era),
            cancel,
            body,
        )

    async def _messages(
        self, body: bytes, headers: bytes, auth: bytes, upstream_id: RequestId, method: str, state: dict[str, Any]
    ) -> AsyncIterator[Message]:
        assert self._http is not None
        # find(), not `in`: bytes.__contains__ first tries its operand as an int (a TypeError raised
        # and cleared, ~2k instructions) before it searches.
        has_session = (b"\r\n" + headers).find(b"\r\nmcp-session-id: ") != -1
        for attempt in range(2):
            try:
                response = await self._http.request("POST", headers + auth if auth else headers, body)
            except H1ConnectionError as exc:
                await self._lost(str(exc))
                raise BackendUnavailable(self.path, f"{exc} (is it running?)") from None
            if response.status != 404 or not has_session or method == "initialize" or attempt:
                break
            # 404 for our session id: the backend restarted or expired the session and did not run the
            # request. Open a new session and send it once more; the client never notices.
            await response.read()
            response.release()
            await self.disconnect("the backend no longer knows our session (restarted?)")
            identity = await self.connect()
            if identity.era != "legacy":
                raise BackendUnavailable(self.path, "the backend changed protocol era; retry the request")
            headers = self._headers(method, None, "legacy")
        state["response"] = response
        try:
            if method == "initialize":
                self._session_id = response.headers.get(SESSION_ID_HEADER)
            status = response.status
            content_type = response.content_type
            if status == 404 and has_session and method != "initialize":
                await self.disconnect("the backend no longer knows our session (restarted?)")
                raise BackendUnavailable(self.path, "the backend lost its MCP session; retry the request")
            if status >= 400 or status == 202:
                yield await self._error_status(response, upstream_id)
                return
            if content_type == _JSON:
                yield self._parse(await response.read())
            elif content_type == "text/event-stream":
                decoder = SSEDecoder()
                async for chunk in response.chunks():
                    for event in decoder.feed(chunk):
                        if event.event == "message" and event.data.strip():
                            yield self._parse(event.data.encode())
            else:
                raise BackendProtocolError(self.path, f"answered HTTP {status} with content type {content_type!r}")
        except H1ResponseTooLarge as exc:
            raise BackendProtocolError(self.path, f"{exc} (limits.max_response_bytes)") from None
        except H1ConnectionError as exc:
            await self._lost(f"connection lost mid-response: {exc}")
            raise BackendUnavailable(self.path, "the connection closed before the answer arrived") from None
        finally:
            response.release()

    async def _error_status(self, response: H1Response, upstream_id: RequestId) -> Message:
        """A 4xx/5xx may still carry a JSON-RPC error for our request (modern servers answer so)."""
        data = await response.read()
        try:
            msg = self._parse(data)
        except BackendProtocolError:
            msg = None
        if msg is not None and msg.kind == "error" and msg.id in (upstream_id, None):
            msg.raw["id"] = upstream_id
            msg.id = upstream_id
            return msg
        raise BackendProtocolError(self.path, f"answered HTTP {response.status} without a JSON-RPC error")

    def _parse(self, data: bytes) -> Message:
        try:
            return parse_message(data)
        except ProtocolError as exc:
            raise BackendProtocolError(self.path, f"sent a message that is not JSON-RPC ({exc})") from None

    async def _send_response(self, request_id: RequestId, response: dict[str, Any], era: str) -> None:
        await self._post_message(orjson.dumps({"jsonrpc": "2.0", "id": request_id, **response}), None, None, era)

    async def _notify_raw(self, method: str, params: dict[str, Any] | None, era: str) -> None:
        await self._post_message(encode_notification(method, params), method, params, era)

    async def _post_message(self, body: bytes, method: str | None, params: dict[str, Any] | None, era: str) -> None:
        """POST a notification or a response: the backend answers 202 with no body."""
        await self._connect_transport()
        assert self._http is not None
        headers = self._headers(method, params, era)
        if self.shared_headers is not None:
            headers += await self._auth_lines(None)
        try:
            response = await self._http.request("POST", headers, body)
            try:
                await response.read()
            finally:
                response.release()
        except H1ConnectionError as exc:
            raise BackendUnavailable(self.path, str(exc)) from None
        if response.status >= 400:
            logger.warning("backend %s refused a %s with HTTP %s", self.path, method or "response", response.status)

    async def _lost(self, reason: str) -> None:
        if self.identity is not None:
            await self.disconnect(reason)
        else:
            self.last_error = reason

    # --- unsolicited notifications: the legacy GET stream or the modern subscriptions/listen ------

    async def _after_handshake(self) -> None:
        identity = self.identity
        assert identity is not None
        resources = identity.capabilities.get("resources")
        subscribes = isinstance(resources, dict) and resources.get("subscribe") is True
        legacy_updates = identity.era == "legacy" and subscribes  # resources/updated come on the GET stream
        if not (legacy_updates or _listen_filter(identity.capabilities, self.watched)):
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name=f"listen {self.path}")

    async def _rewatch(self) -> None:
        if self.identity is None or self.identity.era != "modern":
            return
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
        await self._after_handshake()

    async def _listen(self) -> None:
        """Keep one notification stream open while connected; reopen it when it drops."""
        while not self._closed and self.identity is not None:
            try:
                await self._listen_once(self.identity.era)
            except asyncio.CancelledError:
                raise
            except _NoStream:
                return
            except Exception as exc:  # a dropped stream is retried below; never fatal
                logger.debug("backend %s notification stream ended: %s", self.path, exc)
            if self._closed:
                return
            await asyncio.sleep(_RECONNECT_DELAY_S)

    async def _listen_once(self, era: str) -> None:
        assert self._http is not None
        auth = await self._auth_lines(None) if self.shared_headers is not None else b""
        if era == "modern":
            capabilities = self.identity.capabilities if self.identity is not None else {}
            params = {"notifications": _listen_filter(capabilities, self.watched), "_meta": modern_meta(None)}
            body = encode_request(self._ids.next(), "subscriptions/listen", params)
            response = await self._http.request("POST", self._headers("subscriptions/listen", params, era) + auth, body)
        else:
            version = self.identity.protocol_version if self.identity is not None else LATEST_LEGACY
            headers = [("accept", "text/event-stream"), (PROTOCOL_VERSION_HEADER, version)]
            if self._session_id is not None:
                headers.append((SESSION_ID_HEADER, self._session_id))
            response = await self._http.request("GET", encode_headers(headers) + auth)
        try:
            if response.status >= 400:
                # The backend offers no stream; list changes then arrive only via reload or rediscovery.
                logger.info("backend %s offers no notification stream (HTTP %s)", self.path, response.status)
                raise _NoStream()
            decoder = SSEDecoder()
            async for chunk in response.chunks():
                for event in decoder.feed(chunk):
                    if not event.data.strip():
                        continue
                    try:
                        msg = self._parse(event.data.encode())
                    except BackendProtocolError:
                        continue
                    if msg.kind == "notification" and msg.method != "notifications/subscriptions/acknowledged":
                        meta = msg.params.get("_meta")
                        if isinstance(meta, dict):
                            meta.pop(META_SUBSCRIPTION_ID, None)
                        self.on_notification(self, msg)
                    elif msg.kind == "request" and msg.id is not None:
                        await self._send_response(msg.id, answer_without_client(msg.method), era)
        finally:
            response.close()

    async def _reset(self) -> None:
        self._session_id = None
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        if self._session_id is not None and self._http is not None:
            try:
                response = await self._http.request("DELETE", [(SESSION_ID_HEADER, self._session_id)])
                await response.read()
                response.release()
            except H1ConnectionError:
                pass  # the backend is gone already; its session with it
        if self._http is not None:
            self._http.close()
            self._http = None


class _NoStream(Exception):
    pass


def _listen_filter(capabilities: dict[str, Any], watched: set[str]) -> dict[str, Any]:
    """What the gateway asks a backend's notification stream for: the list changes it announces, and
    updates of the resources clients subscribed to. Empty: no stream is needed."""
    wanted: dict[str, Any] = {}
    for capability, key in (("tools", "toolsListChanged"), ("prompts", "promptsListChanged"),
                            ("resources", "resourcesListChanged")):  # fmt: skip
        declared = capabilities.get(capability)
        if isinstance(declared, dict) and declared.get("listChanged"):
            wanted[key] = True
    if watched:
        wanted["resourceSubscriptions"] = sorted(watched)
    return wanted

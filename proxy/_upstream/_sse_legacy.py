"""Legacy HTTP+SSE backends (protocol 2024-11-05 transport): one GET event stream carries every
message from the server; the client POSTs to the URL the stream's first `endpoint` event names."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin

import orjson

from .._config import BackendConfig
from .._jsonrpc import ProtocolError, parse_object
from .._sse import SSEDecoder
from ._base import BackendProtocolError, BackendUnavailable
from ._h1 import H1ConnectionError, H1Pool
from ._stream import StreamBackend

logger = logging.getLogger(__name__)

__all__ = ["LegacySSEBackend"]


class LegacySSEBackend(StreamBackend):
    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        assert config.url is not None
        self.url = config.url
        self._http: H1Pool | None = None
        self._post: H1Pool | None = None
        self._post_url: str | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect_transport(self) -> None:
        if self._reader is not None and not self._reader.done() and self._post_url is not None:
            return
        if self._http is None:
            self._http = self._pool(self.url)
        endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read(endpoint), name=f"sse {self.path}")
        try:
            self._post_url = await asyncio.wait_for(asyncio.shield(endpoint), self.config.connect_timeout_s)
            self._post = self._pool(self._post_url)
        except TimeoutError:
            self._reader.cancel()
            raise BackendUnavailable(self.path, "the SSE stream sent no endpoint event") from None

    async def _read(self, endpoint: asyncio.Future[str]) -> None:
        assert self._http is not None
        reason = "the SSE stream ended"
        try:
            response = await self._http.request("GET", [("accept", "text/event-stream")])
            try:
                if response.status != 200:
                    raise BackendProtocolError(self.path, f"the SSE stream answered HTTP {response.status}")
                decoder = SSEDecoder()
                async for chunk in response.chunks():
                    for event in decoder.feed(chunk):
                        if event.event == "endpoint":
                            if not endpoint.done():
                                endpoint.set_result(urljoin(self.url, event.data.strip()))
                            continue
                        if event.event != "message" or not event.data.strip():
                            continue
                        try:
                            self._route(parse_object(orjson.loads(event.data)))
                        except (orjson.JSONDecodeError, ProtocolError):
                            logger.warning("backend %s sent an event that is not JSON-RPC", self.path)
            finally:
                response.close()
        except H1ConnectionError as exc:
            reason = str(exc)
            if not endpoint.done():
                endpoint.set_exception(BackendUnavailable(self.path, reason))
        except BackendProtocolError as exc:
            reason = exc.detail
            if not endpoint.done():
                endpoint.set_exception(exc)
        finally:
            if not endpoint.done():
                endpoint.set_exception(BackendUnavailable(self.path, reason))
            self._post_url = None
            self._fail_pending(BackendUnavailable(self.path, reason))
            if not self._closed:
                await self.disconnect(reason)

    async def _write(self, data: bytes) -> None:
        if self._post is None or self._post_url is None:
            raise BackendUnavailable(self.path, "the SSE stream is not open")
        try:
            response = await self._post.request("POST", [("content-type", "application/json")], data)
            try:
                await response.read()
            finally:
                response.release()
        except H1ConnectionError as exc:
            raise BackendUnavailable(self.path, str(exc)) from None
        if response.status >= 400:
            raise BackendProtocolError(self.path, f"refused a message with HTTP {response.status}")

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for pool in (self._http, self._post):
            if pool is not None:
                pool.close()
        self._http = self._post = None

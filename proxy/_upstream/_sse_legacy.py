"""Legacy HTTP+SSE backends (protocol 2024-11-05 transport): one GET event stream carries every
message from the server; the client POSTs to the URL the stream's first `endpoint` event names."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin

import aiohttp
import orjson

from .._config import BackendConfig
from .._jsonrpc import ProtocolError, parse_object
from .._sse import SSEDecoder
from ._base import BackendProtocolError, BackendUnavailable
from ._stream import StreamBackend

logger = logging.getLogger(__name__)

__all__ = ["LegacySSEBackend"]


class LegacySSEBackend(StreamBackend):
    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        assert config.url is not None
        self.url = config.url
        self._http: aiohttp.ClientSession | None = None
        self._post_url: str | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect_transport(self) -> None:
        if self._reader is not None and not self._reader.done() and self._post_url is not None:
            return
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s)
            )
        endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read(endpoint), name=f"sse {self.path}")
        try:
            self._post_url = await asyncio.wait_for(asyncio.shield(endpoint), self.config.connect_timeout_s)
        except TimeoutError:
            self._reader.cancel()
            raise BackendUnavailable(self.path, "the SSE stream sent no endpoint event") from None

    async def _read(self, endpoint: asyncio.Future[str]) -> None:
        assert self._http is not None
        reason = "the SSE stream ended"
        try:
            async with self._http.get(self.url, headers={"Accept": "text/event-stream"}) as response:
                if response.status != 200:
                    raise BackendProtocolError(self.path, f"the SSE stream answered HTTP {response.status}")
                decoder = SSEDecoder()
                async for chunk in response.content.iter_any():
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
        except (aiohttp.ClientError, OSError) as exc:
            reason = f"cannot connect ({type(exc).__name__})"
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
        if self._http is None or self._post_url is None:
            raise BackendUnavailable(self.path, "the SSE stream is not open")
        try:
            async with self._http.post(
                self._post_url, data=data, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                if response.status >= 400:
                    raise BackendProtocolError(self.path, f"refused a message with HTTP {response.status}")
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(self.path, f"connection failed ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None

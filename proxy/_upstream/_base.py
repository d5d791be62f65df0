"""The one small interface every backend transport implements, and the errors they raise.

A backend is something you can `open(method, params) -> Exchange`: the exchange yields what the backend
sends back about that request — notifications, server-to-client requests, and finally the response —
and lets the caller answer the server-to-client requests. Streamable HTTP, legacy HTTP+SSE and stdio
all fit behind it, in either protocol era.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from proto import SLICEWIRE_VERSION

from .._jsonrpc import Message, RequestId
from .._mcp import LATEST_LEGACY, LATEST_MODERN, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION

logger = logging.getLogger(__name__)

__all__ = [
    "GATEWAY_CLIENT_CAPABILITIES",
    "GATEWAY_CLIENT_INFO",
    "BackendError",
    "BackendProtocolError",
    "BackendTimeout",
    "BackendUnavailable",
    "Exchange",
    "ExchangeClosed",
    "ServerIdentity",
    "answer_without_client",
]

GATEWAY_CLIENT_INFO = {"name": "slicewire", "version": SLICEWIRE_VERSION}
# What the gateway, as a client of its backends, can relay back to its own clients.
GATEWAY_CLIENT_CAPABILITIES: dict[str, Any] = {
    "elicitation": {"form": {}, "url": {}},
    "sampling": {},
    "roots": {"listChanged": True},
}


def answer_without_client(method: str | None) -> dict[str, Any]:
    """The answer to a backend's request that no client can take (it came outside a client's call):
    `ping` is answered, `roots/list` with the empty list the spec allows (servers such as
    server-everything ask for roots as soon as they start), anything else refused."""
    if method == "ping":
        return {"result": {}}
    if method == "roots/list":
        return {"result": {"roots": []}}
    return {"error": {"code": -32601, "message": f"{method} is relayed to clients only during their tool calls"}}


class BackendError(Exception):
    """A backend could not serve a request. The message names the backend; never a secret."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"Backend {backend}: {message}")
        self.backend = backend
        self.detail = message


class BackendUnavailable(BackendError):
    """Not reachable, not started, or its process exited."""


class BackendTimeout(BackendError):
    """No answer within the backend's `timeout_s`."""


class BackendProtocolError(BackendError):
    """It answered, but not with MCP (garbage, wrong status, wrong content type)."""


class ExchangeClosed(BackendError):
    """The gateway gave up on the request (the client cancelled or hung up)."""


@dataclass
class ServerIdentity:
    """What a backend said about itself when the gateway connected."""

    era: str = "legacy"
    protocol_version: str = LATEST_LEGACY
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None

    @property
    def version(self) -> str | None:
        value = self.server_info.get("version")
        return value if isinstance(value, str) else None


def modern_meta(existing: dict[str, Any] | None) -> dict[str, Any]:
    """The `_meta` a modern request to a backend carries: the caller's keys plus the gateway's envelope."""
    meta = dict(existing) if existing else {}
    meta[META_PROTOCOL_VERSION] = LATEST_MODERN
    meta[META_CLIENT_INFO] = GATEWAY_CLIENT_INFO
    meta[META_CLIENT_CAPABILITIES] = GATEWAY_CLIENT_CAPABILITIES
    return meta


class Exchange:
    """One request to a backend and everything the backend sends back about it.

    `source` yields the backend's messages in order; `next()` pulls the next one and raises
    BackendTimeout once `timeout_s` passes without the final response (progress resets the clock).
    Pulling instead of pushing keeps the common case — one JSON answer — free of extra tasks.
    """

    def __init__(
        self,
        backend: str,
        upstream_id: RequestId,
        timeout_s: float,
        source: AsyncIterator[Message],
        answer: Callable[[RequestId, dict[str, Any]], Awaitable[None]],
        cancel: Callable[[], Awaitable[None]],
        sent: bytes | None = None,
    ) -> None:
        self.backend = backend
        self.sent = sent  # the request as it went to the backend (the flight recorder keeps it)
        self.upstream_id = upstream_id
        self.timeout_s = timeout_s
        self._source = source
        self._answer = answer
        self._cancel = cancel
        self._deadline = time.monotonic() + timeout_s
        self.done = False
        self._waiter: asyncio.Task[Any] | None = None
        self._closing = False

    async def next(self) -> Message:
        """The next message about this request. The final one has kind 'result' or 'error'."""
        if self._closing:
            raise ExchangeClosed(self.backend, "the request was cancelled")
        remaining = self._deadline - time.monotonic()
        self._waiter = asyncio.current_task()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                item = await anext(self._source)
        except asyncio.CancelledError:
            task = self._waiter
            if self._closing and task is not None and task.uncancel() == 0:
                raise ExchangeClosed(self.backend, "the request was cancelled") from None
            raise
        except TimeoutError:
            await self.close()
            raise BackendTimeout(self.backend, f"no response within {self.timeout_s:g}s") from None
        except StopAsyncIteration:
            self.done = True
            raise BackendProtocolError(self.backend, "the response ended before the JSON-RPC answer") from None
        except BaseException:
            self.done = True
            raise
        finally:
            self._waiter = None
        if item.kind in ("result", "error"):
            self.done = True
            await _aclose(self._source)
        elif item.method == "notifications/progress":
            self._deadline = time.monotonic() + self.timeout_s
        return item

    def extend_deadline(self, seconds: float) -> None:
        """Give the backend more time, e.g. while a client answers an elicitation."""
        self._deadline = max(self._deadline, time.monotonic() + seconds)

    async def answer(self, request_id: RequestId, response: dict[str, Any]) -> None:
        """Send the answer (`{"result": ...}` or `{"error": ...}`) to a server-to-client request."""
        await self._answer(request_id, response)

    async def close(self) -> None:
        """Stop caring about this request; tells the backend to cancel it if it is still running.

        Safe to call from another task while `next()` waits: that wait ends with ExchangeClosed.
        """
        if self.done:
            return
        self.done = True
        self._closing = True
        waiter = self._waiter
        if waiter is not None and waiter is not asyncio.current_task():
            waiter.cancel()  # the pending read unwinds the source; next() raises ExchangeClosed
        else:
            await _aclose(self._source)
        try:
            await self._cancel()
        except Exception:  # cancelling is best effort; the request is abandoned either way
            logger.debug("cancel of %s on %s failed", self.upstream_id, self.backend, exc_info=True)


async def _aclose(source: AsyncIterator[Message]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


class IdSource:
    """Upstream request ids, unique per backend connection."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        return next(self._counter)

"""Backends whose messages all arrive on one stream (stdio, legacy HTTP+SSE).

Answers are routed to their request by id, progress by the token the gateway chose, and a
server-to-client request to the one call in flight that could have caused it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from .._jsonrpc import Message, RequestId, encode_notification, encode_request
from ._backend import Backend, Headers
from ._base import BackendUnavailable, Exchange, answer_without_client

logger = logging.getLogger(__name__)

__all__ = ["StreamBackend"]

_CALL_METHODS = ("tools/call", "prompts/get", "resources/read")


class _Pending:
    __slots__ = ("method", "progress_token", "queue")

    def __init__(self, method: str, progress_token: Any) -> None:
        self.method = method
        self.progress_token = progress_token
        self.queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()


class StreamBackend(Backend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[RequestId, _Pending] = {}
        self._replies: set[asyncio.Task[None]] = set()

    @abc.abstractmethod
    async def _write(self, data: bytes) -> None:
        """Send one JSON-RPC message (raises BackendUnavailable when the stream is gone)."""

    async def _open_raw(
        self, method: str, params: dict[str, Any] | None, era: str, headers: Headers | None = None
    ) -> Exchange:
        upstream_id = self._ids.next()
        meta = params.get("_meta") if params else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        pending = _Pending(method, token)
        self._pending[upstream_id] = pending
        body = encode_request(upstream_id, method, params)
        try:
            await self._write(body)
        except BackendUnavailable:
            self._pending.pop(upstream_id, None)
            raise

        async def cancel() -> None:
            self._pending.pop(upstream_id, None)
            if method != "initialize":
                await self._notify_raw("notifications/cancelled", {"requestId": upstream_id}, era)

        async def answer(request_id: RequestId, response: dict[str, Any]) -> None:
            await self._write(orjson.dumps({"jsonrpc": "2.0", "id": request_id, **response}))

        return Exchange(
            self.path, upstream_id, self.config.timeout_s, self._messages(upstream_id, pending), answer, cancel, body
        )

    async def _messages(self, upstream_id: RequestId, pending: _Pending) -> AsyncIterator[Message]:
        try:
            while True:
                item = await pending.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.kind in ("result", "error"):
                    return
        finally:
            self._pending.pop(upstream_id, None)

    async def _notify_raw(self, method: str, params: dict[str, Any] | None, era: str) -> None:
        await self._write(encode_notification(method, params))

    def _route(self, msg: Message) -> None:
        if msg.kind in ("result", "error"):
            pending = self._pending.get(msg.id) if msg.id is not None else None
            if pending is not None:
                pending.queue.put_nowait(msg)
            return
        if msg.kind == "notification":
            token = msg.params.get("progressToken")
            if msg.method == "notifications/progress" and token is not None:
                for pending in self._pending.values():
                    if pending.progress_token == token:
                        pending.queue.put_nowait(msg)
                        return
                return
            self.on_notification(self, msg)
            return
        # A server-to-client request. The stream carries no link to the request it serves, so it goes
        # to the one call in flight; with none or several, nobody can answer it reliably.
        calls = [p for p in self._pending.values() if p.method in _CALL_METHODS]
        if msg.method != "ping" and len(calls) == 1:
            calls[0].queue.put_nowait(msg)
        else:
            # Roots, elicitation and sampling belong to one client; outside its call there is none to ask.
            self._reply(orjson.dumps({"jsonrpc": "2.0", "id": msg.id, **answer_without_client(msg.method)}))

    def _reply(self, data: bytes) -> None:
        """Answer the backend from the reader (which must not block on its own writes)."""
        task = asyncio.get_running_loop().create_task(self._write(data))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def _fail_pending(self, error: BaseException) -> None:
        for pending in list(self._pending.values()):
            pending.queue.put_nowait(error)
        self._pending.clear()

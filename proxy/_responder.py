"""Writing one HTTP answer over raw ASGI: a JSON body, or an SSE stream started lazily.

A handler that may stream (tools/call) answers with plain JSON when the backend's first message is
the final answer, and switches to `text/event-stream` only when something must go first
(progress, a relayed request). The disconnect watcher turns a client hanging up into cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._jsonrpc import ErrorAnswer
from ._sse import encode_event

__all__ = ["Responder"]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

WATCH_AFTER_S = 0.05

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class Responder:
    def __init__(self, send: Send, receive: Receive, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self._send = send
        self._receive = receive
        self.extra_headers = extra_headers or []
        self.started = False
        self.streaming = False
        self.finished = False
        self.disconnected = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._watch_timer: asyncio.TimerHandle | None = None
        self._on_disconnect: list[Callable[[], Awaitable[None]]] = []
        self.status = 0
        # The final answer, and the JSON-RPC error it carries (its encoder said so: see ErrorAnswer).
        self.sent_body: bytes | None = None
        self.error: tuple[int, str] | None = None
        # The HTTP status of a relayed answer: 200, or what the transport prescribes for its error (-32021: 400).
        self.answer_status = 200

    async def json(self, status: int, body: bytes) -> None:
        self.sent_body = body
        if type(body) is ErrorAnswer:
            self.error = body.error
        if self.disconnected.is_set():
            return  # nobody to answer; the request was cancelled by hanging up
        if self.started:
            # Already streaming: the answer goes out as the stream's last event.
            await self.event(body)
            await self.end()
            return
        self.started = True
        self.finished = True
        self.status = status
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *self.extra_headers]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})
        self._stop_watch()

    async def empty(self, status: int) -> None:
        self.started = True
        self.finished = True
        self.status = status
        headers = [(b"content-length", b"0"), *self.extra_headers]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": b""})
        self._stop_watch()

    async def start_stream(self) -> None:
        if self.started:
            return
        self.started = True
        self.streaming = True
        self.status = 200
        await self._send(
            {"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *self.extra_headers]}
        )

    async def event(self, data: bytes) -> None:
        """Send one JSON-RPC message as an SSE event (starting the stream if needed)."""
        if not self.streaming:
            await self.start_stream()
        if self.disconnected.is_set():
            return
        await self._send({"type": "http.response.body", "body": encode_event(data), "more_body": True})

    async def comment(self) -> None:
        """An SSE comment line: a keep-alive that carries no event."""
        if self.streaming and not self.disconnected.is_set():
            await self._send({"type": "http.response.body", "body": b":\n\n", "more_body": True})

    async def end(self) -> None:
        if self.finished:
            return
        self.finished = True
        if not self.disconnected.is_set():
            await self._send({"type": "http.response.body", "body": b""})
        self._stop_watch()

    async def withhold(self) -> None:
        """End the exchange without a JSON-RPC answer (the client cancelled the request, and the spec
        says a cancelled request SHOULD NOT be answered): an empty event stream."""
        await self.start_stream()
        await self.end()

    def watch(self, on_disconnect: Callable[[], Awaitable[None]]) -> None:
        """Run `on_disconnect` if the client hangs up before the answer is complete.

        Watching costs a task, so it starts only once the answer has taken longer than
        `WATCH_AFTER_S`: most calls finish first, and a hang-up is noticed at most that much later.
        """
        self._on_disconnect.append(on_disconnect)
        if self._watcher is None and self._watch_timer is None and not self.finished:
            self._watch_timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start_watch)

    def _start_watch(self) -> None:
        self._watch_timer = None
        if self._watcher is None and not self.finished:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        if self.finished:
            return
        self.disconnected.set()
        for callback in self._on_disconnect:
            with contextlib.suppress(Exception):
                await callback()

    def _stop_watch(self) -> None:
        if self._watch_timer is not None:
            self._watch_timer.cancel()
            self._watch_timer = None
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()

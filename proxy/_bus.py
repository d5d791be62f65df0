"""The bus: how gateway processes tell each other what one of them cannot finish alone.

A legacy session's requests may reach any worker or replica, but some of its parts live in one process:
the call a `notifications/cancelled` names, the elicitation an answer is for, the GET stream a
notification must reach. The process that receives such a message publishes it; every other process
gets it and acts if the part is theirs. Messages are small dicts (`t`: what, `s`: the session id).

- `LocalBus`: one process; nothing to tell.
- `UnixBus`: the workers of one `slicewire serve --workers N`, one datagram socket each in a directory
  the supervisor made (a message larger than a datagram goes in a file there, which the datagram names).
- `RedisBus`: replicas on several machines, over Redis pub/sub (`sessions.channel: redis://...`).

The messages (`t`), and who acts on them (`Gateway._on_bus`):

| t | published when | acted on by |
| --- | --- | --- |
| cancel, answer | a session's cancellation, or answer to a relayed request, finds no call here | the call's process |
| stream | a message for a session's GET stream that is not held here | the stream's process |
| level | a session's logging/setLevel | every process |
| unsubscribe | resources/unsubscribe of a subscription made elsewhere | the subscribing process |
| ended | a session's DELETE | every process (refused from now on) |
| rediscover | a backend said its lists changed | every process (asks the backend again) |
| reload | an admin API change to virtual_servers_dir | every process (loads the files again) |
| used | an approval's sealed requestState was taken | every process (refuses it from now on) |
| resume, resumed, gone | a 2026-07-28 retry for a call parked elsewhere (`_resume`) | the holder; the asker |

Delivery is at most once, which is what these messages need: each is either acted on by the one process
holding its part, or by nobody (as when the part is already gone). Each publisher's messages arrive in
the order it sent them (a resumed call's events before its answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ._config import StartError
from ._urls import UrlError, resolved, without_password

__all__ = ["BUS_ENV", "Bus", "LocalBus", "RedisBus", "UnixBus", "make_bus"]

logger = logging.getLogger("slicewire.bus")

# The directory of `serve --workers N`'s datagram sockets (set by the supervisor, not an operator setting).
BUS_ENV = "SLICEWIRE_WORKER_BUS"
_CHANNEL = "slicewire:bus"
_MAX_DATAGRAM = 200_000  # under Linux's default socket buffer (212,992 bytes)
_SPILLED = b"@file:"  # a datagram naming the file a larger message is in

Deliver = Callable[[dict[str, Any]], None]


class Bus:
    """Publishes to every other process; `deliver` is called with what they publish. `counts`: messages
    by (kind, "sent" | "received" | "lost"), for /metrics."""

    name = "local"
    shared = False  # whether there are other processes to tell

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    def count(self, message: dict[str, Any], what: str) -> None:
        key = (str(message.get("t")), what)
        self.counts[key] = self.counts.get(key, 0) + 1

    def received(self, data: bytes, origin: str | None = None) -> None:
        """A message from another process (not our own, which Redis sends back), passed to `deliver`."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("bus: a message that is not JSON; ignored")
            return
        if not isinstance(message, dict) or (origin is not None and message.get("o") == origin):
            return
        self.count(message, "received")
        try:
            self.deliver(message)
        except Exception:  # one bad message must not stop the reader
            logger.exception("bus: handling a %s message failed", message.get("t"))

    def publish(self, message: dict[str, Any]) -> None:
        """Fire and forget: never blocks the request that publishes."""

    async def close(self) -> None:
        pass


class LocalBus(Bus):
    pass


class UnixBus(Bus):
    name = "workers"
    shared = True

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.path = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.sock: socket.socket | None = None

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            if data.startswith(_SPILLED):  # a large message, in a file of its own for this worker
                spilled = self.directory / data[len(_SPILLED) :].decode()
                try:
                    data = spilled.read_bytes()
                    spilled.unlink()
                except OSError as exc:
                    logger.warning("bus: a large message could not be read (%s); dropped", exc)
                    continue
            self.received(data)

    def publish(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            return
        self.count(message, "sent")
        data = orjson.dumps(message)
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".sock") and entry.path != str(self.path):
                try:
                    # Too large for a datagram (an answer with its payloads): written to a file the other
                    # worker reads and removes; the datagram names it.
                    sent = data if len(data) <= _MAX_DATAGRAM else _SPILLED + self._spill(data, entry.name).encode()
                    self.sock.sendto(sent, entry.path)
                except ConnectionRefusedError:  # a worker that died: nobody reads this socket any more
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass
                except BlockingIOError:
                    self.count(message, "lost")
                    logger.warning(
                        "bus: worker socket %s is full; a %s message was dropped", entry.name, message.get("t")
                    )

    def _spill(self, data: bytes, peer: str) -> str:
        name = f"{peer}.{secrets.token_hex(6)}.msg"
        (self.directory / name).write_bytes(data)
        return name

    async def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class RedisBus(Bus):
    name = "redis"
    shared = True

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.origin = secrets.token_hex(8)  # our own messages come back; skip them
        self._client: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[Any]] = set()

    async def start(self, deliver: Deliver) -> None:
        import redis.asyncio as redis

        self.deliver = deliver
        try:
            self._client = redis.Redis.from_url(resolved(self.url, "sessions.channel"))
        except UrlError as exc:
            raise StartError(str(exc)) from None
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(_CHANNEL)
        except (OSError, redis.RedisError) as exc:
            await self._client.aclose()
            raise StartError(f"sessions.channel: cannot reach {without_password(self.url)}: {exc}") from None
        self._reader = asyncio.get_running_loop().create_task(self._read(pubsub), name="redis bus")

    async def _read(self, pubsub: Any) -> None:
        import redis.asyncio as redis

        while True:
            try:
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        self.received(item["data"], self.origin)
            except (OSError, redis.RedisError) as exc:
                logger.warning("bus: lost %s (%s); resubscribing in 1 s", without_password(self.url), exc)
                await asyncio.sleep(1)
                with contextlib.suppress(OSError, redis.RedisError):
                    await pubsub.subscribe(_CHANNEL)

    def publish(self, message: dict[str, Any]) -> None:
        if self._client is None:
            return
        self.count(message, "sent")
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: dict[str, Any]) -> None:
        import redis.asyncio as redis

        try:
            await self._client.publish(_CHANNEL, orjson.dumps({**message, "o": self.origin}))
        except (OSError, redis.RedisError) as exc:
            self.count(message, "lost")
            logger.warning("bus: publishing to %s failed: %s", without_password(self.url), exc)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def make_bus(channel: str | None) -> Bus:
    """Redis when configured; the workers' directory when started by `serve --workers`; else local."""
    if channel is not None:
        return RedisBus(channel)
    directory = os.environ.get(BUS_ENV)
    if directory:
        return UnixBus(directory)
    return LocalBus()

"""Sealed session ids (`_sessions`) and the bus between gateway processes (`_bus`): the workers' datagram
sockets, and Redis pub/sub on a real Redis server started by the test."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy._bus import RedisBus, UnixBus
from proxy._sessions import KeyRing, SessionKeyError, Sessions, parse_keys
from tests.support.procs import free_port, wait_until
from tests.support.services import Redis

pytestmark = pytest.mark.anyio


def sessions(*keys: bytes, max_age_s: float = 60) -> Sessions:
    return Sessions(KeyRing(list(keys) or [os.urandom(32)]), max_age_s)


def test_an_issued_id_opens_anywhere_with_the_key() -> None:
    key = os.urandom(32)
    here, there = sessions(key), sessions(key)
    state = here.issue("/virtual/a", "2025-11-25", {"elicitation": {}}, "alice")
    opened = there.get(state.id)
    assert opened is not None
    assert (opened.virtual_server, opened.protocol_version, opened.client_capabilities, opened.subject) == (
        "/virtual/a", "2025-11-25", {"elicitation": {}}, "alice")  # fmt: skip
    assert state.id.startswith("s") and "/" not in state.id and "+" not in state.id  # visible ASCII, URL-safe
    assert sessions(os.urandom(32)).get(state.id) is None  # another key: not one of ours


def test_tampered_truncated_and_garbage_ids_are_refused() -> None:
    s = sessions()
    sid = s.issue("/virtual/a", "2025-11-25", {}, "alice").id
    fresh = Sessions(s.ring, 60)  # no cache: every id is opened
    for bad in (sid[:-1] + ("A" if sid[-1] != "A" else "B"), sid[:20], "s", "snot-base64!!", "-" + sid[1:], "x" * 9000):
        assert fresh.get(bad) is None, bad


def test_an_id_has_one_spelling() -> None:
    """The last base64 character may carry unused bits; another spelling of the same bytes is refused
    (or a DELETEd session's id, spelled anew, would open again)."""
    s = sessions()
    sid = ""
    while len(sid) % 4 in (0, 1):  # an id whose last character has unused bits
        sid = s.issue("/virtual/a", "2025-11-25", {"k": "v" * len(sid)}, "alice").id
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sid[-1])
    respelled = sid[:-1] + alphabet[last ^ 1]  # flips a padding bit: same bytes
    assert base64.urlsafe_b64decode(sid[1:] + "==") == base64.urlsafe_b64decode(respelled[1:] + "==")
    fresh = Sessions(s.ring, 60)
    assert fresh.get(sid) is not None and fresh.get(respelled) is None


def test_ids_expire_and_ended_ids_stay_refused() -> None:
    s = sessions(max_age_s=0.05)
    state = s.issue("/virtual/a", "2025-11-25", {}, "")
    assert s.get(state.id) is not None
    wait_until(lambda: s.get(state.id) is None, 5, interval=0.01, what="the id expired")
    t = sessions()
    ended = t.issue("/virtual/a", "2025-11-25", {}, "")
    t.end(ended)
    assert t.get(ended.id) is None and Sessions(t.ring, 60).get(ended.id) is not None  # ended here only
    other = Sessions(t.ring, 60)
    other.ended(ended.id, ended.expires_at)  # told over the bus
    assert other.get(ended.id) is None


def test_rotation_old_ids_open_while_the_old_key_is_kept() -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = sessions(old).issue("/virtual/a", "2025-11-25", {}, "bob")
    rotated = sessions(new, old)
    after = rotated.issue("/virtual/a", "2025-11-25", {}, "bob")
    assert rotated.get(before.id) is not None and rotated.get(after.id) is not None
    assert sessions(old).get(after.id) is None  # sealed with the new key
    assert sessions(new).get(before.id) is None  # the old key retired: its ids are gone


def test_keys_parse_with_one_line_errors() -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    assert len(parse_keys(f"{key}\n{key}", "x")) == 2 and len(parse_keys(f"{key},{key}", "x")) == 2
    with pytest.raises(SessionKeyError, match=r"^\$K: not base64$"):
        parse_keys("not base64!", "$K")
    with pytest.raises(SessionKeyError, match=r"expected 32 bytes .* found 16 bytes"):
        parse_keys(base64.b64encode(b"x" * 16).decode(), "$K")
    with pytest.raises(SessionKeyError, match="no key"):
        parse_keys("  \n", "$K")


# --- the bus -------------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def wait(self, count: int, within_s: float = 5) -> None:
        """Until `count` messages have arrived (woken by each arrival, never polling)."""
        async with asyncio.timeout(within_s):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def test_workers_bus_reaches_the_others_not_itself(tmp_path: Path) -> None:
    a, b, c = UnixBus(str(tmp_path)), UnixBus(str(tmp_path)), UnixBus(str(tmp_path))
    inboxes = [Inbox(), Inbox(), Inbox()]
    for bus, inbox in zip((a, b, c), inboxes, strict=True):
        await bus.start(inbox)
    a.publish({"t": "cancel", "s": "s1", "id": 7})
    await inboxes[1].wait(1)
    await inboxes[2].wait(1)
    assert inboxes[1].messages == inboxes[2].messages == [{"t": "cancel", "s": "s1", "id": 7}]
    assert inboxes[0].messages == []
    # A dead worker's socket (bound, never read again) refuses; the publisher removes it.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(tmp_path / "999-dead.sock"))
    dead.close()
    b.publish({"t": "stream", "s": "s1", "m": "x"})
    await inboxes[0].wait(1)
    assert "999-dead.sock" not in os.listdir(tmp_path)
    # Larger than a datagram: in a file for each worker, read and removed by it.
    c.publish({"t": "answer", "s": "s1", "r": {"result": "x" * 300_000}})
    c.publish({"t": "answer", "s": "s1", "r": {"result": "small"}})
    await inboxes[0].wait(3)
    await inboxes[1].wait(3)
    assert [m["r"]["result"][:5] for m in inboxes[0].messages[-2:]] == ["xxxxx", "small"]
    assert len(inboxes[1].messages[-2]["r"]["result"]) == 300_000
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".msg")]
    for bus in (a, b, c):
        await bus.close()
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


async def test_redis_bus_reaches_the_other_replicas(redis_server: Redis) -> None:
    one, two = RedisBus(redis_server.url), RedisBus(redis_server.url)
    inbox_one, inbox_two = Inbox(), Inbox()
    await one.start(inbox_one)
    await two.start(inbox_two)
    one.publish({"t": "ended", "s": "s1", "until": 5.0})
    two.publish({"t": "level", "s": "s1", "vs": "/v", "level": "debug"})
    await inbox_two.wait(1)
    await inbox_one.wait(1)
    assert [m["t"] for m in inbox_two.messages] == ["ended"] and [m["t"] for m in inbox_one.messages] == ["level"]
    await one.close()
    await two.close()


async def test_an_unreachable_redis_is_one_line_without_the_password() -> None:
    bus = RedisBus(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    with pytest.raises(RuntimeError) as caught:
        await bus.start(Inbox())
    message = str(caught.value)
    assert message.startswith("sessions.channel: cannot reach redis://:***@127.0.0.1:")
    assert "hunter2" not in message

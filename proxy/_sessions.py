"""Client sessions of the legacy era (the gateway issues `Mcp-Session-Id`).

Durable session facts (`SessionState`: plain, serializable data) live behind `SessionStore`, one
small interface, so that a shared store can later let any gateway replica serve any session. What
only makes sense inside one process — the open GET stream, relayed requests awaiting an answer,
calls in flight — lives in `LiveSession`, which a replica rebuilds on demand.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._jsonrpc import RequestId
from ._upstream import Exchange

__all__ = ["InMemorySessionStore", "LiveSession", "SessionState", "SessionStore", "new_session_id"]


def new_session_id() -> str:
    """Visible ASCII, unguessable (the transport spec's requirements for a session id), and never starting
    with '-': users pass session ids to the CLI (`slicewire replay <id>`), where one would read as an option."""
    return "s" + secrets.token_urlsafe(24)


@dataclass
class SessionState:
    id: str
    virtual_server: str
    protocol_version: str
    client_info: dict[str, Any] = field(default_factory=dict)
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    subject: str = ""  # who opened it; only they may use it ("" on a public virtual server)
    created_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore(Protocol):
    """Where session facts live. The in-memory store serves one replica; a shared one, many."""

    async def put(self, state: SessionState) -> None: ...

    async def get(self, session_id: str) -> SessionState | None: ...

    async def delete(self, session_id: str) -> None: ...

    async def expire(self, idle_s: float) -> list[str]:
        """Drop sessions idle for longer than `idle_s`; return their ids."""
        ...


class InMemorySessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionState] = {}

    async def put(self, state: SessionState) -> None:
        self._sessions[state.id] = state

    async def get(self, session_id: str) -> SessionState | None:
        state = self._sessions.get(session_id)
        if state is not None:
            state.last_seen = time.monotonic()
        return state

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def expire(self, idle_s: float) -> list[str]:
        cutoff = time.monotonic() - idle_s
        gone = [sid for sid, s in self._sessions.items() if s.last_seen < cutoff]
        for sid in gone:
            del self._sessions[sid]
        return gone

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class Relayed:
    """A backend's request relayed to the client, waiting for the client's answer."""

    exchange: Exchange
    upstream_id: RequestId
    future: asyncio.Future[dict[str, Any]] | None = None
    method: str = ""  # what was asked (elicitation/create, sampling/createMessage, roots/list)


class LiveSession:
    """Per-process companions of a session: its notification stream and what is in flight."""

    def __init__(self, session_id: str, virtual_server: str) -> None:
        self.id = session_id
        self.virtual_server = virtual_server
        # Server-initiated messages for the GET stream; None until the client opens one.
        self.stream: asyncio.Queue[bytes] | None = None
        self.relayed: dict[RequestId, Relayed] = {}
        # Client request id -> exchange, so notifications/cancelled can reach the backend.
        self.in_flight: dict[RequestId, Exchange] = {}
        # Requests the client cancelled (notifications/cancelled): they get no answer.
        self.cancelled: set[RequestId] = set()
        # The client's logging/setLevel: backends' log messages below it are not relayed (None: all are).
        self.log_level: str | None = None
        self._relay_ids = 0

    def next_relay_id(self) -> str:
        self._relay_ids += 1
        return f"sw-{self._relay_ids}"

    async def close(self) -> None:
        for exchange in list(self.in_flight.values()):
            await exchange.close()
        self.in_flight.clear()
        for relayed in self.relayed.values():
            if relayed.future is not None and not relayed.future.done():
                relayed.future.cancel()
        self.relayed.clear()
        if self.stream is not None:
            self.stream.put_nowait(b"")  # wakes the GET stream, which then ends

"""Client sessions of the legacy era (the gateway issues `Mcp-Session-Id`).

A session id carries its session sealed: AES-256-GCM over the session's facts (`SessionState`), under a
key every gateway process holds. Any worker or replica with the keys opens any session, so a load
balancer may send each request anywhere; nothing is stored per session. Keys rotate: the first key of
the ring seals, every key of it opens, and each id names its key (4 bytes of the key's digest).

What only makes sense inside one process — the open GET stream, relayed requests awaiting an answer,
calls in flight — lives in `LiveSession`, which each process builds on demand; what must cross
processes goes over the bus (`_bus`).

    sessions = Sessions(KeyRing([key]), max_age_s=86400)
    state = sessions.issue("/support", "2025-11-25", {"elicitation": {}}, "alice")
    sessions.get(state.id)      # -> the same facts, in any process holding `key`
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._jsonrpc import RequestId
from ._upstream import Exchange
from ._vault import decode_key

__all__ = [
    "KEYS_ENV",
    "WORKER_KEY_ENV",
    "KeyRing",
    "LiveSession",
    "SessionKeyError",
    "SessionState",
    "Sessions",
    "parse_keys",
]

# Session keys, base64, comma- or newline-separated, the first sealing: set by the operator for replicas.
KEYS_ENV = "SLICEWIRE_SESSION_KEYS"
# The key `serve --workers N` makes for its workers when nothing else is shared (not an operator setting).
WORKER_KEY_ENV = "SLICEWIRE_WORKER_SESSION_KEY"
_AAD = b"slicewire session v1"
_KID = 4  # bytes of the key's SHA-256 that name it in each id


class SessionKeyError(Exception):
    """Session keys that cannot be used; the message is one line naming where they came from."""


def parse_keys(text: str, where: str) -> list[bytes]:
    try:
        keys = [decode_key(item, where) for item in text.replace(",", "\n").split()]
    except ValueError as exc:
        raise SessionKeyError(str(exc)) from None
    if not keys:
        raise SessionKeyError(f"{where}: no key")
    return keys


def explicit_keys(keys_file: str | None) -> list[bytes] | None:
    """The operator's keys: `sessions.keys_file`, else $SLICEWIRE_SESSION_KEYS; None when neither is set."""
    if keys_file is not None:
        try:
            text = Path(keys_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SessionKeyError(f"sessions.keys_file: cannot read {keys_file}: {exc.strerror}") from None
        return parse_keys(text, f"sessions.keys_file ({keys_file})")
    if os.environ.get(KEYS_ENV, "").strip():
        return parse_keys(os.environ[KEYS_ENV], f"${KEYS_ENV}")
    return None


def _encode(sealed: bytes) -> str:
    """'s' first: never '-', which the CLI would read as an option (`slicewire replay <id>`)."""
    return "s" + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KID]


class KeyRing:
    """Session keys: the first seals, all open."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SessionKeyError("a session key ring needs a key")
        self.keys = list(keys)
        self._by_id = {_key_id(key): AESGCM(key) for key in keys}
        self._sealer_id = _key_id(keys[0])
        self._sealer = self._by_id[self._sealer_id]

    def seal(self, plaintext: bytes, purpose: bytes = _AAD) -> bytes:
        nonce = secrets.token_bytes(12)
        return self._sealer_id + nonce + self._sealer.encrypt(nonce, plaintext, purpose)

    def open(self, sealed: bytes, purpose: bytes = _AAD) -> bytes | None:
        """The plaintext, or None (a key this ring does not hold, not sealed by one, or for another purpose)."""
        aead = self._by_id.get(sealed[:_KID])
        if aead is None or len(sealed) < _KID + 12 + 16:
            return None
        try:
            return aead.decrypt(sealed[_KID : _KID + 12], sealed[_KID + 12 :], purpose)
        except InvalidTag:
            return None

    def knows(self, sealed: bytes) -> bool:
        return sealed[:_KID] in self._by_id


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a session is: sealed into its id, so the same in every process."""

    id: str
    virtual_server: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    subject: str  # who opened it; only they may use it ("" on a public virtual server)
    created_at: float
    expires_at: float


class Sessions:
    """Issues and opens sealed session ids; remembers the ended ones until they would have expired.

    `get` is called on every legacy request: an opened id is kept (bounded) so that a session's next
    requests skip the decryption."""

    CACHE_MAX = 10_000  # opened ids kept; past it, the oldest is dropped (and opened again if used: ~6 µs)

    def __init__(self, ring: KeyRing, max_age_s: float) -> None:
        self.ring = ring
        self.max_age_s = max_age_s
        self._opened: dict[str, SessionState] = {}
        self._ended: dict[str, float] = {}  # id -> when it would have expired anyway
        # Called with an id this ring has no key for: the state DB may hold a newer ring (another replica rotated).
        self.on_unknown_key: Any = None

    def issue(self, virtual_server: str, version: str, capabilities: dict[str, Any], subject: str) -> SessionState:
        now = time.time()
        expires_at = now + self.max_age_s
        facts = [virtual_server, version, capabilities, subject, round(now, 3), round(expires_at, 3)]
        session_id = self.seal(facts)
        state = SessionState(session_id, virtual_server, version, capabilities, subject, now, expires_at)
        self._remember(state)
        return state

    def get(self, session_id: str) -> SessionState | None:
        """The session's facts, or None: not one of ours, ended, or expired."""
        state = self._opened.get(session_id)
        if state is None:
            state = self._open(session_id)
            if state is None:
                return None
            if session_id in self._ended:
                return None
            self._remember(state)
        if state.expires_at <= time.time():
            self._opened.pop(session_id, None)
            return None
        return state

    def _open(self, session_id: str) -> SessionState | None:
        facts = self.unseal(session_id)
        try:
            vs, version, capabilities, subject, created, expires = facts  # type: ignore[misc]
        except (ValueError, TypeError):
            return None
        return SessionState(session_id, vs, version, capabilities, subject, created, expires)

    def seal(self, facts: list[Any], purpose: bytes = _AAD) -> str:
        """Facts (JSON) sealed into a token any process with the keys opens: a session id, or (with another
        `purpose`, which a token of one purpose never opens as) the state of a request awaiting input."""
        return _encode(self.ring.seal(orjson.dumps(facts), purpose))

    def unseal(self, token: str, purpose: bytes = _AAD) -> list[Any] | None:
        if not token.startswith("s") or len(token) > 8192:
            return None
        try:
            sealed = base64.urlsafe_b64decode(token[1:] + "=" * (-(len(token) - 1) % 4))
        except (binascii.Error, ValueError):
            return None
        if _encode(sealed) != token:
            # Another spelling of the same bytes (the last character's unused bits): one token has one
            # spelling, or an ended session's id could be spelled anew and opened again.
            return None
        if not self.ring.knows(sealed) and self.on_unknown_key is not None:
            self.on_unknown_key()
        plain = self.ring.open(sealed, purpose)
        if plain is None:
            return None
        try:
            facts = orjson.loads(plain)
        except orjson.JSONDecodeError:
            return None
        return facts if isinstance(facts, list) else None

    def _remember(self, state: SessionState) -> None:
        if len(self._opened) >= self.CACHE_MAX:
            self._opened.pop(next(iter(self._opened)))
        self._opened[state.id] = state

    def end(self, state: SessionState) -> None:
        """The client deleted it (here or, told over the bus, elsewhere): refuse it from now on."""
        self._opened.pop(state.id, None)
        self._ended[state.id] = state.expires_at

    def ended(self, session_id: str, expires_at: float) -> None:
        self._opened.pop(session_id, None)
        self._ended[session_id] = expires_at

    def sweep(self) -> None:
        now = time.time()
        self._ended = {sid: until for sid, until in self._ended.items() if until > now}
        self._opened = {sid: s for sid, s in self._opened.items() if s.expires_at > now}

    def rekey(self, ring: KeyRing) -> None:
        self.ring = ring


@dataclass
class Relayed:
    """A backend's request relayed to the client, waiting for the client's answer."""

    exchange: Exchange
    upstream_id: RequestId
    future: asyncio.Future[dict[str, Any]] | None = None
    method: str = ""  # what was asked (elicitation/create, sampling/createMessage, roots/list)


# Relay ids are unique across processes: the client's answer may reach another worker, which passes it on.
_RELAY_PREFIX = f"sw-{secrets.token_hex(3)}-"


class LiveSession:
    """Per-process companions of a session: its notification stream and what is in flight."""

    def __init__(self, session_id: str, virtual_server: str) -> None:
        self.id = session_id
        self.virtual_server = virtual_server
        # Server-initiated messages for the GET stream; None until the client opens one here.
        self.stream: asyncio.Queue[bytes] | None = None
        self.relayed: dict[RequestId, Relayed] = {}
        # Client request id -> exchange, so notifications/cancelled can reach the backend.
        self.in_flight: dict[RequestId, Exchange] = {}
        # Requests the client cancelled (notifications/cancelled): they get no answer.
        self.cancelled: set[RequestId] = set()
        # The client's logging/setLevel: backends' log messages below it are not relayed (None: all are).
        self.log_level: str | None = None
        self.last_seen = time.monotonic()
        self._relay_ids = 0

    def answer(self, request_id: Any, response: dict[str, Any]) -> str | None:
        """The client's answer ({"result"|"error": ...}) to a relayed request: the method it answers, or
        None when nobody here waits for it."""
        relayed = self.relayed.get(request_id) if isinstance(request_id, (str, int)) else None
        if relayed is None or relayed.future is None or relayed.future.done():
            return None
        relayed.future.set_result(response)
        return relayed.method

    def cancel(self, request_id: Any) -> Exchange | None:
        """notifications/cancelled: the call's exchange, if it is in flight here (it then gets no answer)."""
        exchange = self.in_flight.get(request_id) if isinstance(request_id, (str, int)) else None
        if exchange is not None:
            self.cancelled.add(request_id)
        return exchange

    def next_relay_id(self) -> str:
        self._relay_ids += 1
        return f"{_RELAY_PREFIX}{self._relay_ids}"

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

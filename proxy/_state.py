"""The gateway's durable state: gateway tokens (hashes only), users' backend credentials (encrypted),
virtual servers' metadata and ratings, and the keys that seal 2025-11-25 sessions — in one SQLite file
or one PostgreSQL database (`auth.state_db`, see `_sql`), shared by every gateway process and by the
`slicewire tokens` / `slicewire creds` commands.

A gateway token is `swp_` (personal) or `sws_` (service account) + a 10-character id + `_` + 43
characters of randomness (256 bits). Only its SHA-256 is stored; a lookup finds the record by id and
compares hashes in constant time. The secret is shown once, by `create_token`.

Credentials are sealed with AES-256-GCM (`_vault.Vault`), bound to their (subject, backend, kind) so
that a row copied to another user does not open.

    db = StateDB(".slicewire/state.db")        # or StateDB("postgresql://slicewire@db/slicewire")
    token, record = db.create_token("alice", "personal", scopes=["github:read"])
    db.find_token(token)          # -> TokenRecord, or None when unknown, revoked or expired
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._sql import StateDBError, open_engine

__all__ = ["TOKEN_PREFIXES", "CredentialRecord", "ServerMeta", "StateDB", "StateDBError", "TokenRecord"]

TOKEN_PREFIXES = {"personal": "swp_", "service": "sws_"}
_KIND_OF_PREFIX = {v: k for k, v in TOKEN_PREFIXES.items()}
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"

_MIGRATIONS = [
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        scopes TEXT NOT NULL,
        groups_ TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL
    );
    CREATE TABLE credentials (
        subject TEXT NOT NULL,
        backend TEXT NOT NULL,
        kind TEXT NOT NULL,
        sealed BLOB NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        PRIMARY KEY (subject, backend, kind)
    );
    """,
    """
    CREATE TABLE virtual_servers (
        path TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        updated_at REAL NOT NULL,
        updated_by TEXT NOT NULL
    );
    CREATE TABLE ratings (
        path TEXT NOT NULL,
        subject TEXT NOT NULL,
        rating INTEGER NOT NULL,
        rated_at REAL NOT NULL,
        PRIMARY KEY (path, subject)
    );
    """,
    """
    CREATE TABLE session_keys (
        id TEXT PRIMARY KEY,
        key BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    """,
]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    subject: str
    kind: Literal["personal", "service"]
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    description: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def usable(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, Any]:
        """What `slicewire tokens list --json` shows: everything but the hash."""
        return {
            "id": self.id,
            "subject": self.subject,
            "kind": self.kind,
            "scopes": list(self.scopes),
            "groups": list(self.groups),
            "description": self.description,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    subject: str
    backend: str
    kind: str
    sealed: bytes
    updated_at: float
    expires_at: float | None


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def split_token(token: str) -> tuple[str, str] | None:
    """`swp_<id>_<secret>` -> (kind, id), or None if it is not shaped like a gateway token."""
    kind = _KIND_OF_PREFIX.get(token[:4])
    if kind is None or len(token) < 20 or token[14:15] != "_":
        return None
    return kind, token[4:14]


class StateDB:
    """One connection to an SQLite file or a PostgreSQL database (`_sql`). The gateway reads from the
    event loop (lookups take µs on SQLite, a round trip on PostgreSQL; both are cached above this layer);
    the CLI writes. `version()` changes whenever another connection has written."""

    def __init__(self, target: str | Path) -> None:
        self.where = str(target)
        self.db = open_engine(target)
        try:
            self.db.migrate([m.replace("\n    ", "\n") for m in _MIGRATIONS])
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def version(self) -> int:
        """Changes when another connection has written since the last call."""
        return self.db.version()

    # --- gateway tokens --------------------------------------------------------------------------

    def create_token(
        self,
        subject: str,
        kind: Literal["personal", "service"],
        scopes: list[str] | None = None,
        groups: list[str] | None = None,
        expires_at: float | None = None,
        description: str = "",
    ) -> tuple[str, TokenRecord]:
        """A new token: (the secret, shown once; its record)."""
        token_id = "".join(secrets.choice(_ID_CHARS) for _ in range(10))
        token = f"{TOKEN_PREFIXES[kind]}{token_id}_{secrets.token_urlsafe(32)}"
        record = TokenRecord(
            token_id,
            subject,
            kind,
            tuple(scopes or ()),
            tuple(groups or ()),
            description,
            time.time(),
            expires_at,
            None,
        )
        self.db.write(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                record.id,
                _hash(token),
                subject,
                kind,
                json.dumps(record.scopes),
                json.dumps(record.groups),
                description,
                record.created_at,
                expires_at,
            ),
        )
        return token, record

    def find_token(self, token: str) -> TokenRecord | None:
        """The record of a usable token, or None (unknown, wrong secret, revoked, expired)."""
        parts = split_token(token)
        if parts is None:
            return None
        row = self.db.one("SELECT * FROM tokens WHERE id = ?", (parts[1],))
        if row is None:
            return None
        record = _token(row)
        if not hmac.compare_digest(row[1], _hash(token)) or record.kind != parts[0]:
            return None
        return record if record.usable() else None

    def list_tokens(self, subject: str | None = None) -> list[TokenRecord]:
        if subject is None:
            rows = self.db.query("SELECT * FROM tokens ORDER BY created_at")
        else:
            rows = self.db.query("SELECT * FROM tokens WHERE subject = ? ORDER BY created_at", (subject,))
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        """True if a usable token with this id was revoked."""
        changed = self.db.write(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), token_id)
        )
        return changed == 1

    # --- backend credentials ---------------------------------------------------------------------

    def put_credential(
        self, subject: str, backend: str, kind: str, sealed: bytes, expires_at: float | None = None
    ) -> None:
        self.db.write(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject, backend, kind) DO UPDATE SET "
            "sealed = excluded.sealed, updated_at = excluded.updated_at, expires_at = excluded.expires_at",
            (subject, backend, kind, sealed, time.time(), expires_at),
        )

    def get_credential(self, subject: str, backend: str, kind: str) -> CredentialRecord | None:
        row = self.db.one(
            "SELECT * FROM credentials WHERE subject = ? AND backend = ? AND kind = ?", (subject, backend, kind)
        )
        return CredentialRecord(*row) if row is not None else None

    def delete_credentials(self, subject: str, backend: str) -> int:
        return self.db.write("DELETE FROM credentials WHERE subject = ? AND backend = ?", (subject, backend))

    def list_credentials(self, subject: str | None = None) -> list[CredentialRecord]:
        query = "SELECT * FROM credentials"
        rows = (
            self.db.query(query + " WHERE subject = ? ORDER BY backend", (subject,))
            if subject is not None
            else self.db.query(query + " ORDER BY subject, backend")
        )
        return [CredentialRecord(*row) for row in rows]

    # --- virtual servers managed through the admin API -----------------------------------------------

    def server_meta(self, path: str) -> ServerMeta | None:
        row = self.db.one("SELECT * FROM virtual_servers WHERE path = ?", (path,))
        return ServerMeta(*row) if row else None

    def server_changed(self, path: str, subject: str, now: float | None = None) -> None:
        """`subject` created (first time) or changed the server at `path`."""
        now = time.time() if now is None else now
        self.db.write(
            "INSERT INTO virtual_servers VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (path, now, subject, now, subject),
        )

    def server_deleted(self, path: str) -> None:
        with self.db.transaction():
            self.db.write("DELETE FROM virtual_servers WHERE path = ?", (path,))
            self.db.write("DELETE FROM ratings WHERE path = ?", (path,))

    def rate(self, path: str, subject: str, rating: int) -> None:
        """One rating per subject and server; rating again replaces it."""
        self.db.write(
            "INSERT INTO ratings VALUES (?, ?, ?, ?) ON CONFLICT (path, subject) DO UPDATE SET "
            "rating = excluded.rating, rated_at = excluded.rated_at",
            (path, subject, rating, time.time()),
        )

    def ratings(self, path: str) -> list[tuple[str, int]]:
        """(subject, rating) for the server, oldest first."""
        rows = self.db.query("SELECT subject, rating FROM ratings WHERE path = ? ORDER BY rated_at", (path,))
        return [(str(subject), int(rating)) for subject, rating in rows]

    # --- keys that seal legacy sessions' ids (shared by every process on this database) ---------------

    def session_keys(self, rotate_s: float, keep_s: float, now: float | None = None) -> list[bytes]:
        """The keys, newest (the sealing one) first. A new key is made when the newest is `rotate_s` old;
        a key is dropped `keep_s` (the sessions' max age) after a newer one took over."""
        now = time.time() if now is None else now
        with self.db.transaction():
            rows = self.db.query("SELECT id, key, created_at FROM session_keys ORDER BY created_at DESC, id")
            keys = [(str(i), bytes(k), float(c)) for i, k, c in rows]
            if not keys or keys[0][2] <= now - rotate_s:
                key = (secrets.token_hex(8), secrets.token_bytes(32), now)
                self.db.write("INSERT INTO session_keys VALUES (?, ?, ?)", key)
                keys.insert(0, key)
            kept = [keys[0]]
            for older, newer in zip(keys[1:], keys, strict=False):
                if newer[2] > now - keep_s:
                    kept.append(older)
                else:
                    self.db.write("DELETE FROM session_keys WHERE id = ?", (older[0],))
        return [key for _, key, _ in kept]


@dataclass(frozen=True, slots=True)
class ServerMeta:
    path: str
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str


class ChangeWatch:
    """Whether another connection (the CLI) wrote to the state DB, asked at most once per interval:
    how a running gateway learns of revocations without a query per request."""

    def __init__(self, state: StateDB | None, interval_s: float = 1.0) -> None:
        self.state = state
        self.interval_s = interval_s
        self._version = state.version() if state is not None else 0
        self._checked = time.monotonic()

    def changed(self) -> bool:
        now = time.monotonic()
        if self.state is None or now - self._checked < self.interval_s:
            return False
        self._checked = now
        version = self.state.version()
        if version == self._version:
            return False
        self._version = version
        return True


def _token(row: tuple[Any, ...]) -> TokenRecord:
    return TokenRecord(
        row[0], row[2], row[3], tuple(json.loads(row[4])), tuple(json.loads(row[5])), row[6], row[7], row[8], row[9]
    )

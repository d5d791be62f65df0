"""The two engines the state DB runs on: an SQLite file (the embedded default) and PostgreSQL (what
replicas share). `StateDB` writes one SQL dialect, the common subset of both with `?` placeholders
(`ON CONFLICT ... DO UPDATE`, no `INSERT OR REPLACE`); each engine adapts the rest here:

| | SQLite | PostgreSQL |
| --- | --- | --- |
| schema version | `PRAGMA user_version` | table `slicewire_schema` |
| "another connection wrote" | `PRAGMA data_version` | `slicewire_schema.changes`, bumped by every write |
| migrations run by one process | `BEGIN IMMEDIATE` | an advisory lock |
| types | `BLOB`, `REAL` | `BYTEA`, `DOUBLE PRECISION` |

    db = open_engine(".slicewire/state.db")            # or "postgresql://slicewire@db/slicewire"
    db.migrate(MIGRATIONS)
    db.query("SELECT * FROM tokens WHERE id = ?", (token_id,))
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._urls import UrlError, resolved, without_password

__all__ = ["Engine", "StateDBError", "open_engine"]

_LOCK_ID = 0x5117E  # the advisory lock migrations hold on PostgreSQL


class StateDBError(RuntimeError):
    """The state DB cannot be used; the message is one line naming it."""


class Engine(abc.ABC):
    where: str

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement that changes data; the rows it changed."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    @abc.abstractmethod
    def migrate(self, migrations: list[str]) -> None: ...

    @abc.abstractmethod
    def version(self) -> int:
        """Changes when another connection has written since the last call."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def _newer(self, version: int, known: int) -> StateDBError:
        return StateDBError(f"{self.where}: written by a newer Slicewire (schema {version}, this one knows {known})")


class SQLite(Engine):
    def __init__(self, path: Path) -> None:
        self.where = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        try:
            path.chmod(0o600)  # hashes and sealed credentials: the owner only
        except OSError:
            pass

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            yield

    def migrate(self, migrations: list[str]) -> None:
        # The version is read inside each write transaction: processes opening a new file at once (the
        # workers of one `serve`) each see the others' steps.
        while True:
            with self.transaction():
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(migrations):
                    raise self._newer(version, len(migrations))
                if version == len(migrations):
                    return
                for statement in filter(str.strip, migrations[version].split(";")):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={version + 1}")

    def version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class Postgres(Engine):
    def __init__(self, url: str) -> None:
        import psycopg

        self.where = f"auth.state_db ({without_password(url)})"
        try:
            self.url = resolved(url, "auth.state_db")  # a password from ${env:NAME} or ${file:PATH}
        except UrlError as exc:
            raise StateDBError(str(exc)) from None
        self._psycopg = psycopg
        self._in_transaction = False
        self.conn = self._connect()

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise StateDBError(f"{self.where}: cannot connect: {_first_line(exc)}") from None

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        sql = sql.replace("?", "%s")
        try:
            return self.conn.execute(sql, params)
        except self._psycopg.OperationalError:
            if self._in_transaction:
                raise
            self.conn = self._connect()  # the server restarted, or the connection was cut: once more
            return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [_plain(row) for row in self._run(sql, params).fetchall()]

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.transaction():
            count = int(self._run(sql, params).rowcount)
            self._run("UPDATE slicewire_schema SET changes = changes + 1", ())
        return count

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            yield
            return
        self._in_transaction = True
        try:
            with self.conn.transaction():
                yield
        finally:
            self._in_transaction = False

    def migrate(self, migrations: list[str]) -> None:
        with self.transaction():
            self._run("SELECT pg_advisory_xact_lock(?)", (_LOCK_ID,))
            self._run(
                "CREATE TABLE IF NOT EXISTS slicewire_schema (version INTEGER NOT NULL, changes BIGINT NOT NULL)", ()
            )
            row = self._run("SELECT version FROM slicewire_schema", ()).fetchone()
            if row is None:
                self._run("INSERT INTO slicewire_schema VALUES (0, 0)", ())
            version = 0 if row is None else int(row[0])
            if version > len(migrations):
                raise self._newer(version, len(migrations))
            for number in range(version, len(migrations)):
                ddl = migrations[number].replace(" BLOB", " BYTEA").replace(" REAL", " DOUBLE PRECISION")
                for statement in filter(str.strip, ddl.split(";")):
                    self._run(statement, ())
                self._run("UPDATE slicewire_schema SET version = ?", (number + 1,))

    def version(self) -> int:
        row = self.one("SELECT changes FROM slicewire_schema")
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """BYTEA comes back as bytes already; memoryviews (older psycopg) made bytes, as SQLite gives."""
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_engine(target: str | Path) -> Engine:
    """A postgresql:// (or postgres://) URL, else an SQLite file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return Postgres(text)
    if "://" in text:
        raise StateDBError(
            f"auth.state_db: expected a file path or a postgresql:// URL, found {text.split('://')[0]}://"
        )
    return SQLite(Path(text))

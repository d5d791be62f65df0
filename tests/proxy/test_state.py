"""The state DB on both engines it runs on: an SQLite file and a real PostgreSQL server (Debian's,
started by the test). The same behaviour is asserted on each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy._sql import StateDBError
from proxy._state import StateDB
from tests.support.services import Postgres

_databases = iter(range(1_000_000))


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    pg = Postgres.start(tmp_path_factory.mktemp("pg"))
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state DB of each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    pg: Postgres = request.getfixturevalue("postgres")
    name = f"t{next(_databases)}"
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


def test_tokens(target: str) -> None:
    db = StateDB(target)
    token, record = db.create_token("alice", "personal", ["github:read"], ["eng"], description="laptop")
    found = db.find_token(token)
    assert found == record and found.scopes == ("github:read",) and found.groups == ("eng",)
    assert db.find_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # wrong secret
    assert db.find_token("swp_nope") is None
    assert [t.id for t in db.list_tokens("alice")] == [record.id]
    assert db.revoke_token(record.id) and not db.revoke_token(record.id)
    assert db.find_token(token) is None
    db.close()


def test_credentials_are_replaced_listed_and_deleted(target: str) -> None:
    db = StateDB(target)
    db.put_credential("alice", "/github", "key", b"\x01sealed-one")
    db.put_credential("alice", "/github", "key", b"\x01sealed-two", expires_at=5.0)
    got = db.get_credential("alice", "/github", "key")
    assert got is not None and got.sealed == b"\x01sealed-two" and got.expires_at == 5.0
    assert isinstance(got.sealed, bytes)
    db.put_credential("bob", "/search", "oauth2", b"\x01x")
    assert [(c.subject, c.backend) for c in db.list_credentials()] == [("alice", "/github"), ("bob", "/search")]
    assert db.delete_credentials("alice", "/github") == 1
    assert db.get_credential("alice", "/github", "key") is None
    db.close()


def test_server_metadata_and_ratings(target: str) -> None:
    db = StateDB(target)
    db.server_changed("/virtual/a", "alice", now=10.0)
    db.server_changed("/virtual/a", "bob", now=20.0)
    meta = db.server_meta("/virtual/a")
    assert meta is not None and (meta.created_by, meta.updated_by, meta.updated_at) == ("alice", "bob", 20.0)
    db.rate("/virtual/a", "alice", 4)
    db.rate("/virtual/a", "alice", 5)
    assert db.ratings("/virtual/a") == [("alice", 5)]
    db.server_deleted("/virtual/a")
    assert db.server_meta("/virtual/a") is None and db.ratings("/virtual/a") == []
    db.close()


def test_session_keys_are_shared_rotated_and_retired(target: str) -> None:
    one, two = StateDB(target), StateDB(target)
    first = one.session_keys(rotate_s=100, keep_s=50, now=1000.0)
    assert len(first) == 1 and len(first[0]) == 32
    assert two.session_keys(rotate_s=100, keep_s=50, now=1050.0) == first  # another process: the same key
    rotated = two.session_keys(rotate_s=100, keep_s=50, now=1100.0)
    assert len(rotated) == 2 and rotated[1] == first[0]  # a new sealing key; the old one still opens
    assert one.session_keys(rotate_s=100, keep_s=50, now=1120.0) == rotated
    assert one.session_keys(rotate_s=100, keep_s=50, now=1151.0) == rotated[:1]  # max age past: retired
    one.close()
    two.close()


def test_another_connections_write_changes_the_version(target: str) -> None:
    gateway, cli = StateDB(target), StateDB(target)
    before = gateway.version()
    assert gateway.version() == before
    _, record = cli.create_token("carol", "service")
    cli.revoke_token(record.id)
    assert gateway.version() != before
    gateway.close()
    cli.close()


def test_concurrent_first_opens_migrate_once(target: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            StateDB(target).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    db = StateDB(target)
    assert db.list_tokens() == []
    db.close()


def test_a_newer_schema_is_refused(target: str) -> None:
    db = StateDB(target)
    if target.startswith("postgresql://"):
        db.db.write("UPDATE slicewire_schema SET version = 99")
    else:
        db.db.write("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StateDBError, match=r"written by a newer Slicewire \(schema 99, this one knows 3\)"):
        StateDB(target)


def test_an_unreachable_postgres_is_one_line_without_the_password() -> None:
    from tests.support.procs import free_port

    url = f"postgresql://slicewire:hunter2@127.0.0.1:{free_port()}/slicewire"
    with pytest.raises(StateDBError) as caught:
        StateDB(url)
    message = str(caught.value)
    assert message.startswith("auth.state_db (postgresql://slicewire:***@127.0.0.1:") and "cannot connect" in message
    assert "hunter2" not in message and "\n" not in message


def test_the_token_cli_on_postgres(postgres: Postgres, tmp_path: Path) -> None:
    """`slicewire tokens` against a PostgreSQL state DB, as replicas' operators run it; an unreachable
    one is one line without the password."""
    import subprocess
    import sys

    from tests.support.procs import ROOT, free_port

    def cli(state_db: str, *args: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / "gw.yaml"
        config.write_text(f"auth: {{state_db: '{state_db}'}}\n")
        return subprocess.run([sys.executable, "-m", "proxy", "tokens", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip

    made = cli(postgres.url, "create", "--subject", "ops-bot", "--service")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("sws_")
    listed = cli(postgres.url, "list", "--json")
    assert listed.returncode == 0 and "ops-bot" in listed.stdout
    down = cli(f"postgresql://slicewire:hunter2@127.0.0.1:{free_port()}/x", "list")
    assert down.returncode == 1 and "hunter2" not in down.stderr
    assert down.stderr.startswith("slicewire: auth.state_db (postgresql://slicewire:***@127.0.0.1:")
    assert len(down.stderr.strip().splitlines()) == 1


def test_a_gateway_whose_postgres_is_down_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.procs import ROOT, free_port

    config = tmp_path / "gw.yaml"
    config.write_text(f"listen: {{host: 127.0.0.1, port: {free_port()}}}\n"
                      f"auth: {{state_db: 'postgresql://slicewire:hunter2@127.0.0.1:{free_port()}/x'}}\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "gateway failed to start: auth.state_db (postgresql://slicewire:***@127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(StateDBError, match=r"expected a file path or a postgresql:// URL, found mysql://"):
        StateDB("mysql://db/slicewire")

"""Real infrastructure from Debian's packages, started by the tests themselves on 127.0.0.1: a private
PostgreSQL cluster, a Redis server, HAProxy. `scripts/setup --test` installs the packages; a test that
finds one missing is skipped with the reason (never silently).

    pg = Postgres.start(tmp)          # pg.url: postgresql://slicewire@127.0.0.1:PORT/slicewire
    redis = Redis.start(tmp)          # redis.url: redis://127.0.0.1:PORT/0
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .procs import Proc, free_port, port_open, wait_until

__all__ = ["HAProxy", "Postgres", "Redis", "need"]


def need(binary: str, package: str) -> str:
    """The binary's path, or skip naming the Debian package that provides it."""
    found = shutil.which(binary) or next(iter(sorted(glob.glob(binary))), None)
    if found is None:
        pytest.skip(f"{binary} not found: install Debian's {package} (scripts/setup --test does, as root)")
    return found


def _as_postgres() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: (uid, gid) of the `postgres` account when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' account to run PostgreSQL as (Debian's postgresql)")
    return account.pw_uid, account.pw_gid


class Postgres:
    def __init__(self, proc: Proc, port: int, data: Path) -> None:
        self.proc, self.port, self.data = proc, port, data
        self.url = f"postgresql://slicewire@127.0.0.1:{port}/slicewire"

    @classmethod
    def start(cls, tmp: Path) -> Postgres:
        """A new cluster in a directory of its own (pytest's are root's alone; PostgreSQL runs as `postgres`)."""
        initdb = need("/usr/lib/postgresql/*/bin/initdb", "postgresql")
        bindir = Path(initdb).parent
        owner = _as_postgres()
        tmp = Path(tempfile.mkdtemp(prefix="slicewire-pg-"))
        data = tmp / "pgdata"
        data.mkdir(mode=0o700)
        if owner is not None:
            os.chown(tmp, *owner)
            os.chown(data, *owner)
        user = {"user": owner[0], "group": owner[1]} if owner else {}
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "slicewire", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, **user)  # type: ignore[arg-type]  # fmt: skip
        port = free_port()
        args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={tmp}", "-c", "fsync=off", "-c", "max_connections=200"]  # fmt: skip
        log = tmp / "postgres.log"
        if owner is not None:
            log.touch()
            os.chown(log, *owner)
            args = ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups", *args]
        proc = Proc(args, log)
        wait_until(port_open(port), 30, what="PostgreSQL accepting connections")
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "slicewire", "slicewire"],
                       check=True, capture_output=True)  # fmt: skip
        return cls(proc, port, data)

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)


class Redis:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"redis://127.0.0.1:{port}/0"

    @classmethod
    def start(cls, tmp: Path) -> Redis:
        binary = need("redis-server", "redis-server")
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(tmp)]  # fmt: skip
        proc = Proc(args, tmp / f"redis-{port}.log")
        wait_until(port_open(port), 30, what="Redis accepting connections")
        return cls(proc, port)

    def stop(self) -> None:
        self.proc.stop()


class HAProxy:
    """Round robin over `servers`, request by request (`http-server-close`), each answer naming the server
    that gave it (`X-Served-By`); a server whose /healthz fails is taken out within ~0.5 s, and a request
    refused by a dead one is sent to another (`redispatch`)."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc, self.port = proc, port
        self.base = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, tmp: Path, servers: dict[str, int]) -> HAProxy:
        binary = need("haproxy", "haproxy")
        port = free_port()
        lines = [
            "global", "  maxconn 256", "  log stdout format raw local0",
            "defaults", "  mode http", "  log global", "  option httplog",
            "  timeout connect 5s", "  timeout client 300s", "  timeout server 300s",
            "  option http-server-close", "  option redispatch", "  retries 3",
            "frontend gateways", f"  bind 127.0.0.1:{port}", "  default_backend replicas",
            "backend replicas", "  balance roundrobin", "  http-response set-header X-Served-By %s",
            "  option httpchk GET /healthz",
            *(f"  server {name} 127.0.0.1:{server_port} check inter 250ms fall 1 rise 2"
              for name, server_port in servers.items()),
        ]  # fmt: skip
        config = tmp / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        proc = Proc([binary, "-db", "-f", str(config)], tmp / "haproxy.log")
        wait_until(port_open(port), 30, what="HAProxy accepting connections")
        return cls(proc, port)

    def stop(self) -> None:
        self.proc.stop()

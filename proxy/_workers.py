"""`slicewire serve --workers N`: N gateway processes on one port, and their supervisor.

The supervisor checks that nobody holds the port (a plain bind), then binds one socket per worker with
SO_REUSEPORT and starts each worker with its own: the kernel spreads new connections over them by
hash (with one shared socket every worker would wake for each connection, and whichever is first
takes it). A restarted worker gets the socket its predecessor had, so connections queued there
meanwhile are served.

Each worker is a whole gateway: its own upstream connections, span-shipping helper and config watcher.
What they share:

- the session keys (every worker opens every 2025-11-25 session): the operator's, the state DB's, or a
  key the supervisor makes for this run and gives to its workers;
- the bus (`_bus.UnixBus`): a directory of datagram sockets, one per worker, for what one worker cannot
  finish alone (a cancellation or an elicitation answer for a call in flight in another);
- the state DB (SQLite in WAL mode, or PostgreSQL).

A worker that dies is started again (at most 5 times in 60 s, then the supervisor gives up and exits 1).
SIGTERM or SIGINT: every worker drains (uvicorn's graceful shutdown: requests in flight finish, up to
5 s) and the supervisor exits once they have.
"""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from ._bus import BUS_ENV
from ._config import Config
from ._sessions import KEYS_ENV, WORKER_KEY_ENV

__all__ = ["resolve_workers", "supervise"]

logger = logging.getLogger("slicewire.workers")

_RESTARTS = 5  # at most this many restarts...
_RESTART_WINDOW_S = 60.0  # ...within this long
_DRAIN_S = 15.0  # a worker not gone this long after SIGTERM is killed


def resolve_workers(value: str) -> int:
    """`--workers`: a positive number, or `auto` (the CPUs this process may use)."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--workers: expected a number or 'auto', found {value!r}") from None
    if count < 1:
        raise ValueError(f"--workers: expected at least 1, found {count}")
    return count


def _worker(config: Config, config_file: str, reload: bool, sock: socket.socket, ready: Any, level: int) -> None:
    """One worker's life (in a process of its own)."""
    from ._serve import serve_socket

    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)-7s %(name)s[{os.getpid()}]: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which drains us with SIGTERM
    if not serve_socket(config, config_file, sock, reload, on_listening=ready.release):
        raise SystemExit(3)  # the supervisor sees a worker that could not start


class _Supervisor:
    def __init__(self, config: Config, config_file: str, reload: bool, sockets: list[socket.socket]) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.args = (config, config_file, reload)
        self.sockets = sockets
        self.count = len(sockets)
        self.ready = self.context.Semaphore(0)
        self.workers: list[Any] = []
        self.stopping = False
        self.restarts: list[float] = []

    def start_one(self, index: int) -> Any:
        args = (*self.args, self.sockets[index], self.ready, logging.getLogger().level)
        process = self.context.Process(target=_worker, args=args, name=f"slicewire worker {index}")
        process.start()
        return process

    def wait_ready(self, on_listening: Callable[[], None] | None) -> bool:
        for _ in range(self.count):
            while not self.ready.acquire(timeout=0.2):
                if self.stopping or any(not p.is_alive() for p in self.workers):
                    return False
        if on_listening is not None:
            on_listening()
        return True

    def watch(self) -> int:
        """Restart workers that die; return the exit code once stopping (0) or giving up (1)."""
        while not self.stopping:
            ended = wait([p.sentinel for p in self.workers], timeout=0.5)
            for sentinel in ended:
                if self.stopping:
                    break
                index = next(i for i, p in enumerate(self.workers) if p.sentinel == sentinel)
                dead = self.workers[index]
                dead.join()
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if t > now - _RESTART_WINDOW_S] + [now]
                if len(self.restarts) > _RESTARTS:
                    logger.error("worker %d exited with code %s; %d restarts within %.0f s: giving up",
                                 dead.pid, dead.exitcode, _RESTARTS, _RESTART_WINDOW_S)  # fmt: skip
                    self.stop()
                    return 1
                logger.warning("worker %d exited with code %s; starting another", dead.pid, dead.exitcode)
                self.workers[index] = self.start_one(index)
        return 0

    def stop(self, *_: Any) -> None:
        self.stopping = True
        for process in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def drain(self) -> None:
        deadline = time.monotonic() + _DRAIN_S
        for process in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.warning("worker %d did not drain within %.0f s; killing it", process.pid, _DRAIN_S)
                process.kill()
                process.join()


def supervise(
    config: Config,
    config_file: str,
    reload: bool,
    count: int,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """Serve with `count` workers until SIGTERM/SIGINT; the exit code. Raises ListenError before anything
    starts when the address is refused."""
    from ._serve import bind

    host, port = config.listen.host, config.listen.port
    bind(host, port).close()  # nobody holds the port (SO_REUSEPORT alone would share it with them)
    sockets = [bind(host, port, reuse_port=True) for _ in range(count)]
    bus_dir = tempfile.mkdtemp(prefix="slicewire-bus-")
    saved = {name: os.environ.get(name) for name in (BUS_ENV, WORKER_KEY_ENV)}
    os.environ[BUS_ENV] = bus_dir
    if not os.environ.get(KEYS_ENV) and config.sessions.keys_file is None:
        # Used only when the state DB holds no keys for them (workers opening none).
        os.environ[WORKER_KEY_ENV] = base64.b64encode(os.urandom(32)).decode()
    supervisor = _Supervisor(config, config_file, reload, sockets)
    previous = {sig: signal.signal(sig, supervisor.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.workers = [supervisor.start_one(index) for index in range(count)]
        if not supervisor.wait_ready(on_listening) and not supervisor.stopping:
            logger.error("a worker failed to start (its log above says why)")
            supervisor.stop()
            return 1
        return supervisor.watch()
    finally:
        supervisor.stop()
        supervisor.drain()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for sock in sockets:
            sock.close()
        shutil.rmtree(bus_dir, ignore_errors=True)

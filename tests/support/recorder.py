"""A real `slicewire recorder` process on 127.0.0.1 writing a real DuckDB file."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .gateway import RunningGateway
from .procs import Proc, free_port, port_open, wait_until


class RunningRecorder:
    def __init__(self, db: Path, workdir: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.db = db
        self.workdir = workdir
        self.args = args
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.proc = self._start()

    def _start(self) -> Proc:
        proc = Proc(
            [sys.executable, "-m", "proxy", "recorder", "--db", str(self.db), "--listen", self.target, *self.args],
            self.workdir / f"recorder-{self.port}.log",
        )
        try:
            wait_until(port_open(self.port), 30, what=f"recorder on {self.target}")
        except BaseException:
            proc.stop()
            raise
        return proc

    def restart(self) -> None:
        self.proc.stop()
        self.proc = self._start()

    def kill(self) -> None:
        self.proc.kill()

    def start(self) -> None:
        self.proc = self._start()

    def stop(self) -> None:
        """SIGTERM: the recorder finishes streams in flight, flushes and closes the file."""
        self.proc.stop()


def record_session(
    config: Callable[[str], dict[str, Any]], agent: Callable[[RunningGateway], Awaitable[None]], workdir: Path
) -> Path:
    """Run `agent` against a gateway built by `config(recorder target)` that records into a fresh
    DuckDB file; the file, once every span the gateway emitted has been sent."""
    rec = RunningRecorder(workdir / "traces.duckdb", workdir)
    gw = RunningGateway(config(rec.target), workdir)
    try:
        asyncio.run(agent(gw))
        wait_until(lambda: gw.status()["recorder"]["sent"] >= gw.status()["recorder"]["emitted"] > 0, 20,
                   what="spans sent")  # fmt: skip
    finally:
        gw.stop()
        rec.stop()
    return rec.db

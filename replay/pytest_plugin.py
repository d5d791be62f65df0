"""A pytest fixture that serves a Slicewire cassette as an MCP server, for agent tests with no live
backend. Installed with Slicewire (entry point `pytest11`), so no conftest is needed:

    async def test_agent_reads_the_issue(slicewire_mock):
        url = slicewire_mock("tests/cassettes/support.json")      # slicewire cassette SESSION FILE
        async with fastmcp.Client(url) as client:
            ...

Each call starts `slicewire mock --cassette FILE` on a free 127.0.0.1 port, waits (30 s at most)
until it listens, and returns its MCP URL; the servers stop when the test ends. Keyword arguments:
`strict=True` (calls in the recorded order), `match_ignore=["$.request_id"]` (argument paths not
matched on).
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["slicewire_mock"]

_STARTUP_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(cassette: Path, strict: bool, match_ignore: list[str]) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "proxy", "mock", "--cassette", str(cassette), "--listen", f"127.0.0.1:{_free_port()}"]
    args += ["--strict"] if strict else []
    for path in match_ignore:
        args += ["--match-ignore", path]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    said: list[str] = []
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        said.append(line.rstrip())
        if "mock listening on " in line:
            return proc, line.split("mock listening on ", 1)[1].split(": ", 1)[0]
    proc.kill()
    proc.wait()
    raise RuntimeError(f"slicewire mock --cassette {cassette} did not start: " + (" / ".join(said) or "no output"))


@pytest.fixture
def slicewire_mock() -> Iterator[Callable[..., str]]:
    """`slicewire_mock(path, strict=False, match_ignore=())` -> the MCP URL of a mock serving it."""
    started: list[subprocess.Popen[str]] = []

    def serve(cassette: str | Path, strict: bool = False, match_ignore: list[str] | tuple[str, ...] = ()) -> str:
        proc, url = _start(Path(cassette), strict, list(match_ignore))
        started.append(proc)
        return url

    try:
        yield serve
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

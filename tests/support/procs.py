"""Real processes for end-to-end tests: free ports, start, wait for readiness, stop by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"
LOOPBACK = ROOT / "scripts" / "loopback.cjs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing is not up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}: {last_error}")


class Proc:
    """A child process whose output goes to a log file; stopped by PID, never by name."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.args = args
        self.log_path = log
        self._log = open(log, "ab")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd or ROOT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """Abrupt death (SIGKILL), as a crash would be."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        self._log.close()


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            return False
        return response.status_code < 500

    return check


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return check


def start_fastmcp(name: str, tmp: Path, port: int | None = None, env: dict[str, str] | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    proc = Proc(
        [sys.executable, "-m", "tests.support.backends", name, "--port", str(port)], tmp / f"{name}-{port}.log", env
    )
    wait_until(port_open(port), 30, what=f"FastMCP {name} on port {port}")
    return proc, f"http://127.0.0.1:{port}/mcp"


def start_idp(tmp: Path, clients: dict[str, str]) -> tuple[Proc, str]:
    """The tests' OAuth 2.0 / OIDC server (oauth2-mock-server under Node 22, see idp.mjs)."""
    node = NODE_MODULES / ".bin" / "node"
    if not (NODE_MODULES / "oauth2-mock-server").exists() or not node.exists():
        raise RuntimeError("oauth2-mock-server or Node 22 is missing from node_modules: run ./scripts/setup first")
    port = free_port()
    args = [str(node), str(ROOT / "tests" / "support" / "idp.mjs"), "--port", str(port)]
    for client_id, secret in clients.items():
        args += ["--client", f"{client_id}:{secret}"]
    proc = Proc(args, tmp / f"idp-{port}.log")
    wait_until(port_open(port), 30, what=f"OAuth server on port {port}")
    return proc, f"http://127.0.0.1:{port}"


def node_server(package: str) -> Path:
    entry = NODE_MODULES / "@modelcontextprotocol" / package / "dist" / "index.js"
    if not entry.exists():
        raise RuntimeError(f"{entry} is missing: run ./scripts/setup (npm ci) first")
    return entry


def start_everything(tmp: Path, mode: str = "streamableHttp") -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        ["node", "--require", str(LOOPBACK), str(node_server("server-everything")), mode],
        tmp / f"everything-{mode}-{port}.log",
        env={"PORT": str(port)},
    )
    wait_until(port_open(port), 30, what=f"server-everything {mode} on port {port}")
    path = "/mcp" if mode == "streamableHttp" else "/sse"
    return proc, f"http://127.0.0.1:{port}{path}"


def ts_client(url: str, *args: str) -> dict[str, Any]:
    """Run tests/support/ts_client.mjs (the official TypeScript SDK as a client) against `url`; what it
    printed, as JSON."""
    node = NODE_MODULES / ".bin" / "node"
    done = subprocess.run([str(node), str(ROOT / "tests" / "support" / "ts_client.mjs"), url, *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"ts_client.mjs {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]

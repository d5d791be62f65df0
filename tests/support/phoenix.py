"""Arize Phoenix (installed by `scripts/setup --test` into .venv-phoenix) as a real OTLP receiver.

Phoenix's gRPC port binds every interface, so each Phoenix runs inside a network namespace of its
own making: `NetNamespace` holds one (loopback up) with a sleeping process; commands run in it
through `nsenter`. Whatever talks to Phoenix — the recorder, `slicewire export`, and the reader of
Phoenix's REST API — runs in the namespace; nothing listens outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.procs import ROOT, wait_until

PHOENIX_PYTHON = ROOT / ".venv-phoenix" / "bin" / "python"
HTTP_PORT, GRPC_PORT = 6006, 4317  # fixed: the namespace is private
_READER = """
import json, sys, urllib.request, urllib.error
for line in sys.stdin:
    try:
        with urllib.request.urlopen(line.strip(), timeout=10) as r:
            out = {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "body": e.read().decode()}
    except Exception as e:
        out = {"status": 0, "body": repr(e)}
    print(json.dumps(out), flush=True)
"""


def _settled(state: Callable[[], str | None], timeout: float, interval: float = 0.05) -> str:
    """What `state` settles on ("up", "ended", ...) within `timeout` seconds, or "timed out"."""
    try:
        return str(wait_until(state, timeout, interval))
    except TimeoutError:
        return "timed out"


def unavailable() -> str | None:
    """Why Phoenix tests cannot run here, or None."""
    if not PHOENIX_PYTHON.exists():
        return "Phoenix is not installed: run ./scripts/setup --test (./scripts/test does)"
    if os.geteuid() != 0:
        return "a network namespace for Phoenix needs root (unshare -n)"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux / iproute2)"
    tried = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if tried.returncode != 0:
        return f"this machine refuses a network namespace (unshare -n: {tried.stderr.strip()[:200]})"
    return None


class NetNamespace:
    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 86400"], start_new_session=True
        )

        def ready() -> str | None:
            if self.holder.poll() is not None:
                return "ended"
            shown = subprocess.run(self.wrap(["ip", "-o", "link", "show", "lo"]), capture_output=True).stdout
            return "up" if b"UP" in shown else None

        if _settled(ready, 10) != "up":
            self.close()
            raise RuntimeError("the network namespace did not come up")
        self._reader = subprocess.Popen(
            self.wrap([sys.executable, "-c", _READER]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *argv]

    def get(self, url: str) -> tuple[int, str]:
        """GET a URL from inside the namespace: (status, body); status 0 when nothing answered."""
        assert self._reader.stdin is not None and self._reader.stdout is not None
        self._reader.stdin.write(url + "\n")
        self._reader.stdin.flush()
        answer = json.loads(self._reader.stdout.readline())
        return answer["status"], answer["body"]

    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> Any:
        return subprocess.run(
            self.wrap(argv), env={**os.environ, **(env or {})}, cwd=ROOT, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def close(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.kill()
            reader.wait()
        self.holder.kill()
        self.holder.wait()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in a session of its own, by its process group: SIGTERM (after SIGCONT:
    a paused process cannot act on it), then SIGKILL if it has not ended within 60 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Phoenix:
    """A Phoenix server in a namespace; its data (SQLite) in `workdir`, kept across restarts."""

    def __init__(self, ns: NetNamespace, workdir: Path) -> None:
        self.ns = ns
        self.workdir = workdir
        self.http = f"http://127.0.0.1:{HTTP_PORT}"
        self.grpc = f"http://127.0.0.1:{GRPC_PORT}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = {
            **os.environ,
            "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(HTTP_PORT), "PHOENIX_GRPC_PORT": str(GRPC_PORT),
            "PHOENIX_WORKING_DIR": str(self.workdir), "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        }  # fmt: skip
        log = (self.workdir / "phoenix.log").open("ab")
        self.proc = subprocess.Popen(
            self.ns.wrap([str(PHOENIX_PYTHON), "-m", "phoenix.server.main", "serve"]),
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        proc = self.proc

        def ready() -> str | None:
            if proc.poll() is not None:
                return "ended"
            return "up" if self.ns.get(f"{self.http}/v1/projects")[0] == 200 else None

        if _settled(ready, 120, 0.2) != "up":
            tail = (self.workdir / "phoenix.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"Phoenix did not come up:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def pause(self) -> None:
        """Stop the receiver without losing what it holds (SIGSTOP): requests hang, nothing answers.
        (Phoenix acknowledges spans before storing them, and a SIGTERM drops what is still queued.)"""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix holds for a project, in OTLP form (404: no such project yet -> [])."""
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            status, body = self.ns.get(
                f"{self.http}/v1/projects/{project}/spans/otlpv1?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            )
            if status == 404:
                return []
            assert status == 200, body
            page = json.loads(body)
            out.extend(page["data"])
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return out


class Process:
    """A command run in a namespace (argv from `NetNamespace.wrap`), its output in a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc)


def attributes(span: dict[str, Any]) -> dict[str, Any]:
    """An OTLP span's attributes as a plain dict (string, int, bool, double, or list of strings)."""
    out = {}
    for item in span.get("attributes") or []:
        value = item["value"]
        if value.get("array_value"):
            out[item["key"]] = [v.get("string_value") for v in value["array_value"]["values"]]
            continue
        for kind in ("string_value", "int_value", "bool_value", "double_value"):
            if value.get(kind) is not None:
                out[item["key"]] = value[kind]
                break
    return out

"""IBM ContextForge as a peer in bench/run.py (`--contextforge`): installed on first use, set up
through its admin API, measured like every other system.

ContextForge is heavy (a few hundred packages, its own database and migrations) and is not a
dependency of Slicewire: `ensure_installed()` puts it in `.venv-contextforge/` beside the project
(`mcp-contextforge-gateway`, pinned below). `start()` runs its gateway on core 0 with a SQLite
database in the bench's work directory, signs an admin JWT with its own token tool, registers the
echo backend (`POST /gateways`) and a virtual server holding its one tool (`POST /servers`), and
returns the server's MCP endpoint. ContextForge 1.0.7 speaks MCP up to 2025-11-25 only, so its
clients are 2025-11-25 sessions; its tool is named `echo-echo` (gateway slug + tool name).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from run import answers_ok

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-contextforge"
PACKAGE = "mcp-contextforge-gateway==1.0.7"
SECRET = "slicewire-bench-jwt-secret-0123456789abcdef"  # a throw-away key for a throw-away database


def ensure_installed() -> Path:
    """The ContextForge venv's python, installing it on first use (~1 minute, ~300 packages)."""
    python = VENV / "bin" / "python"
    marker = VENV / "installed"
    if not marker.exists():
        print(f"installing {PACKAGE} into {VENV.relative_to(ROOT)} (once) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGE], check=True)
        marker.write_text(PACKAGE + "\n")
    return python


def environment(workdir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{workdir / 'contextforge.db'}",
        "AUTH_REQUIRED": "true",
        "JWT_SECRET_KEY": SECRET,
        "PLATFORM_ADMIN_PASSWORD": "Bench-Passw0rd-123",
        "BASIC_AUTH_PASSWORD": "Bench-Passw0rd-123",
        "MCPGATEWAY_ADMIN_API_ENABLED": "true",
        "MCPGATEWAY_UI_ENABLED": "false",
        "CACHE_TYPE": "memory",
        "LOG_LEVEL": "ERROR",
        # The echo backend listens on loopback, which its SSRF guard refuses by default.
        "SSRF_ALLOW_LOCALHOST": "true",
        # Its request rate limiter (100 per minute by default) would answer a load test with 429s.
        "RATE_LIMITING_ENABLED": "false",
    }


def _call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def start(
    backend_url: str, workdir: Path, port: int, pinned: Any, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """ContextForge on core 0 (`pinned`: run.py's launcher), set up to proxy the echo backend: the
    process, its virtual server's MCP URL, and a file holding the admin token for the load generator."""
    python = ensure_installed()
    cf_env = {**env, **environment(workdir)}
    gateway = VENV / "bin" / "mcpgateway"
    argv = [str(gateway), "--host", "127.0.0.1", "--port", str(port)]
    proc = pinned(0, argv, workdir / "contextforge.log", env=cf_env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # first start runs its database migrations
    while not answers_ok(f"{base}/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ContextForge did not start: see {workdir / 'contextforge.log'}")
        time.sleep(0.5)
    made = subprocess.run(
        [str(python), "-m", "mcpgateway.utils.create_jwt_token", "--username", "admin@example.com",
         "--exp", "600", "--secret", SECRET, "--admin"],
        capture_output=True, text=True, check=True, env=cf_env,
    )  # fmt: skip
    token = made.stdout.strip().splitlines()[-1]
    token_file = workdir / "contextforge.token"
    token_file.write_text(token)
    _call(base, token, "POST", "/gateways", {"name": "echo", "url": backend_url, "transport": "STREAMABLEHTTP"})
    tools = [t["id"] for t in _call(base, token, "GET", "/tools") if t.get("originalName") == "echo"]
    server = _call(base, token, "POST", "/servers", {"server": {"name": "bench", "associated_tools": tools}})
    return proc, f"{base}/servers/{server['id']}/mcp", token_file

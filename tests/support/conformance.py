"""Run the official MCP conformance suite (npm `@modelcontextprotocol/conformance`) against a server.

Two packages are installed by `npm ci` (package.json): `conformance` (0.1.x, the 2025-11-25 scenarios)
and `conformance-next` (0.2.0 alphas, run with `--requirements 2026-07-28`). Both need Node 22, which
node_modules/.bin/node is.

    python -m tests.support.conformance          # the fixture backend directly and through Slicewire

prints one line per scenario: passed/failed checks directly and through the gateway. The test
(tests/test_conformance.py) asserts that every scenario passing directly passes through Slicewire.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .procs import NODE_MODULES, Proc, free_port, port_open, wait_until

__all__ = ["SUITES", "Outcome", "Suite", "run_suite", "start_backend"]


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    package: str  # the directory under node_modules
    args: tuple[str, ...] = ()


SUITES = (
    Suite("2025-11-25", "conformance"),
    Suite("2026-07-28", "conformance-next", ("--requirements", "2026-07-28")),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One scenario's checks: how many passed, and the failures' messages."""

    passed: int
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def run_suite(suite: Suite, url: str, workdir: Path, timeout_s: float = 900) -> dict[str, Outcome]:
    """Every scenario the suite runs against `url`, by name."""
    entry = NODE_MODULES / suite.package / "dist" / "index.js"
    node = NODE_MODULES / ".bin" / "node"
    if not entry.exists() or not node.exists():
        raise RuntimeError(f"{entry} or Node 22 is missing: run ./scripts/setup (npm ci) first")
    out = Path(tempfile.mkdtemp(prefix=f"conformance-{suite.name}-", dir=workdir))
    log = out / "run.log"
    with log.open("wb") as sink:
        subprocess.run(
            [str(node), str(entry), "server", "--url", url, "-o", str(out), *suite.args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,  # exit 1 when a scenario fails: the outcomes say which
        )
    outcomes: dict[str, Outcome] = {}
    for checks_file in sorted(out.glob("*/checks.json")):
        # Directories are named server-<scenario>-<ISO timestamp>.
        scenario = checks_file.parent.name.removeprefix("server-").rsplit("-", 6)[0]
        checks = json.loads(checks_file.read_text())
        failures = tuple(
            f"{c['id']}: {c.get('errorMessage') or ''}".strip() for c in checks if c.get("status") == "FAILURE"
        )
        outcomes[scenario] = Outcome(sum(c.get("status") == "SUCCESS" for c in checks), failures)
    if not outcomes:
        raise RuntimeError(f"the conformance suite ran no scenario; its output: {log}")
    return outcomes


def start_backend(workdir: Path) -> tuple[Proc, str]:
    """The FastMCP server with the suite's fixtures (tests/support/conformance_backend.py)."""
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "tests.support.conformance_backend", "--port", str(port)],
        workdir / f"conformance-backend-{port}.log",
    )
    wait_until(port_open(port), 30, what=f"conformance backend on port {port}")
    return proc, f"http://127.0.0.1:{port}/mcp"

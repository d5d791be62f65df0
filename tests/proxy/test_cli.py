"""`slicewire check` and `slicewire serve` as a user runs them: one line per problem, exit codes, --json."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import support_config
from tests.support.procs import Proc, free_port, wait_until

pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=120)


def test_check_json_lists_each_slice(backends: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "sw.yaml"
    path.write_text(yaml.safe_dump(support_config(backends)))
    result = run("check", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    support = next(vs for vs in report["virtual_servers"] if vs["path"] == "/virtual/support")
    routes = {t["name"]: (t["backend"], t["tool"]) for t in support["tools"]}
    assert routes["plus"] == ("/alpha", "add")
    assert routes["read-doc"] == ("/fs", "read_text_file")
    assert routes["confirm"] == ("/everything", "trigger-elicitation-request")
    assert report["backends"]["/everything"]["protocol_version"] == "2025-11-25"
    assert report["backends"]["/alpha"]["protocol_version"] == "2026-07-28"


def test_check_human_output_and_problems(backends: dict[str, str], tmp_path: Path) -> None:
    config = support_config(backends)
    config["virtual_servers"][1]["tool_mappings"].append(
        {"tool_name": "no-such-tool", "backend_server_path": "/everything-sse"}
    )
    path = tmp_path / "sw.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run("check", "--config", str(path))
    assert result.returncode == 1
    assert "no tool named 'no-such-tool'" in result.stdout
    assert "/virtual/support/mcp" in result.stdout


def test_invalid_config_is_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"backends": [{"path": "/x", "transport": "carrier-pigeon"}], "extra": 1}))
    for command in ("check", "serve"):
        result = run(command, "--config", str(path))
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2, result.stderr
        assert all(line.startswith(f"slicewire: {path}: ") for line in lines)
        assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"slicewire: {tmp_path / 'nope.yaml'}: cannot read: No such file or directory"


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        path = tmp_path / "sw.yaml"
        path.write_text(yaml.safe_dump({"listen": {"port": port}}))
        for command in (["serve"], ["up", "--recorder-listen", f"127.0.0.1:{free_port()}"]):
            result = run(*command, "--config", str(path))
            assert result.returncode == 1, result.stderr
            assert result.stderr.strip().splitlines() == [
                f"slicewire: cannot listen on 127.0.0.1:{port}: the address is in use "
                "(another process listens there; choose another port)"
            ], command


def test_serve_says_where_it_listens_once_it_does(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "sw.yaml"
    config = {"listen": {"port": port}, "virtual_servers": [], "auth": {"state_db": str(tmp_path / "state.db")}}
    path.write_text(yaml.safe_dump(config))
    proc = Proc([sys.executable, "-m", "proxy", "serve", "--config", str(path)], tmp_path / "serve.log")
    try:
        line = f"slicewire: gateway listening on http://127.0.0.1:{port} (virtual servers: none yet)"
        wait_until(lambda: line in proc.output(), 30, what="the listening line")
        # Said only once the port accepts: the very next request is answered.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.stop()
    assert proc.output().count("listening on") == 1


def test_check_does_not_wait_for_a_backend_that_refused(tmp_path: Path) -> None:
    # A refused connection is an answer: `check` reports it at once, not after --timeout.
    path = tmp_path / "sw.yaml"
    refused = f"http://127.0.0.1:{free_port()}/mcp"
    config = {"backends": [{"path": "/down", "transport": "streamable-http", "url": refused, "timeout_s": 30}]}
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    result = run("check", "--config", str(path), "--timeout", "60", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert "connection refused" in report["backends"]["/down"]["error"]
    assert elapsed < 20, f"check took {elapsed:.1f} s for a refused backend"

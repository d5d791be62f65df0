"""`slicewire up` (the README's run command): gateway and recorder together, and a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from recorder import connect
from tests.support.procs import Proc, free_port, http_ready, port_open, wait_until

pytestmark = pytest.mark.e2e


def test_up_records_and_stops_cleanly(backends: dict[str, str], tmp_path: Path) -> None:
    gateway_port, recorder_port = free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": gateway_port},
        "recorder": {"spool_dir": str(tmp_path / "spool")},
        "backends": [{"path": "/beta", "transport": "streamable-http", "url": backends["beta"]}],
        "virtual_servers": [
            {
                "path": "/v",
                "server_name": "V",
                "public": True,
                "tool_mappings": [{"tool_name": "get_issue", "backend_server_path": "/beta"}],
            }
        ],
    }
    path = tmp_path / "up.yaml"
    path.write_text(yaml.safe_dump(config))
    db = tmp_path / "traces.duckdb"
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}  # where recorders note their trace files
    up = Proc(
        [sys.executable, "-m", "proxy", "up", "--config", str(path), "--db", str(db),
         "--recorder-listen", f"127.0.0.1:{recorder_port}"],
        tmp_path / "up.log",
        env=state,
    )  # fmt: skip
    try:
        wait_until(http_ready(f"http://127.0.0.1:{gateway_port}/readyz"), 60, what="gateway of slicewire up")
        wait_until(port_open(recorder_port), 30, what="recorder of slicewire up")
        for line in (
            f"slicewire: recorder listening on 127.0.0.1:{recorder_port}, storing in {db} (token: ",
            f"slicewire: gateway listening on http://127.0.0.1:{gateway_port} (virtual servers: /v/mcp)",
        ):
            wait_until(lambda line=line: line in up.output(), 10, what=line)
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "get_issue", "arguments": {"number": 4}, "_meta": meta}}  # fmt: skip
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                   "mcp-method": "tools/call", "mcp-name": "get_issue"}  # fmt: skip
        answer = httpx.post(f"http://127.0.0.1:{gateway_port}/v/mcp", json=body, headers=headers, timeout=30).json()
        assert answer["result"]["structuredContent"]["number"] == 4
        up.process.send_signal(signal.SIGTERM)  # the gateway flushes its spans, then the recorder closes the file
        up.process.wait(60)
        assert not port_open(recorder_port)(), "the recorder outlived slicewire up"
    finally:
        up.stop()
    log = up.output()
    assert "recorder stopped" in log and "Traceback" not in log
    with connect(str(db)) as rec:
        assert rec.rows("SELECT name FROM traces WHERE name = 'tools/call get_issue'") == [
            {"name": "tools/call get_issue"}
        ]
        session = rec.rows("SELECT session_id FROM traces WHERE name = 'tools/call get_issue'")[0]["session_id"]

    # The recorder is gone: `traces` names the file it stored in.
    gone = cli(state, "traces", "--from", f"127.0.0.1:{recorder_port}")
    assert gone.returncode == 1
    assert gone.stderr.strip() == (
        f"slicewire: no recorder answers at 127.0.0.1:{recorder_port}; the recorder there last stored its spans "
        f"in {db}: add --from {db}"
    )
    # A session column, a session filter, and an empty result that says why.
    listed = cli(state, "traces", "--from", str(db), "--session", session)
    assert listed.returncode == 0 and session in listed.stdout and "session" in listed.stdout
    assert "tools/call get_issue" in listed.stdout
    empty = cli(state, "traces", "--from", str(db), "--session", "no-such-session")
    assert empty.returncode == 0 and empty.stdout == ""
    assert "match --session no-such-session; drop a filter" in empty.stderr


def test_up_with_two_workers_records_both(backends: dict[str, str], tmp_path: Path) -> None:
    """`slicewire up --workers 2`: two gateway processes, each with its own helper, feeding one recorder;
    SIGTERM drains both workers, then the recorder closes the file with every call in it."""
    gateway_port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": gateway_port},
        "recorder": {"spool_dir": str(tmp_path / "spool")},
        "backends": [{"path": "/beta", "transport": "streamable-http", "url": backends["beta"]}],
        "virtual_servers": [{"path": "/v", "server_name": "V", "public": True,
                             "tool_mappings": [{"tool_name": "get_issue", "backend_server_path": "/beta"}]}],
    }  # fmt: skip
    path = tmp_path / "up.yaml"
    path.write_text(yaml.safe_dump(config))
    db = tmp_path / "traces.duckdb"
    up = Proc(
        [sys.executable, "-m", "proxy", "up", "--config", str(path), "--db", str(db),
         "--recorder-listen", f"127.0.0.1:{free_port()}", "--workers", "2"],
        tmp_path / "up.log",
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    try:
        wait_until(lambda: "2 workers)" in up.output(), 60, what="both workers listening")
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}  # fmt: skip
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                   "mcp-method": "tools/call", "mcp-name": "get_issue"}  # fmt: skip
        for n in range(20):  # a new connection each: the kernel spreads them over the workers
            body = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": "get_issue", "arguments": {"number": n}, "_meta": meta}}  # fmt: skip
            answer = httpx.post(f"http://127.0.0.1:{gateway_port}/v/mcp", json=body, headers=headers, timeout=30)
            assert answer.json()["result"]["structuredContent"]["number"] == n
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(60) == 0
    finally:
        up.stop()
    assert "Traceback" not in up.output()
    with connect(str(db)) as rec:
        rows = rec.rows("SELECT gateway_instance FROM spans WHERE kind = 'SERVER' AND name = 'tools/call get_issue'")
    assert len(rows) == 20
    assert len({row["gateway_instance"] for row in rows}) == 2  # both workers served, both recorded


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env, "COLUMNS": "250"},
    )  # fmt: skip


def test_a_second_recorder_on_a_held_port_is_refused(tmp_path: Path) -> None:
    # gRPC would share the port (SO_REUSEPORT) and split the spans between two files.
    port = free_port()
    first = Proc(
        [
            sys.executable,
            "-m",
            "proxy",
            "recorder",
            "--db",
            str(tmp_path / "a.duckdb"),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        tmp_path / "a.log",
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )
    try:
        wait_until(lambda: "recorder listening on" in first.output(), 30, what="the first recorder")
        second = cli(
            {"XDG_STATE_HOME": str(tmp_path / "state")},
            "recorder", "--db", str(tmp_path / "b.duckdb"), "--listen", f"127.0.0.1:{port}",
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"slicewire: cannot listen on 127.0.0.1:{port}: the address is in use "
            "(another process listens there; choose another with --listen)"
        )
        assert "listening on" not in second.stderr
        assert not (tmp_path / "b.duckdb").exists()  # refused before the store was opened
        assert first.alive()
    finally:
        first.stop()

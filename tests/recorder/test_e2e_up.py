"""`slicewire up` (the README's run command): gateway and recorder together, and a clean stop."""

from __future__ import annotations

import signal
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
    up = Proc(
        [sys.executable, "-m", "proxy", "up", "--config", str(path), "--db", str(db),
         "--recorder-listen", f"127.0.0.1:{recorder_port}"],
        tmp_path / "up.log",
    )  # fmt: skip
    try:
        wait_until(http_ready(f"http://127.0.0.1:{gateway_port}/readyz"), 60, what="gateway of slicewire up")
        wait_until(port_open(recorder_port), 30, what="recorder of slicewire up")
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

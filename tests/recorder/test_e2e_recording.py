"""A real gateway recording to a real recorder process and DuckDB file, with real clients and backends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import mcp.types as mt
import pytest
from mcp.shared.exceptions import MCPError

from recorder import connect
from tests.proxy.clients import fastmcp_client, sdk_session, text_of
from tests.support.gateway import RunningGateway
from tests.support.procs import free_port, wait_until
from tests.support.recorder import RunningRecorder

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SECRET = "hunter2-Zq8xV3"  # must never reach the trace file
BEARER = "sk-live-9f8e7d6c5b4a39281706"


def recording_config(backends: dict[str, str], target: str, spool: Path) -> dict[str, Any]:
    return {
        "recorder": {"target": target, "spool_dir": str(spool), "flush_interval_ms": 50},
        "backends": [
            {"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"]},
            {"path": "/everything", "transport": "streamable-http", "url": backends["everything"]},
        ],
        "virtual_servers": [
            {"path": "/virtual/rec", "server_name": "Recorded", "tool_mappings": [
                {"tool_name": "echo", "backend_server_path": "/alpha"},
                {"tool_name": "login", "backend_server_path": "/alpha"},
                {"tool_name": "progress", "backend_server_path": "/alpha"},
                {"tool_name": "echo", "backend_server_path": "/everything", "alias": "shout"}]}
        ],
    }  # fmt: skip


def sent(gw: RunningGateway) -> dict[str, int]:
    return gw.status()["recorder"]


def loaded(pid: int, *packages: str) -> list[str]:
    """Which of these package directories a process has shared objects mapped from."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [p for p in packages if p in maps]


async def test_session_through_two_backends_is_recorded(backends: dict[str, str], tmp_path: Path) -> None:
    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    gw = RunningGateway(recording_config(backends, rec.target, tmp_path / "spool"), tmp_path)
    try:
        async with sdk_session(gw.url("/virtual/rec")) as session:
            session_id = None
            assert text_of(await session.call_tool("login", {"user": "ada", "password": SECRET})) == "welcome ada"
            assert "two" in text_of(await session.call_tool("shout", {"message": f"two Bearer {BEARER}"}))
            with pytest.raises(MCPError):
                await session.call_tool("delete_repo", {"repo": "x"})
        headers = {"authorization": f"Bearer {BEARER}", "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}
        async with fastmcp_client(gw.url("/virtual/rec"), headers=headers) as client:
            await client.call_tool("progress", {"steps": 2})
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")
        # Shipping is the helper's: the gateway's own process maps none of gRPC, DuckDB or Arrow (its RSS).
        assert not loaded(gw.proc.pid, "/grpc/", "/duckdb/", "/pyarrow/")
        assert loaded(gw.status()["recorder"]["helper_pid"], "/grpc/") == ["/grpc/"]
    finally:
        gw.stop()
        rec.stop()

    with connect(str(rec.db)) as r:
        calls = r.rows("SELECT * FROM spans WHERE kind = 'SERVER' AND method = 'tools/call' ORDER BY start_ns")
        assert [c["name"] for c in calls] == [
            "tools/call login", "tools/call shout", "tools/call delete_repo", "tools/call progress"]  # fmt: skip
        session_id = calls[0]["session_id"]
        assert session_id and calls[1]["session_id"] == session_id  # one legacy session, one key
        echo = calls[0]
        tree = r.rows(f"SELECT * FROM waterfall WHERE trace_id = '{echo['trace_id']}' ORDER BY start_ns, depth")
        assert [(s["name"], s["kind"], s["depth"]) for s in tree] == [
            ("tools/call login", "SERVER", 0), ("parse", "INTERNAL", 1), ("slice", "INTERNAL", 1),
            ("tools/call login", "CLIENT", 1), ("respond", "INTERNAL", 1)]  # fmt: skip
        upstream = tree[3]
        assert upstream["backend"] == "/alpha" and upstream["parent_span_id"] == tree[0]["span_id"]
        attrs = r.rows(f"""SELECT attrs->>'$."mcp.method.name"' AS method, attrs->>'$."gen_ai.tool.name"' AS tool,
                           attrs->>'$."gen_ai.operation.name"' AS op, attrs->>'$."mcp.session.id"' AS sid,
                           attrs->>'$."jsonrpc.request.id"' AS rid, attrs->>'$."mcp.protocol.version"' AS version
                           FROM spans WHERE span_id = '{echo['span_id']}'""")[0]  # fmt: skip
        assert attrs == {"method": "tools/call", "tool": "login", "op": "execute_tool", "sid": session_id,
                         "rid": echo["request_id"], "version": "2025-11-25"}  # fmt: skip
        assert '"password":"[REDACTED]"' in echo["request_payload"]
        shout = calls[1]
        assert shout["backend"] == "/everything" and "[REDACTED]" in shout["request_payload"]
        # server-everything speaks 2025-11-25: the upstream span carries the gateway's session with it, as a key.
        hop = r.rows(f"SELECT attrs FROM spans WHERE trace_id = '{shout['trace_id']}' AND kind = 'CLIENT'")[0]
        hop_attrs = json.loads(hop["attrs"])
        assert hop_attrs["mcp.protocol.version"] == "2025-11-25" and hop_attrs["server.address"] == "127.0.0.1"
        assert hop_attrs["mcp.session.id"].startswith("s-") and hop_attrs["mcp.session.id"] != session_id
        assert hop_attrs["jsonrpc.request.id"] and hop_attrs["slicewire.backend"] == "/everything"
        hidden = calls[2]
        assert hidden["status"] == "ERROR" and hidden["error_code"] == -32602
        upstream_of_hidden = (
            f"SELECT count(*) AS n FROM spans WHERE trace_id = '{hidden['trace_id']}' AND kind = 'CLIENT'"
        )
        assert r.rows(upstream_of_hidden) == [{"n": 0}]  # never forwarded
        progress = calls[3]
        assert progress["trace_id"] == "ab" * 16 and progress["parent_span_id"] == "cd" * 8  # caller's trace continued
        assert progress["protocol_era"] == "modern" and progress["protocol_version"] == "2026-07-28"
        kids = r.rows(f"SELECT name FROM waterfall WHERE trace_id = '{'ab' * 16}' AND depth = 2")
        assert [k["name"] for k in kids] == ["notifications/progress", "notifications/progress"]
        init = r.rows(
            f"SELECT count(*) AS n FROM spans WHERE session_id = '{session_id}' "
            "AND method = 'initialize' AND kind = 'SERVER'"
        )
        assert init == [{"n": 1}]
    assert_never_stored(tmp_path, SECRET, BEARER)


async def test_a_clients_answer_is_named_by_the_request_it_answers(backends: dict[str, str], tmp_path: Path) -> None:
    """server-everything elicits mid-call; the legacy client's answer, POSTed back, is a span of its own
    named `elicitation/create result` (not an anonymous "(result)"), in the session's trace."""
    config = recording_config(backends, "", tmp_path / "spool")
    mapping = {"tool_name": "trigger-elicitation-request", "backend_server_path": "/everything", "alias": "confirm"}
    config["virtual_servers"][0]["tool_mappings"].append(mapping)
    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    config["recorder"]["target"] = rec.target
    gw = RunningGateway(config, tmp_path)

    async def decline(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        return mt.ElicitResult(action="decline")

    try:
        async with sdk_session(gw.url("/virtual/rec"), elicitation_callback=decline) as session:
            assert not (await session.call_tool("confirm", {})).is_error
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")
    finally:
        gw.stop()
        rec.stop()
    with connect(str(rec.db)) as r:
        answers = r.rows("SELECT name, method, message_kind, session_id, attrs FROM spans WHERE kind = 'SERVER' "
                         "AND message_kind = 'result'")  # fmt: skip
        call = r.rows("SELECT session_id FROM spans WHERE kind = 'SERVER' AND name = 'tools/call confirm'")
    assert [(a["name"], a["method"]) for a in answers] == [("elicitation/create result", "elicitation/create")]
    assert answers[0]["session_id"] == call[0]["session_id"]
    assert json.loads(answers[0]["attrs"])["mcp.method.name"] == "elicitation/create"


def assert_never_stored(directory: Path, *secrets: str) -> None:
    raw = b"".join(p.read_bytes() for p in directory.glob("traces.duckdb*"))
    assert raw, "no trace file written"
    for secret in secrets:
        assert secret.encode() not in raw


def calls_made(gw: RunningGateway, n: int, start: int) -> None:
    body = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}}  # fmt: skip
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "tools/call", "mcp-name": "echo"}  # fmt: skip
    with httpx.Client(timeout=30) as http:
        for i in range(start, start + n):
            body["id"] = i
            body["params"]["arguments"] = {"text": f"call-{i}"}  # type: ignore[index]
            response = http.post(gw.url("/virtual/rec"), json=body, headers=headers)
            assert response.json()["result"]["structuredContent"] == {"result": f"call-{i}"}


def test_recorder_killed_and_restarted_loses_nothing(backends: dict[str, str], tmp_path: Path) -> None:
    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path, port=free_port())
    gw = RunningGateway(recording_config(backends, rec.target, tmp_path / "spool"), tmp_path)
    try:
        calls_made(gw, 40, 0)
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="first spans sent")
        rec.kill()  # SIGKILL: no goodbye
        calls_made(gw, 40, 40)  # the gateway keeps serving; spans go to the spool
        wait_until(lambda: sent(gw)["spooled"] > 0, 20, what="spans spooled while the recorder is down")
        rec.start()
        calls_made(gw, 40, 80)
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"], 30, what="spool re-sent")
        counters = sent(gw)
        assert counters["dropped"] == 0 and counters["resent"] >= counters["spooled"] > 0
    finally:
        gw.stop()
        rec.stop()
    with connect(str(rec.db)) as r:
        roots = r.rows("SELECT request_id FROM spans WHERE kind = 'SERVER' AND name = 'tools/call echo'")
        assert sorted(int(x["request_id"]) for x in roots) == list(range(120))  # every call, once
        per_trace = r.rows("SELECT trace_id, count(*) AS n FROM spans WHERE trace_id IN "
                           "(SELECT trace_id FROM spans WHERE name = 'tools/call echo' AND kind = 'SERVER') "
                           "GROUP BY trace_id")  # fmt: skip
        assert len(per_trace) == 120 and {t["n"] for t in per_trace} == {5}


def test_gateway_serves_without_a_recorder(backends: dict[str, str], tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"  # nothing listens here
    gw = RunningGateway(recording_config(backends, target, tmp_path / "spool"), tmp_path)
    try:
        calls_made(gw, 10, 0)
        wait_until(lambda: sent(gw)["spooled"] > 0, 20, what="spans spooled")
        assert sent(gw)["sent"] == 0
        assert (tmp_path / "spool" / "spans.spool").stat().st_size > 0
    finally:
        gw.stop()


def test_cli_reads_a_recording(backends: dict[str, str], tmp_path: Path) -> None:
    import json
    import subprocess

    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    gw = RunningGateway(recording_config(backends, rec.target, tmp_path / "spool"), tmp_path)
    try:
        calls_made(gw, 3, 0)
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60)

        listed = cli("traces", "--from", rec.target, "--tool", "echo", "--json")
        assert listed.returncode == 0, listed.stderr
        traces = json.loads(listed.stdout)
        assert len(traces) == 3 and all(t["backends"] == "/alpha" for t in traces)
        shown = cli("show", traces[0]["trace_id"], "--from", rec.target)
        assert shown.returncode == 0 and "tools/call echo [/alpha]" in shown.stdout and "respond" in shown.stdout
        session = cli("session", traces[0]["session_id"], "--from", rec.target, "--json")
        assert session.returncode == 0 and len(json.loads(session.stdout)["traces"]) == 3
        missing = cli("show", "0" * 32, "--from", rec.target)
        assert missing.returncode == 1 and missing.stderr.startswith("slicewire: no trace")
        bad = cli("show", "xyz", "--from", rec.target)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        down = cli("traces", "--from", f"127.0.0.1:{free_port()}")
        assert down.returncode == 1 and "no recorder answers" in down.stderr
    finally:
        gw.stop()
        rec.stop()


async def test_notification_to_a_session_joins_its_trace(backends: dict[str, str], tmp_path: Path) -> None:
    from tests.proxy.clients import Notifications

    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    config = recording_config(backends, rec.target, tmp_path / "spool")
    gw = RunningGateway(config, tmp_path)
    seen = Notifications()
    try:
        async with sdk_session(gw.url("/virtual/rec"), message_handler=seen.handler) as session:
            await session.call_tool("echo", {"text": "x"})
            config["virtual_servers"][0]["tool_mappings"].pop()  # drop "shout": the slice changes
            gw.write_config({"listen": gw.config["listen"], **config})
            await seen.wait_for("notifications/tools/list_changed")
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")
    finally:
        gw.stop()
        rec.stop()
    with connect(str(rec.db)) as r:
        [note] = r.rows("SELECT * FROM spans WHERE method = 'notifications/tools/list_changed' AND kind = 'SERVER'")
        assert note["direction"] == "gateway->client"
        session_id = note["session_id"]
        initialize = r.rows(f"SELECT session_id FROM spans WHERE method = 'initialize' AND session_id = '{session_id}'")
        assert initialize, "the notification carries the session that received it"
        others = r.rows(f"SELECT DISTINCT trace_id FROM spans WHERE session_id = '{session_id}' "
                        "AND method = 'notifications/initialized'")  # fmt: skip
        assert others == [{"trace_id": note["trace_id"]}]  # the session's own trace


async def test_each_run_of_a_stateless_client_is_its_own_session(backends: dict[str, str], tmp_path: Path) -> None:
    """Two runs of the same fastmcp client (same name and version, same caller) are two sessions, not one;
    a client that names its run in OTel baggage gets that name."""
    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    gw = RunningGateway(recording_config(backends, rec.target, tmp_path / "spool"), tmp_path)
    try:
        url = gw.url("/virtual/rec")
        for run in ("first", "second"):
            async with fastmcp_client(url) as client:  # opens with server/discover: a new run
                for i in range(2):
                    await client.call_tool("echo", {"text": f"{run}-{i}"})
        async with fastmcp_client(url, headers={"baggage": "session.id=nightly-42"}) as client:
            await client.call_tool("echo", {"text": "named"})
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")
    finally:
        gw.stop()
        rec.stop()
    with connect(str(rec.db)) as r:
        calls = r.rows(
            "SELECT session_id, request_payload FROM spans WHERE kind = 'SERVER' AND method = 'tools/call' "
            "ORDER BY start_ns"
        )
    sessions = [c["session_id"] for c in calls]
    assert len(sessions) == 5
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3]
    assert sessions[4] == "nightly-42"
    assert all(s.startswith("mcp-") for s in sessions[:4]), sessions  # fastmcp introduces itself as "mcp"


def test_credential_formats_reach_no_output(backends: dict[str, str], tmp_path: Path) -> None:
    """AWS, Google Cloud, Azure, Slack, Stripe, GitHub keys, private key blocks, JWTs and Bearer
    credentials in a call's arguments and result: redacted in the spool (recorder down), the DuckDB file,
    a Parquet export and the OTLP export's encoded spans."""
    import subprocess

    import pyarrow.parquet as pq
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from recorder._otlp import COLUMNS, to_otel
    from tests.support.credentials import CREDENTIALS, secret_parts

    port = free_port()
    target = f"127.0.0.1:{port}"
    gw = RunningGateway(recording_config(backends, target, tmp_path / "spool"), tmp_path)  # no recorder yet
    secrets = secret_parts()
    try:
        text = " | ".join(CREDENTIALS.values())
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}, "_meta": meta}}  # fmt: skip
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                   "mcp-method": "tools/call", "mcp-name": "echo"}  # fmt: skip
        answer = httpx.post(gw.url("/virtual/rec"), json=body, headers=headers, timeout=30).json()
        assert answer["result"]["structuredContent"]["result"] == text  # the client gets its answer unredacted
        wait_until(lambda: sent(gw)["spooled"] > 0, 30, what="spans spooled while the recorder is down")
        spool = b"".join(p.read_bytes() for p in (tmp_path / "spool").iterdir())
        for secret in secrets:
            assert secret.encode() not in spool, secret
        rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path, port=port)
        try:
            wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"], 60, what="the spool drained")
        finally:
            gw.stop()
            rec.stop()
    finally:
        gw.stop()
    assert_never_stored(tmp_path, *secrets)
    with connect(str(tmp_path / "traces.duckdb")) as r:
        rows = r.rows(f"SELECT {COLUMNS} FROM spans WHERE tool_name = 'echo' OR method = 'tools/call'")
        stored = str(r.rows("SELECT request_payload, response_payload, attrs FROM spans"))
    assert rows and "[REDACTED]" in stored
    for secret in secrets:
        assert secret not in stored, secret
    otlp = encode_spans(to_otel(rows, payloads=True)).SerializeToString()
    parquet = tmp_path / "session.parquet"
    export = subprocess.run(
        [sys.executable, "-m", "proxy", "export", str(parquet), "--from", str(tmp_path / "traces.duckdb")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    exported = str(pq.read_table(parquet).to_pylist())
    for secret in secrets:
        assert secret.encode() not in otlp, secret
        assert secret not in exported, secret

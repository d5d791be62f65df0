"""Recorded spans exported to a real OTLP receiver (Arize Phoenix, in a network namespace of its own)
over both protocols, read back through Phoenix's REST API; and the recorder's continuous export
surviving a receiver stopped mid-export and its own restart."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from recorder import SpanStore, connect
from tests.proxy.clients import sdk_session, text_of
from tests.recorder.test_e2e_recording import BEARER, SECRET, assert_never_stored
from tests.support import phoenix
from tests.support.gateway import RunningGateway
from tests.support.procs import ROOT, wait_until
from tests.support.recorder import RunningRecorder

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

WHY = phoenix.unavailable()
if WHY is not None:
    pytestmark.append(pytest.mark.skip(reason=WHY))

SLICEWIRE = [sys.executable, "-m", "proxy"]
TOTAL = 3_000  # spans for the continuous export: 300 requests of 10, so the receiver can stop mid-way


@pytest.fixture(scope="module")
def ns() -> Iterator[phoenix.NetNamespace]:
    space = phoenix.NetNamespace()
    try:
        yield space
    finally:
        space.close()


@pytest.fixture(scope="module")
def receiver(ns: phoenix.NetNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[phoenix.Phoenix]:
    server = phoenix.Phoenix(ns, tmp_path_factory.mktemp("phoenix"))
    try:
        yield server
    finally:
        server.stop()


def config(backends: dict[str, str], target: str, spool: Path) -> dict[str, Any]:
    return {
        "recorder": {"target": target, "spool_dir": str(spool), "flush_interval_ms": 50},
        "backends": [
            {"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"]},
            {"path": "/beta", "transport": "streamable-http", "url": backends["beta"]},
        ],
        "virtual_servers": [
            {"path": "/virtual/otel", "server_name": "Exported", "tool_mappings": [
                {"tool_name": "login", "backend_server_path": "/alpha"},
                {"tool_name": "fail", "backend_server_path": "/alpha"},
                {"tool_name": "get_issue", "backend_server_path": "/beta"}]}
        ],
    }  # fmt: skip


async def one_session(url: str) -> None:
    """Two backends; a JSON-RPC error (a tool outside the slice) and a tool error (isError)."""
    async with sdk_session(url) as session:
        assert text_of(await session.call_tool("login", {"user": "ada", "password": SECRET})) == "welcome ada"
        assert '"number":7' in text_of(await session.call_tool("get_issue", {"number": 7})).replace(" ", "")
        assert (await session.call_tool("fail", {"message": f"Bearer {BEARER}"})).is_error
        with pytest.raises(MCPError):
            await session.call_tool("delete_repo", {"repo": "x"})


@pytest.fixture(scope="module")
def recording(backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trace file holding two sessions recorded by a real gateway and recorder (then stopped)."""
    workdir = tmp_path_factory.mktemp("otlp-recording")
    rec = RunningRecorder(workdir / "traces.duckdb", workdir)
    gw = RunningGateway(config(backends, rec.target, workdir / "spool"), workdir)
    try:
        for _ in range(2):
            anyio.run(one_session, gw.url("/virtual/otel"))

        def shipped() -> bool:
            counters = gw.status()["recorder"]
            return counters["sent"] >= counters["emitted"] > 0

        wait_until(shipped, 20, what="spans sent")
    finally:
        gw.stop()
        rec.stop()
    assert_never_stored(workdir, SECRET, BEARER)
    return rec.db


def recorded(db: Path, where: str) -> list[dict[str, Any]]:
    with connect(str(db)) as r:
        return r.rows(f"SELECT * FROM spans WHERE {where} ORDER BY start_ns")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_a_recorded_session_lands_in_phoenix_as_recorded(
    protocol: str, recording: Path, ns: phoenix.NetNamespace, receiver: phoenix.Phoenix, backends: dict[str, str]
) -> None:
    with connect(str(recording)) as r:
        sessions = [row["session_id"] for row in r.rows("SELECT session_id FROM sessions ORDER BY first_ns")]
    session = sessions[0 if protocol == "http" else 1]  # Phoenix keeps the first copy of a span id
    project = f"slicewire-{protocol}"
    endpoint = receiver.http if protocol == "http" else receiver.grpc
    done = ns.run(
        [*SLICEWIRE, "export", "--from", str(recording), "--session", session, "--otlp", endpoint,
         "--protocol", protocol],
        env={"OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = recorded(recording, f"session_id = '{session}'")
    assert f"{len(spans)} spans exported" in done.stderr

    def arrived() -> list[dict[str, Any]] | None:
        got = receiver.spans(project)
        return got if len(got) >= len(spans) else None

    wait_until(arrived, 30, what=f"{len(spans)} spans in Phoenix")
    got = {s["span_id"]: s for s in receiver.spans(project)}
    assert set(got) == {s["span_id"] for s in spans}  # no gaps, nothing else
    for span in spans:
        out = got[span["span_id"]]
        assert out["trace_id"] == span["trace_id"]
        assert (out["parent_span_id"] or None) == span["parent_span_id"]
        assert out["name"] == span["name"]
        # (Phoenix keeps no OTel span kind: its REST API says INTERNAL for all; test_otlp.py checks kinds.)
        assert abs(int(out["start_time_unix_nano"]) - span["start_ns"]) < 1000  # Phoenix keeps microseconds
    by_name = {}
    for span in spans:
        if span["kind"] != "INTERNAL":
            by_name.setdefault((span["name"], span["kind"]), got[span["span_id"]])
    login = phoenix.attributes(by_name[("tools/call login", "SERVER")])
    assert login["mcp.method.name"] == "tools/call" and login["gen_ai.tool.name"] == "login"
    assert login["gen_ai.operation.name"] == "execute_tool" and login["mcp.session.id"] == session
    assert login["mcp.protocol.version"] == "2025-11-25" and login["network.transport"] == "tcp"
    assert login["jsonrpc.request.id"]
    assert login["client.address"] == "127.0.0.1" and login["client.port"] > 0  # the caller (the SDK client)
    assert login["network.protocol.version"] == "1.1"
    assert "gen_ai.tool.call.arguments" not in login  # payloads are opt-in
    assert by_name[("tools/call login", "SERVER")]["status"]["code"] == 0  # UNSET on success
    upstream = phoenix.attributes(by_name[("tools/call get_issue", "CLIENT")])
    assert upstream["gen_ai.tool.name"] == "get_issue" and upstream["slicewire.backend"] == "/beta"
    # The backend as reached — its URL's host and port, not its configured path — in its own session.
    beta = urlsplit(backends["beta"])
    assert (upstream["server.address"], upstream["server.port"]) == (beta.hostname, beta.port)
    assert upstream["network.transport"] == "tcp" and upstream["mcp.protocol.version"] == "2026-07-28"
    assert "mcp.session.id" not in upstream  # a 2026-07-28 backend has no sessions (test_e2e_recording: one that has)
    assert upstream["jsonrpc.request.id"] and upstream["jsonrpc.request.id"] != login["jsonrpc.request.id"]
    refused = by_name[("tools/call delete_repo", "SERVER")]
    assert refused["status"]["code"] == 2 and phoenix.attributes(refused)["error.type"] == "-32602"
    assert phoenix.attributes(refused)["rpc.response.status_code"] == "-32602"
    failed = by_name[("tools/call fail", "SERVER")]
    assert failed["status"]["code"] == 2 and phoenix.attributes(failed)["error.type"] == "tool_error"
    headers = phoenix.attributes(by_name[("tools/call login", "SERVER")])
    assert headers["http.request.header.content-type"] == ["application/json"]
    everything = "".join(receiver.ns.get(f"{receiver.http}/v1/projects/{project}/spans/otlpv1?limit=1000")[1])
    assert SECRET not in everything and BEARER not in everything


async def test_payloads_are_opt_in_and_redacted(
    recording: Path, ns: phoenix.NetNamespace, receiver: phoenix.Phoenix, tmp_path: Path
) -> None:
    """With --otlp-payloads, tools/call spans carry arguments and results — as redacted when recorded.
    (A copy of one trace with fresh ids: Phoenix keeps only the first copy of a span or trace id.)"""
    trace = recorded(recording, "kind = 'SERVER' AND name = 'tools/call login'")[0]["trace_id"]
    copy = tmp_path / "copy.duckdb"
    with connect(str(recording)) as r:
        rows = r.rows(f"SELECT * FROM spans WHERE trace_id = '{trace}'")
    fresh = {row["span_id"]: f"{int(row['span_id'], 16) ^ 0xFFFF:016x}" for row in rows}
    store = SpanStore(copy)
    con = store.cursor()
    for row in rows:
        row["trace_id"] = f"{int(row['trace_id'], 16) ^ 0xFFFF:032x}"
        row["span_id"] = fresh[row["span_id"]]
        row["parent_span_id"] = fresh.get(row["parent_span_id"])
        row.pop("seq")
        names = ", ".join(row)
        con.execute(f"INSERT INTO spans ({names}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))
    con.close()
    store.close()
    done = ns.run(
        [*SLICEWIRE, "export", "--from", str(copy), "--otlp", receiver.http, "--protocol", "http", "--otlp-payloads"],
        env={"OTEL_RESOURCE_ATTRIBUTES": "openinference.project.name=slicewire-payloads"},
    )
    assert done.returncode == 0, done.stderr
    wait_until(lambda: len(receiver.spans("slicewire-payloads")) >= len(rows), 30, what="spans in Phoenix")
    login = next(phoenix.attributes(s) for s in receiver.spans("slicewire-payloads") if not s["parent_span_id"])
    assert '"user":"ada"' in login["gen_ai.tool.call.arguments"]
    assert '"password":"[REDACTED]"' in login["gen_ai.tool.call.arguments"] and SECRET not in str(login)
    assert "welcome ada" in login["gen_ai.tool.call.result"]


@pytest.mark.timeout(400)
def test_continuous_export_survives_a_receiver_stopped_mid_export(tmp_path: Path) -> None:
    """The recorder exports what it stores, in batches, from a persisted position. The receiver is
    stopped (SIGSTOP: nothing answers) after the first batches landed, and the recorder is restarted
    while it is stopped; once the receiver is back, every span is there exactly once."""
    sys.path.insert(0, str(ROOT / "bench"))
    from records import tools_call

    from proxy.recording._redact import Redactor
    from proxy.recording.helper._spans import BatchBuilder

    db = tmp_path / "feed.duckdb"
    store = SpanStore(db)
    now = time.time_ns()
    for part in range(TOTAL // 1000):  # 200 traces of 5 spans per batch
        builder = BatchBuilder(Redactor())
        for i in range(part * 200, part * 200 + 200):
            builder.add(tools_call(i, now + i * 1000, session=f"s{part}"))
        store.write(builder.batch("gw-feed")).result()
    store.close()
    with connect(str(db)) as r:
        expected = {row["span_id"] for row in r.rows("SELECT span_id FROM spans")}
    assert len(expected) == TOTAL
    ns = phoenix.NetNamespace()  # its own: the module's Phoenix keeps the standard ports of the other
    receiver = phoenix.Phoenix(ns, tmp_path)
    project = "slicewire-feed"
    env = {"OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"}
    command = ns.wrap([*SLICEWIRE, "recorder", "--db", str(db), "--listen", "127.0.0.1:7320",
                       "--otlp", receiver.http, "--otlp-protocol", "http", "--otlp-batch", "10"])  # fmt: skip
    recorder = phoenix.Process(command, tmp_path / "recorder.log", env)
    try:
        wait_until(lambda: len(receiver.spans(project)) > 0, 60, 0.2, what="the first batches in Phoenix")
        receiver.pause()  # mid-export: most spans are still to go
        wait_until(lambda: "failed; retrying" in recorder.log(), 60, what="the recorder noticing")
        recorder.stop()  # the position so far is in the trace file
        with connect(str(db)) as r:
            position = r.rows("SELECT position, exported FROM exports")[0]
        assert 0 < position["exported"] < TOTAL
        recorder = phoenix.Process(command, tmp_path / "recorder.log", env)  # resumes, receiver still stopped
        wait_until(lambda: recorder.log().count("failed; retrying") >= 2, 60, what="the new recorder retrying")
        receiver.resume()
        wait_until(lambda: len(receiver.spans(project)) >= TOTAL, 240, 1.0, what=f"all {TOTAL} spans in Phoenix")
        got = [s["span_id"] for s in receiver.spans(project)]
        assert len(got) == len(set(got)) == TOTAL and set(got) == expected  # no gaps, no duplicates
    finally:
        recorder.stop()
        receiver.stop()
        ns.close()
    with connect(str(db)) as r:
        final = r.rows("SELECT position, exported FROM exports")[0]
    assert final["exported"] >= TOTAL and final["position"] == max_seq(db)


def max_seq(db: Path) -> int:
    with connect(str(db)) as r:
        return int(r.rows("SELECT max(seq) AS m FROM spans")[0]["m"])

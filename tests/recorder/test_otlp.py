"""Recorded spans as OTLP: the request the exporters send (encoded with their own encoder) carries
the recorded ids, kinds, statuses and semantic-convention attributes; the continuous feed keeps its
position in the trace file; bad CLI input gets one line and exit 2."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from proto import pb
from proxy.recording import Record, new_hop
from proxy.recording._redact import Redactor
from proxy.recording.helper._spans import BatchBuilder
from recorder import SpanStore, connect
from recorder._feed import OtlpFeed
from recorder._otlp import COLUMNS, to_otel
from tests.support.procs import ROOT

TOKEN = "sk-live-abcdefghijklmnop"


def call(i: int, now: int, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> Record:
    trace = Record.begin([(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")], now)
    trace.method, trace.request_id, trace.tool, trace.era, trace.version = "tools/call", i, "say", "legacy", "v"
    trace.request = orjson.dumps(
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "say", "arguments": {"n": i}}}
    )
    trace.parsed_ns, trace.sliced_ns, trace.session, trace.virtual_server = now + 10, now + 20, "s-1", "/virtual/v"
    trace.backend, trace.backend_tool = "/echo", "echo"
    hop = trace.add(new_hop("tools/call echo", pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND,
                            "tools/call", now + 30, "/echo", "echo"))  # fmt: skip
    answer = {"error": error} if error else {"result": result or {"content": []}}
    hop.request = b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}'
    hop.response = orjson.dumps({"jsonrpc": "2.0", "id": 1, **answer})
    hop.end_ns = now + 90
    trace.response, trace.end_ns = orjson.dumps({"jsonrpc": "2.0", "id": i, **answer}), now + 100
    if error:
        trace.error = (error["code"], error["message"])  # as the gateway's encoder says of its answer
    return trace


def recording(path: Path, traces: list[Record]) -> Path:
    store = SpanStore(path)
    builder = BatchBuilder(Redactor())
    for trace in traces:
        builder.add(trace)
    store.write(builder.batch("gw-7")).result()
    store.close()
    return path


def rows(path: Path) -> list[dict[str, Any]]:
    with connect(str(path)) as r:
        return r.rows(f"SELECT {COLUMNS} FROM spans ORDER BY start_ns, span_id")


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = (
            [v.string_value for v in value.array_value.values] if kind == "array_value" else getattr(value, kind)
        )
    return out


def test_the_otlp_request_carries_the_recording(tmp_path: Path) -> None:
    now = time.time_ns()
    db = recording(tmp_path / "t.duckdb", [
        call(1, now), call(2, now + 1000, result={"content": [], "isError": True}),
        call(3, now + 2000, error={"code": -32001, "message": "Backend /echo: timed out"}),
    ])  # fmt: skip
    recorded = rows(db)
    request = encode_spans(to_otel(recorded))
    [resource_spans] = request.resource_spans  # one gateway instance, one virtual server
    resource = attrs(resource_spans.resource)
    assert resource["service.name"] == "slicewire" and resource["service.instance.id"] == "gw-7"
    assert resource["slicewire.virtual_server"] == "/virtual/v"
    assert resource["service.version"] == importlib.metadata.version("slicewire")  # pyproject's, installed
    spans = {s.span_id.hex(): s for scope in resource_spans.scope_spans for s in scope.spans}
    assert set(spans) == {r["span_id"] for r in recorded}
    kinds = {2: "SERVER", 3: "CLIENT", 1: "INTERNAL"}
    for row in recorded:
        span = spans[row["span_id"]]
        assert span.trace_id.hex() == row["trace_id"] and span.name == row["name"]
        assert (span.parent_span_id.hex() or None) == row["parent_span_id"]
        assert kinds[span.kind] == row["kind"]
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (row["start_ns"], row["end_ns"])
    roots = sorted((s for s in spans.values() if s.kind == 2), key=lambda s: s.start_time_unix_nano)
    ok, tool_error, failed = roots
    assert ok.status.code == 0 and "error.type" not in attrs(ok)  # UNSET on success
    assert attrs(ok)["mcp.method.name"] == "tools/call" and attrs(ok)["gen_ai.tool.name"] == "say"
    assert attrs(ok)["http.request.header.authorization"] == ["[REDACTED]"]
    assert "gen_ai.tool.call.arguments" not in attrs(ok)
    assert tool_error.status.code == 2 and attrs(tool_error)["error.type"] == "tool_error"
    assert failed.status.code == 2 and attrs(failed)["error.type"] == "-32001"
    assert failed.status.message == "Backend /echo: timed out"
    assert TOKEN.encode() not in request.SerializeToString()
    with_payloads = encode_spans(to_otel(recorded, payloads=True))
    root = next(s for r in with_payloads.resource_spans for sc in r.scope_spans for s in sc.spans
                if s.span_id == ok.span_id)  # fmt: skip
    assert orjson.loads(attrs(root)["gen_ai.tool.call.arguments"]) == {"n": 1}
    assert orjson.loads(attrs(root)["gen_ai.tool.call.result"]) == {"content": []}


class Receiver(SpanExporter):
    """An exporter whose receiver is down for the first `down` calls, then keeps what it gets."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.got: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.down:
            self.down -= 1
            return SpanExportResult.FAILURE
        self.got.extend(f"{s.context.span_id:016x}" for s in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_feed_position_survives_failures_and_a_restart(tmp_path: Path) -> None:
    now = time.time_ns()
    db = recording(tmp_path / "t.duckdb", [call(i, now + i * 1000) for i in range(20)])  # 100 spans
    expected = [r["span_id"] for r in rows(db)]
    receiver = Receiver(down=2)
    store = SpanStore(db)
    feed = OtlpFeed(store, receiver, "test", batch_spans=30)
    assert [feed.step(), feed.step()] == [None, None]  # down: nothing moves
    assert feed.step() == 30 and feed.step() == 30
    store.close()
    store = SpanStore(db)  # a restart: the position comes from the file
    feed = OtlpFeed(store, receiver, "test", batch_spans=30)
    assert (feed.position, feed.exported) != (0, 0)
    while feed.step():
        pass
    store.close()
    assert sorted(receiver.got) == sorted(expected) and len(receiver.got) == len(set(receiver.got))
    with connect(str(db)) as r:
        assert r.rows("SELECT name, exported FROM exports") == [{"name": "test", "exported": 100}]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["export"], {}, "give either an output file or --otlp URL"),
        (["export", "out.parquet", "--otlp", "http://x:4318"], {}, "give either an output file or --otlp URL"),
        (["export", "--otlp", "x:4317"], {}, "--otlp: expected an http:// or https:// URL"),
        (["export", "--otlp", "http://x:4317", "--protocol", "thrift"], {}, "--otlp-protocol: expected grpc or http"),
        (["recorder", "--db", "t.duckdb"], {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317",
                                            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "is not supported"),
    ],
)  # fmt: skip
def test_bad_otlp_options_get_one_line(args: list[str], env: dict[str, str], message: str, tmp_path: Path) -> None:
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-m", "proxy", *args], cwd=tmp_path, env={**clean, **env,
                          "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr

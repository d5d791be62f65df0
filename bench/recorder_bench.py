"""Flight-recorder benchmarks: DuckDB ingest, gRPC ingest into a real recorder process, spool throughput.

    .venv/bin/python bench/recorder_bench.py                 # defaults: 200k spans
    .venv/bin/python bench/recorder_bench.py --spans 500000

Spans are synthetic but shaped like real ones (ids, names, JSON attributes, ~600-byte payloads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import duckdb  # noqa: E402
import grpc  # noqa: E402

from proto import pb  # noqa: E402
from proto._access import bearer, local_token  # noqa: E402
from recorder import SpanStore  # noqa: E402

PAYLOAD = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x" * 400}}}).encode()  # fmt: skip
ATTRS = json.dumps({"mcp.method.name": "tools/call", "gen_ai.tool.name": "echo", "jsonrpc.request.id": "1"}).encode()


def make_spans(n: int, offset: int = 0) -> list[Any]:
    now = time.time_ns()
    spans = []
    for i in range(offset, offset + n):
        trace = (i // 5).to_bytes(16, "big")
        spans.append(
            pb.Span(
                trace_id=trace,
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=b"" if i % 5 == 0 else (i - i % 5 + 1).to_bytes(8, "big"),
                name="tools/call echo",
                kind=pb.SPAN_KIND_SERVER if i % 5 == 0 else pb.SPAN_KIND_INTERNAL,
                session_id=f"session-{i // 500}",
                virtual_server="/virtual/bench",
                backend="/echo",
                method="tools/call",
                request_id=str(i),
                tool_name="echo",
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 500,
                status=pb.STATUS_CODE_OK,
                attributes_json=ATTRS,
                request_payload=PAYLOAD,
                response_payload=PAYLOAD,
                protocol_era="modern",
                protocol_version="2026-07-28",
            )
        )
    return spans


def bench_store(n: int, batch: int, workdir: Path, form: str = "spans") -> dict[str, Any]:
    store = SpanStore(workdir / f"store-{form}.duckdb")
    if form == "traces":
        items: list[Any] = make_trace_batches(n, batch)
    else:
        spans = make_spans(n)
        items = [spans[i : i + batch] for i in range(0, n, batch)]
    started = time.perf_counter()
    futures = [store.write(item) for item in items]
    stored = sum(f.result().stored for f in futures)
    elapsed = time.perf_counter() - started
    store.close()
    return {"spans": n, "stored": stored, "seconds": round(elapsed, 2), "spans_per_s": round(n / elapsed)}


def bench_executemany(n: int, workdir: Path) -> dict[str, Any]:
    """The row-by-row baseline the store does not use."""
    con = duckdb.connect(str(workdir / "rows.duckdb"))
    con.execute(
        "CREATE TABLE t (span_id VARCHAR PRIMARY KEY, trace_id VARCHAR, name VARCHAR, start_ns BIGINT, payload VARCHAR)"
    )
    rows = [(f"{i:016x}", f"{i // 5:032x}", "tools/call echo", i, PAYLOAD.decode()) for i in range(n)]
    started = time.perf_counter()
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    elapsed = time.perf_counter() - started
    con.close()
    return {"spans": n, "seconds": round(elapsed, 2), "spans_per_s": round(n / elapsed)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _send_all(target: str, batches: list[bytes], streams: int, per_stream: int) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        # Pre-serialized batches sent as they are: the figure is the recorder's, not this client's.
        record = channel.stream_unary(
            "/slicewire.v1.Recorder/Record", request_serializer=lambda b: b, response_deserializer=pb.Ack.FromString
        )
        queue = list(range(0, len(batches), per_stream))
        acked = 0
        metadata = bearer(local_token(target))  # the token the recorder process keeps for its address

        async def worker() -> None:
            nonlocal acked
            while queue:
                start = queue.pop()
                ack = await record(iter(batches[start : start + per_stream]), timeout=120, metadata=metadata)
                acked += ack.stored

        await asyncio.gather(*(worker() for _ in range(streams)))
        return acked


def as_columns(spans: list[Any]) -> Any:
    return pb.SpanColumns(**{f.name: [getattr(s, f.name) for s in spans] for f in pb.SpanColumns.DESCRIPTOR.fields})


def make_trace_batches(n_spans: int, batch_spans: int) -> list[Any]:
    """The form the gateway sends: tools/call traces (5 spans each) built by the gateway's own code."""
    from records import tools_call

    from proxy._config import RedactConfig
    from proxy.recording._redact import Redactor
    from proxy.recording.helper._spans import BatchBuilder

    config = RedactConfig()
    redactor = Redactor(config.keys, config.paths, config.patterns)
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"), (b"mcp-method", b"tools/call")]
    batches, builder = [], BatchBuilder(redactor)
    now = time.time_ns()
    for i in range(n_spans // 5):
        trace = tools_call(i, now + i * 1000, headers, f"session-{i // 100}")
        builder.add(trace)
        if builder.spans >= batch_spans:
            batches.append(builder.batch("bench"))
            builder = BatchBuilder(redactor)
    if builder.spans:
        batches.append(builder.batch("bench"))
    return batches


def bench_grpc(n: int, batch: int, workdir: Path, form: str = "spans") -> dict[str, Any]:
    port = free_port()
    target = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "recorder", "--db", str(workdir / f"grpc-{form}.duckdb"), "--listen", target,
         "--log-level", "warning"], cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("recorder did not start")
            time.sleep(0.05)
        if form == "traces":  # the form the gateway sends
            batches = [b.SerializeToString() for b in make_trace_batches(n, batch)]
        else:
            spans = make_spans(n)
            if form == "columns":
                batches = [pb.SpanBatch(columns=as_columns(spans[i : i + batch])).SerializeToString()
                           for i in range(0, n, batch)]  # fmt: skip
            else:
                batches = [pb.SpanBatch(spans=spans[i : i + batch]).SerializeToString() for i in range(0, n, batch)]
        started = time.perf_counter()
        stored = asyncio.run(_send_all(target, batches, streams=4, per_stream=16))
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(60)
    return {"spans": n, "stored": stored, "seconds": round(elapsed, 2), "spans_per_s": round(n / elapsed)}


def bench_spool(n: int, batch: int, workdir: Path) -> dict[str, Any]:
    from proxy._config import RecorderConfig
    from proxy.recording.helper._shipper import Shipper

    emitter = Shipper(RecorderConfig(target="127.0.0.1:1", spool_dir=str(workdir / "spool"),
                                         spool_max_bytes=10 * 1024**3))  # fmt: skip
    spans = make_spans(n)
    batches = [pb.SpanBatch(spans=spans[i : i + batch]) for i in range(0, n, batch)]
    started = time.perf_counter()
    emitter._spool(batches)
    written = time.perf_counter() - started
    size = emitter.spool.stat().st_size
    started = time.perf_counter()
    read = emitter._read_spool()
    read_s = time.perf_counter() - started
    assert sum(len(b.spans) for b in read) == n
    return {
        "spans": n,
        "mb": round(size / 1e6, 1),
        "write_spans_per_s": round(n / written),
        "write_mb_per_s": round(size / 1e6 / written, 1),
        "read_spans_per_s": round(n / read_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Flight-recorder benchmarks.")
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="slicewire-recbench-"))
    report = {
        "store_traces": bench_store(args.spans, args.batch, workdir, "traces"),
        "store_spans": bench_store(args.spans, args.batch, workdir),
        "store_executemany_baseline": bench_executemany(min(args.spans, 5000), workdir),
        "grpc_ingest_traces": bench_grpc(args.spans, args.batch, workdir, "traces"),
        "grpc_ingest_columns": bench_grpc(args.spans, args.batch, workdir, "columns"),
        "grpc_ingest_rows": bench_grpc(args.spans, args.batch, workdir),
        "spool": bench_spool(args.spans, args.batch, workdir),
    }
    for name, figures in report.items():
        print(f"{name:28} {figures}")
    out = ROOT / "bench" / "results" / f"recorder-{time.strftime('%Y-%m-%dT%H-%M-%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written: {out.relative_to(ROOT)}")
    for path in workdir.iterdir():
        if path.is_file():
            os.remove(path)


if __name__ == "__main__":
    main()

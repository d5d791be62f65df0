"""The gateway's own CPU per recorded request, in isolation: emit (rows appended) + batch (prefilter
scan, redaction, protobuf columns) + serialization, for `tools/call` traces shaped like bench/run.py's.

    .venv/bin/python bench/emitter_bench.py                # 20000 traces, Hyperscan and byte prefilters

In-process and single-threaded, so far steadier than the end-to-end figures of run.py on a noisy
machine; it leaves out what only a live gateway has (gRPC I/O, cache pressure from serving).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import marshal  # noqa: E402

import orjson  # noqa: E402

from proto import pb  # noqa: E402
from proxy._config import RecorderConfig  # noqa: E402
from proxy._recording import Hop, SpanEmitter, Trace  # noqa: E402
from proxy._shipper import Shipper  # noqa: E402
from proxy._spans import span_count  # noqa: E402

ARGS = {"text": "lorem ipsum dolor sit amet " * 8}
HEADERS = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
           (b"accept", b"application/json, text/event-stream"), (b"mcp-protocol-version", b"2026-07-28"),
           (b"mcp-method", b"tools/call"), (b"mcp-name", b"say"), (b"content-length", b"400")]  # fmt: skip


def make_trace(i: int) -> Trace:
    """A finished tools/call trace, as the handlers leave it (payloads as the bytes on the wire)."""
    now = time.time_ns()
    trace = Trace(now, list(HEADERS))
    trace.method, trace.request_id, trace.era, trace.protocol_version = "tools/call", i, "modern", "2026-07-28"
    trace.request_body = orjson.dumps(
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "say", "arguments": ARGS}}
    )
    trace.parsed_ns, trace.tool, trace.sliced_ns = now + 20_000, "say", now + 25_000
    trace.backend, trace.backend_tool, trace.virtual_server, trace.session_id = "/echo", "echo", "/v/bench", "s"
    hop = Hop("tools/call echo", pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND, "tools/call", now + 30_000)
    hop.backend, hop.tool = "/echo", "echo"
    params = {"name": "echo", "arguments": ARGS, "_meta": {"traceparent": trace.downstream_traceparent(hop)}}
    hop.request = orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
    result = {"content": [{"type": "text", "text": orjson.dumps(ARGS).decode()}], "structuredContent": ARGS}
    hop.response = orjson.dumps({"jsonrpc": "2.0", "id": i, "result": result})
    hop.end_ns = now + 200_000
    trace.hops.append(hop)
    trace.response, trace.end_ns = orjson.dumps({"jsonrpc": "2.0", "id": i, "result": result}), now + 210_000
    return trace


async def measure(n: int, use_hyperscan: bool) -> dict[str, float]:
    """The gateway's part (rows appended, marshalled for the helper) and the helper's part (batch:
    prefilter, redaction, columns; serialize), each in CPU time per trace."""
    with tempfile.TemporaryDirectory() as spool:
        config = RecorderConfig(target="127.0.0.1:1", spool_dir=spool)
        emitter = SpanEmitter(config, instance="bench")  # not started: no helper; frames are kept here
        shipper = Shipper(config, instance="bench")
        shipper.redactor.use_hyperscan = use_hyperscan
        shipper.redactor._needs_walk(b"{}")  # build the prefilter outside the timing
        traces = [make_trace(i) for i in range(n)]
        cpu = time.thread_time
        started = cpu()
        frames = []
        for trace in traces:
            span_count(trace)  # what emit() does: the cap check, then the rows
            builder = emitter._builder
            builder.add(trace)
            if builder.spans >= config.batch_spans:
                frames.append(marshal.dumps((builder.traces, builder.hops, builder.spans, builder.payload_bytes)))
                emitter._builder = type(builder)(emitter.redactor, config.payloads)
        builder = emitter._builder
        frames.append(marshal.dumps((builder.traces, builder.hops, builder.spans, builder.payload_bytes)))
        emitted = cpu()
        for frame in frames:
            shipper.add_rows(*marshal.loads(frame))
        batches = [shipper._take_batch() for _ in range(len(shipper._queue))]
        built = cpu()
        size = sum(len(batch.SerializeToString()) for batch in batches)
        done = cpu()
    return {
        "gateway_us": (emitted - started) / n * 1e6,
        "helper_batch_us": (built - emitted) / n * 1e6,
        "helper_serialize_us": (done - built) / n * 1e6,
        "total_us": (done - started) / n * 1e6,
        "bytes_per_trace": size / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU per recorded request, gateway and helper, in isolation.")
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for use_hyperscan in (True, False):
        rounds = [asyncio.run(measure(args.traces, use_hyperscan)) for _ in range(args.repeat)]
        medians = {key: round(statistics.median(r[key] for r in rounds), 2) for key in rounds[0]}
        print(f"prefilter={'hyperscan' if use_hyperscan else 'bytes':9} (median of {args.repeat}) {medians}")


if __name__ == "__main__":
    main()

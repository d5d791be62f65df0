"""CPU per recorded request, in isolation: the gateway's part (`emit`: the record appended, a batch
marshalled for the helper) and the helper's (rows, prefilter scan, redaction, protobuf columns,
serialization), for `tools/call` records shaped like bench/run.py's (bench/records.py).

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
sys.path.insert(0, str(ROOT / "bench"))


from records import tools_call  # noqa: E402

from proxy._config import RecorderConfig  # noqa: E402
from proxy.recording import SpanEmitter  # noqa: E402
from proxy.recording.helper._shipper import Shipper, read_records  # noqa: E402


async def measure(n: int, use_hyperscan: bool) -> dict[str, float]:
    """The gateway's part (records appended, marshalled for the helper) and the helper's part (rows,
    prefilter, redaction, columns; serialize), each in CPU time per trace."""
    with tempfile.TemporaryDirectory() as spool:
        config = RecorderConfig(target="127.0.0.1:1", spool_dir=spool)
        emitter = SpanEmitter(config, instance="bench")  # not started: no helper; frames are kept here
        frames: list[bytes] = []
        emitter._write = lambda kind, frame: frames.append(frame) is None  # type: ignore[method-assign]
        shipper = Shipper(config, instance="bench")
        shipper.redactor.use_hyperscan = use_hyperscan
        shipper.redactor._needs_walk(b"{}")  # build the prefilter outside the timing
        now = time.time_ns()
        traces = [tools_call(i, now + i * 1000) for i in range(n)]
        cpu = time.thread_time
        started = cpu()
        for trace in traces:
            emitter.emit(trace)
        emitter._hand_off()
        emitted = cpu()
        for frame in frames:
            shipper.add_records(read_records(frame))
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

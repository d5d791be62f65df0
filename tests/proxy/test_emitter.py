"""The span emitter against real failure modes: no recorder, an unwritable spool."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proto import batch_size
from proxy._config import RecorderConfig
from proxy._recording import SpanEmitter, Trace
from tests.support.procs import free_port

pytestmark = pytest.mark.anyio


def trace() -> Trace:
    t = Trace(time.time_ns(), [])
    t.method, t.request_id, t.request = "tools/list", 1, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    t.response, t.end_ns = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}', time.time_ns()
    return t


async def test_spools_when_no_recorder_answers(tmp_path: Path) -> None:
    emitter = SpanEmitter(RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), send_timeout_s=2))
    await emitter.start()
    try:
        for _ in range(10):
            emitter.emit(trace())
        await emitter.flush()
        assert emitter.counters["spooled"] == emitter.counters["emitted"] == 30  # 3 spans per tools/list
        assert emitter.counters["sent"] == 0 and emitter.counters["dropped"] == 0
        assert sum(batch_size(b) for b in emitter._read_spool()) == 30
    finally:
        await emitter.close()


async def test_unwritable_spool_counts_drops_and_keeps_going(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(blocker / "spool"), send_timeout_s=2)
    emitter = SpanEmitter(config)
    await emitter.start()
    try:
        emitter.emit(trace())
        await emitter.flush()  # must not raise
        assert emitter.counters["dropped"] == 3
        emitter.emit(trace())
        await emitter.flush()
        assert emitter.counters["dropped"] == 6
    finally:
        await emitter.close()


async def test_queue_cap_counts_drops(tmp_path: Path) -> None:
    config = RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), queue_max_spans=8)
    emitter = SpanEmitter(config)
    for _ in range(5):
        emitter.emit(trace())  # 2 fit (3 spans each), 3 are dropped
    assert emitter._queued_spans == 6 and emitter.counters["dropped"] == 9

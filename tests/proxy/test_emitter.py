"""The span emitter and its shipping helper process against real failure modes: no recorder, an
unwritable spool, a full queue, a helper that dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from proto import batch_size, pb
from proxy._config import RecorderConfig
from proxy.recording import Record, SpanEmitter, new_hop
from proxy.recording.helper._shipper import Shipper, read_spool
from tests.proxy.clients import until
from tests.support.procs import free_port

pytestmark = pytest.mark.anyio


def trace(secret: str = "") -> Record:
    t = Record.begin([], time.time_ns())
    t.method, t.request_id = "tools/list", 1
    t.request = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"note": secret}})
    t.response, t.end_ns = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}', time.time_ns()
    return t


async def test_spools_when_no_recorder_answers(tmp_path: Path) -> None:
    """Records go through the helper process, which cannot reach the recorder: all of them are spooled,
    redacted there (an added secret reached the helper)."""
    emitter = SpanEmitter(RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), send_timeout_s=2))
    await emitter.start()
    try:
        assert emitter.helper_pid is not None and emitter.helper_pid != os.getpid()
        emitter.add_secret("injected-credential-123")
        for _ in range(10):
            emitter.emit(trace("uses injected-credential-123 here"))
        await emitter.flush()
        assert emitter.counters["spooled"] == emitter.counters["emitted"] == 30  # 3 spans per tools/list
        assert emitter.counters["sent"] == 0 and emitter.counters["dropped"] == 0
        spooled = read_spool(tmp_path / "spans.spool")
        assert sum(batch_size(b) for b in spooled) == 30
        assert b"injected-credential-123" not in (tmp_path / "spans.spool").read_bytes()
    finally:
        await emitter.close()
    assert emitter.helper_pid is None  # the helper exited with the emitter


async def test_helper_outlives_a_group_sigterm_until_the_pipe_closes(tmp_path: Path) -> None:
    """SIGTERM to the process group (systemd, `kill -- -PGID`) must not kill the helper with spans in
    hand: it keeps working until the gateway closes the pipe, then ships or spools everything."""
    emitter = SpanEmitter(RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), send_timeout_s=2))
    await emitter.start()
    try:
        pid = emitter.helper_pid
        assert pid is not None
        emitter.emit(trace())
        await emitter.flush()  # the helper is up and serving
        assert os.getpgid(pid) != os.getpgid(0)  # a group signal for the gateway does not reach it
        os.kill(pid, signal.SIGTERM)
        emitter.emit(trace())
        await emitter.flush()
        assert emitter.helper_pid == pid and emitter.counters["spooled"] == 6
    finally:
        await emitter.close()
    assert emitter.counters["dropped"] == 0


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


async def test_helper_that_dies_is_replaced_and_its_spans_counted(tmp_path: Path) -> None:
    emitter = SpanEmitter(RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), send_timeout_s=2))
    await emitter.start()
    try:
        first = emitter.helper_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await until(lambda: emitter.helper_pid not in (None, first))
        emitter.emit(trace())
        await emitter.flush()
        # The helper's counters come in its own reports, which may trail the flush's answer on a busy machine.
        await until(lambda: emitter.counters["spooled"] == 3, within_s=30)  # the new helper works
    finally:
        await emitter.close()


async def test_a_helper_that_cannot_keep_up_makes_the_gateway_drop_past_the_cap(tmp_path: Path) -> None:
    """The gateway holds at most `queue_max_spans` the helper has not read: a stopped helper (no CPU)
    costs spans past that, counted; everything it had been handed still arrives once it runs again."""
    config = RecorderConfig(
        target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), send_timeout_s=2, queue_max_spans=30, batch_spans=3
    )
    emitter = SpanEmitter(config)
    await emitter.start()
    helper = emitter.helper_pid
    assert helper is not None
    try:
        await until(lambda: "emitted" in emitter._helper_counters)  # it has read its config and reported
        os.kill(helper, signal.SIGSTOP)
        for _ in range(15):
            emitter.emit(trace())  # 3 spans each, handed at once (batch_spans=3)
        assert emitter.counters["dropped"] == 15  # 10 fit under the cap, 5 did not
    finally:
        os.kill(helper, signal.SIGCONT)
    try:
        await emitter.flush()
        # A helper just woken from SIGSTOP ships or spools what it holds; its counters arrive in its
        # reports, which may trail the flush's answer on a busy machine.
        await until(lambda: emitter.counters["spooled"] == 30, within_s=30)
        assert emitter.counters["dropped"] == 15
        assert sum(batch_size(b) for b in read_spool(tmp_path / "spans.spool")) == 30
    finally:
        await emitter.close()


def test_helper_queue_overflow_spills_to_the_spool(tmp_path: Path) -> None:
    """A recorder slower than the traffic: past `queue_max_spans` waiting, batches go to the spool
    (re-sent later) instead of being dropped; only an unusable spool drops them."""
    config = RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), queue_max_spans=8)
    shipper = Shipper(config)
    for _ in range(5):
        shipper.add_records([trace()])
    assert shipper._queued_spans == 6  # 2 batches of 3 spans wait in memory
    assert shipper.counters["spooled"] == 9 and shipper.counters["dropped"] == 0  # 3 went to the spool
    assert sum(batch_size(b) for b in read_spool(tmp_path / "spans.spool")) == 9
    blocker = tmp_path / "file"
    blocker.write_text("")
    full = Shipper(RecorderConfig(target=config.target, spool_dir=str(blocker / "spool"), queue_max_spans=8))
    for _ in range(5):
        full.add_records([trace()])
    assert full.counters["dropped"] == 9 and full.counters["emitted"] == 15


async def test_a_payload_nested_past_the_packers_depth_is_recorded_as_json(tmp_path: Path) -> None:
    """The record's packer (MessagePack) stops at 254 levels; JSON the gateway parsed may go deeper
    (orjson reads 1,024). Such a payload is recorded as its JSON text, not dropped."""
    deep: list[Any] = []
    inner = deep
    for _ in range(600):
        inner.append([])
        inner = inner[0]
    t = trace()
    hop = t.add(new_hop("tools/call deep", pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND, "tools/call",
                             time.time_ns(), "/b", "deep"))  # fmt: skip
    hop.request, hop.response = b"{}", {"jsonrpc": "2.0", "id": 1, "result": {"deep": deep}}
    emitter = SpanEmitter(RecorderConfig(target=f"127.0.0.1:{free_port()}", spool_dir=str(tmp_path), send_timeout_s=2))
    await emitter.start()
    try:
        emitter.emit(t)
        await emitter.flush()
        assert emitter.counters["emitted"] == emitter.counters["spooled"] == 4  # root, parse, respond, the hop
        assert emitter.counters["dropped"] == 0
    finally:
        await emitter.close()
    (payload,) = [p for batch in read_spool(tmp_path / "spans.spool") for p in batch.hops.response_payload]
    assert orjson.loads(payload)["result"]["deep"] == deep

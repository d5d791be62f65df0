"""The flight recorder's gateway side: what a request leaves behind, and how it reaches the recorder.

On the request path the gateway fills a `Trace` (timestamps and references to messages it already
has) and, once the request is answered, appends its rows (one per request, one per hop; see _spans)
to the batch being filled: no I/O, no redaction walk. Full batches wait in a bounded queue; a
background task prefilters and redacts their payloads, fills the protobuf columns, and ships them
over short gRPC client streams, a few in flight at once so that a slow Ack never stalls the rest;
the recorder's Ack means "stored", and the recorder expands each trace into its spans. When the
recorder is unreachable or slow, batches go to an append-only spool file (size-capped; what does not
fit is counted as dropped) and are re-sent once it answers again. The recorder de-duplicates on
span id, so a batch sent twice is stored once.

Span model, one trace per client request (see docs/recording.md):

    tools/call say                 SERVER  client -> gateway -> client, whole request
    ├─ parse                       INTERNAL  receive, JSON-RPC parse, era and header checks
    ├─ slice                       INTERNAL  exposed name -> (backend, tool)
    ├─ tools/call echo             CLIENT    the upstream call to the backend
    │  └─ notifications/progress   INTERNAL  each message the backend sent about it
    ├─ elicitation/create          INTERNAL  a backend request relayed to the client, until answered
    └─ respond                     INTERNAL  encoding and sending the answer
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import socket
import struct
from collections import deque
from pathlib import Path
from typing import Any

import grpc

from proto import batch_size, pb, pb_grpc

from ._config import RecorderConfig
from ._redact import Redactor
from ._spans import MAX_BATCH_BYTES, BatchBuilder, span_count

logger = logging.getLogger(__name__)

__all__ = ["Hop", "SpanEmitter", "Trace", "parse_traceparent", "session_trace_id"]

# Span and trace ids need to be unique, not secret: a PRNG seeded from the OS, as OTel SDKs do.
_getrandbits = random.Random(os.urandom(32)).getrandbits
_LEN = struct.Struct(">I")
_BATCHES_PER_STREAM = 8
_STREAMS_IN_FLIGHT = 4


def new_trace_id() -> bytes:
    return _getrandbits(128).to_bytes(16, "big")


def new_span_id() -> bytes:
    return _getrandbits(64).to_bytes(8, "big")


def session_trace_id(session_id: str) -> bytes:
    """The trace that collects a session's messages not tied to one request (stable per session)."""
    return hashlib.blake2b(session_id.encode(), digest_size=16).digest()


def parse_traceparent(value: Any) -> tuple[bytes, bytes] | None:
    """W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) -> (trace id, parent span id), or None."""
    if not isinstance(value, str) or len(value) < 55:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[0] == "ff":
        return None
    try:
        trace_id, span_id = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    if trace_id == bytes(16) or span_id == bytes(8):
        return None
    return trace_id, span_id


def traceparent(trace_id: bytes, span_id: bytes) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-01"


class Hop:
    """One message exchange inside a trace: the upstream call, a relayed request, a notification."""

    __slots__ = ("backend", "children", "direction", "end_ns", "error", "kind", "method", "name", "request", "response",
                 "span_id", "start_ns", "tool")  # fmt: skip

    def __init__(self, name: str, kind: int, direction: int, method: str, start_ns: int) -> None:
        self.name = name
        self.kind = kind
        self.direction = direction
        self.method = method
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.span_id = new_span_id()
        self.backend = ""
        self.tool = ""
        self.request: Any = None
        self.response: Any = None
        self.error: tuple[int, str] | None = None
        self.children: list[Hop] = []


class Trace:
    """What one client request leaves behind. Filled on the request path; turned into spans later."""

    __slots__ = ("backend", "backend_tool", "direction", "end_ns", "era", "error", "headers", "hops", "method",
                 "parent_span_id",
                 "parsed_ns", "protocol_version", "replay_of", "request", "request_body", "request_id", "response",
                 "session_id",
                 "sliced_ns", "span_id", "start_ns", "subject", "tool", "trace_id", "virtual_server")  # fmt: skip

    def __init__(self, start_ns: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.start_ns = start_ns
        self.parsed_ns = start_ns
        self.sliced_ns = 0
        self.end_ns = 0
        self.headers = headers
        self.trace_id = b""
        self.span_id = new_span_id()
        self.parent_span_id = b""
        self.method = ""
        self.request_id: Any = None
        self.request: Any = None
        self.request_body: bytes | None = None  # the request as received, when it is one JSON document
        self.response: bytes | None = None
        self.error: tuple[int, str] | None = None
        self.era = ""
        self.protocol_version = ""
        self.session_id = ""
        self.virtual_server = ""
        self.subject = ""
        self.tool = ""
        self.backend = ""
        self.backend_tool = ""
        self.hops: list[Hop] = []
        self.replay_of = b""  # the recorded trace this request replays (slicewire replay --via)
        # Most traces start with a client's message; a notification the gateway sends starts its own.
        self.direction = pb.DIRECTION_CLIENT_TO_GATEWAY

    def continue_from(self, traceparent_value: Any) -> None:
        """Join the caller's trace when it sent a W3C traceparent (header or params._meta)."""
        parsed = parse_traceparent(traceparent_value)
        if parsed is not None:
            self.trace_id, self.parent_span_id = parsed

    def downstream_traceparent(self, hop: Hop) -> str:
        return traceparent(self.trace_id or self.ensure_trace_id(), hop.span_id)

    def ensure_trace_id(self) -> bytes:
        if not self.trace_id:
            self.trace_id = new_trace_id()
        return self.trace_id


class SpanEmitter:
    """Bounded queue -> batches -> gRPC, with a spool for when the recorder is away.

    emitter = SpanEmitter(config.recorder, instance="gw-1")
    await emitter.start()
    emitter.emit(trace)        # cheap; never awaits
    await emitter.close()      # flushes what it can, spools the rest
    """

    def __init__(self, config: RecorderConfig, instance: str | None = None) -> None:
        assert config.target is not None
        self.config = config
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.redactor = Redactor(
            config.redact.keys, config.redact.paths, config.redact.patterns, config.max_payload_bytes
        )
        self._builder = BatchBuilder(self.redactor, config.payloads)  # rows of the batch being filled
        self._queue: deque[BatchBuilder] = deque()  # full builders waiting for the background task
        self._queued_spans = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self.spool = Path(config.spool_dir) / "spans.spool"
        self.counters = {"emitted": 0, "sent": 0, "spooled": 0, "dropped": 0, "resent": 0, "send_failures": 0}
        self._closing = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._recorder_away = False

    # --- request path ----------------------------------------------------------------------------

    def emit(self, trace: Trace) -> None:
        """Record a finished trace: its rows are appended to the batch being filled, right away, while
        everything it points to is still in the CPU's caches (a few µs; measured several times
        cheaper than the same work done later in the background). No I/O, no redaction walk, never
        blocks. Past `queue_max_spans` the trace is counted as dropped."""
        spans = span_count(trace)
        if self._queued_spans + spans > self.config.queue_max_spans:
            self.counters["dropped"] += spans
            return
        builder = self._builder
        try:
            builder.add(trace)
        except Exception:  # a bad trace must not stop recording; it is logged and dropped
            logger.exception("could not record a trace; dropped")
            self.counters["dropped"] += spans
            return
        self._queued_spans += spans
        if builder.spans >= self.config.batch_spans or builder.payload_bytes >= MAX_BATCH_BYTES:
            self._queue.append(builder)
            self._builder = BatchBuilder(self.redactor, self.config.payloads)
            if len(self._queue) >= _BATCHES_PER_STREAM:  # a full stream waits
                self._wake.set()

    # --- background --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.config.target or "")
        self._stub = pb_grpc.RecorderStub(self._channel)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="span emitter")

    async def _run(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while True:
            if not self._closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # recording must never stop for good; say why and go on
                logger.exception("span emitter: flush failed; retrying at the next interval")
            if self._closing:
                return

    async def flush(self) -> None:
        """Ship everything queued (or spool it), then retry the spool if the recorder answers.

        Batches are finished (payloads prefiltered and redacted, columns filled) one at a time with a
        yield to the event loop in between, so a burst of traffic never becomes one long stall of the
        requests in flight. Up to `_STREAMS_IN_FLIGHT` streams wait for their Ack at once while the
        next one is finished.
        """
        self._recorder_away = False
        if self._builder.spans:  # the batch being filled goes too
            self._queue.append(self._builder)
            self._builder = BatchBuilder(self.redactor, self.config.payloads)
        while self._queue:
            # What is built is sent (or spooled) before more than a few streams' worth is built, so
            # a recorder that falls behind shows up as a longer queue (bounded) rather than as an
            # unbounded pile of built batches.
            batches: list[Any] = []
            while self._queue and len(batches) < _BATCHES_PER_STREAM:
                batches.append(self._take_batch())
                await asyncio.sleep(0)
            if self._recorder_away:
                self._spool(batches)  # the rest of this flush goes to the spool without waiting again
                continue
            task = asyncio.get_running_loop().create_task(self._ship(batches))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            if len(self._in_flight) >= _STREAMS_IN_FLIGHT:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        if self._spool_pending() and not self._closing and not self._recorder_away:
            await self._drain_spool()

    async def _ship(self, batches: list[Any]) -> None:
        if await self._send(batches):
            self.counters["sent"] += sum(batch_size(b) for b in batches)
        else:
            self._recorder_away = True
            self._spool(batches)

    def _take_batch(self) -> Any:
        """The oldest full builder as a SpanBatch (the prefilter's scan, redaction, columns)."""
        builder = self._queue.popleft()
        self._queued_spans = max(0, self._queued_spans - builder.spans)
        self.counters["emitted"] += builder.spans
        return builder.batch(self.instance)

    async def _send(self, batches: list[Any]) -> bool:
        try:
            ack = await self._stub.Record(iter(batches), timeout=self.config.send_timeout_s)
        except grpc.RpcError as exc:
            self.counters["send_failures"] += 1
            code = exc.code() if hasattr(exc, "code") else None
            logger.debug("recorder send failed: %s", code)
            return False
        expected = sum(batch_size(b) for b in batches)
        if ack.received != expected:
            logger.warning("recorder acknowledged %d of %d spans; re-sending later", ack.received, expected)
            return False
        return True

    # --- spool -----------------------------------------------------------------------------------

    def _spool_pending(self) -> bool:
        try:
            return self.spool.stat().st_size > 0
        except OSError:  # missing, or its directory cannot be made: nothing spooled
            return False

    def _spool(self, batches: list[Any]) -> None:
        try:
            self._append_to_spool(batches)
        except OSError as exc:
            lost = sum(batch_size(b) for b in batches)
            self.counters["dropped"] += lost
            logger.error("span emitter: cannot write the spool %s (%s); %d spans dropped", self.spool, exc, lost)

    def _append_to_spool(self, batches: list[Any]) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.spool.stat().st_size
        except FileNotFoundError:
            size = 0
        with self.spool.open("ab") as f:
            for batch in batches:
                data = batch.SerializeToString()
                if size + len(data) + 4 > self.config.spool_max_bytes:
                    self.counters["dropped"] += batch_size(batch)
                    continue
                f.write(_LEN.pack(len(data)) + data)
                size += len(data) + 4
                self.counters["spooled"] += batch_size(batch)
            f.flush()
            os.fsync(f.fileno())

    def _read_spool(self) -> list[Any]:
        data = self.spool.read_bytes()
        batches, offset = [], 0
        while offset + 4 <= len(data):
            (length,) = _LEN.unpack_from(data, offset)
            chunk = data[offset + 4 : offset + 4 + length]
            if len(chunk) < length:
                logger.warning("spool ends with a partial batch (%d bytes); ignored", len(chunk))
                break
            batches.append(pb.SpanBatch.FromString(chunk))
            offset += 4 + length
        return batches

    async def _drain_spool(self) -> None:
        batches = self._read_spool()
        # Send in slices so one huge spool does not become one huge stream.
        for start in range(0, len(batches), 64):
            part = batches[start : start + 64]
            if not await self._send(part):
                remaining = batches[start:]
                tmp = self.spool.with_suffix(".tmp")
                with tmp.open("wb") as f:
                    for batch in remaining:
                        data = batch.SerializeToString()
                        f.write(_LEN.pack(len(data)) + data)
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(self.spool)
                return
            sent = sum(batch_size(b) for b in part)
            self.counters["resent"] += sent
            self.counters["sent"] += sent
        self.spool.unlink(missing_ok=True)
        logger.info("recorder reachable again: spooled spans re-sent")

    async def close(self) -> None:
        """Stop: let a flush in progress finish (never cancel one: its batches would be lost), then
        ship what is still queued, or spool it."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.send_timeout_s + 5)
            except TimeoutError:
                logger.error("span emitter: the last flush did not finish in time; stopping it")
                self._task.cancel()
        if self._queue or self._builder.spans:
            await self.flush()  # sends, or spools once the recorder fails
        if self._channel is not None:
            await self._channel.close()

"""The flight recorder's gateway side: what a request leaves behind, and how it reaches the recorder.

On the request path the gateway fills a `Trace` (timestamps and references to messages it already
has) and, once the request is answered, appends its rows (one per request, one per hop; see _spans)
to the batch being filled: no I/O, no redaction walk. Full batches (and, every flush interval, a
partial one) are handed to the shipping helper, a child process (see _shipper), as one `marshal`
frame over a pipe. The helper prefilters and redacts the payloads, fills the protobuf columns, and
ships them over short gRPC client streams, a few in flight at once; the recorder's Ack means
"stored", and the recorder expands each trace into its spans. When the recorder is unreachable or
slower than the traffic, batches go to an append-only spool file (size-capped; what does not fit is
counted as dropped) and are re-sent once it answers again. The recorder de-duplicates on span id,
so a batch sent twice is stored once.

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
import marshal
import os
import random
import socket
import sys
from typing import Any

import orjson

from proto import pb

from ._config import RecorderConfig
from ._redact import Redactor
from ._shipper import FRAME
from ._spans import MAX_BATCH_BYTES, BatchBuilder, span_count

logger = logging.getLogger(__name__)

__all__ = ["Hop", "SpanEmitter", "Trace", "parse_traceparent", "session_trace_id"]

# Span and trace ids need to be unique, not secret: a PRNG seeded from the OS, as OTel SDKs do.
_getrandbits = random.Random(os.urandom(32)).getrandbits


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


def _done(helper: dict[str, int]) -> int:
    """Spans a helper no longer holds: sent (re-sends counted once), spooled or dropped."""
    return helper.get("sent", 0) - helper.get("resent", 0) + helper.get("spooled", 0) + helper.get("dropped", 0)


class SpanEmitter:
    """The gateway's side of recording: rows per request, handed in batches to the shipping helper.

    emitter = SpanEmitter(config.recorder, instance="gw-1")
    await emitter.start()      # starts the helper process (proxy/_shipper.py)
    emitter.emit(trace)        # cheap; never awaits
    await emitter.flush()      # hand off what is built and wait until the helper shipped (or spooled) it
    await emitter.close()      # the helper ships what it can, spools the rest, and exits

    `emit` appends the trace's rows to the batch being filled (see _spans). A full batch — or, every
    `flush_interval_ms`, a partial one — is written to the helper's stdin as one `marshal` frame:
    the prefilter, redaction, protobuf, gRPC and spool work happens in the helper, off the serving
    thread and its core. Counters merge both sides: `emitted` and gateway-side drops are counted
    here, `sent`, `spooled`, `resent`, `send_failures` and the helper's own drops there.
    """

    def __init__(self, config: RecorderConfig, instance: str | None = None) -> None:
        assert config.target is not None
        self.config = config
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.redactor = Redactor.for_recorder(config)
        self._builder = BatchBuilder(self.redactor, config.payloads)  # rows of the batch being filled
        self._local = {"emitted": 0, "dropped": 0}
        self._helper_counters: dict[str, int] = {}  # the current helper's report
        self._earlier: dict[str, int] = {}  # what helpers that exited had reported
        self._lost = 0  # handed to a helper that died before reporting them
        self._handed = 0  # spans handed to the current helper
        self._done = 0  # of those, sent, spooled or dropped there (updated as the helper reports)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._flushes: dict[str, asyncio.Future[None]] = {}
        self._secrets: list[str] = []
        self._closing = False
        self._restarts = 0

    @property
    def counters(self) -> dict[str, int]:
        def total(key: str) -> int:
            return self._helper_counters.get(key, 0) + self._earlier.get(key, 0)

        return {
            "emitted": self._local["emitted"],
            "sent": total("sent"),
            "spooled": total("spooled"),
            "dropped": self._local["dropped"] + total("dropped") + self._lost,
            "resent": total("resent"),
            "send_failures": total("send_failures"),
        }

    @property
    def helper_pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    def add_secret(self, value: str) -> None:
        """A value never to be recorded (an injected credential): scrubbed here and in the helper."""
        self.redactor.add_secret(value)
        self._secrets.append(value)
        self._write(b"S", value.encode())

    # --- request path ----------------------------------------------------------------------------

    def emit(self, trace: Trace) -> None:
        """Record a finished trace: its rows are appended to the batch being filled (a few µs; no
        I/O, no redaction walk, never blocks). Past `queue_max_spans` handed to the helper and not
        yet sent, spooled or dropped there (the pipe, its queue), the trace is counted as dropped."""
        spans = span_count(trace)
        if self._handed - self._done + self._builder.spans + spans > self.config.queue_max_spans:
            self._local["dropped"] += spans
            return
        builder = self._builder
        try:
            builder.add(trace)
        except Exception:  # a bad trace must not stop recording; it is logged and dropped
            logger.exception("could not record a trace; dropped")
            self._local["dropped"] += spans
            return
        if builder.spans >= self.config.batch_spans or builder.payload_bytes >= MAX_BATCH_BYTES:
            self._hand_off()

    def _hand_off(self) -> None:
        builder = self._builder
        if not builder.spans:
            return
        self._builder = BatchBuilder(self.redactor, self.config.payloads)
        try:
            frame = marshal.dumps((builder.traces, builder.hops, builder.spans, builder.payload_bytes))
        except ValueError:  # a row holds something marshal cannot carry: find it, drop it, keep the rest
            frame = self._salvage(builder)
        self._local["emitted"] += builder.spans
        if not self._write(b"R", frame):
            self._local["dropped"] += builder.spans
            return
        self._handed += builder.spans

    def _salvage(self, builder: BatchBuilder) -> bytes:
        traces: list[tuple[Any, ...]] = []
        hops: list[tuple[Any, ...]] = []
        spans = 0
        for i, row in enumerate(builder.traces):
            own = [h for h in builder.hops if h[0] == i]
            try:
                marshal.dumps((row, own))
            except ValueError:
                logger.error("could not record a trace (%s): a payload is not plain JSON data; dropped", row[7])
                continue
            index = len(traces)
            traces.append(row)
            hops.extend((index, *h[1:]) for h in own)
            spans += (4 if row[14] else 3) + len(own)
        self._local["dropped"] += builder.spans - spans
        builder.spans = spans
        return marshal.dumps((traces, hops, spans, builder.payload_bytes))

    def _write(self, kind: bytes, payload: bytes) -> bool:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None or process.stdin.is_closing():
            return False
        process.stdin.write(FRAME.pack(kind, len(payload)) + payload)
        return True

    # --- the helper --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._spawn()
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="span emitter")

    async def _spawn(self) -> None:
        # Its own session: signals for the gateway's process group (Ctrl-C, `kill -- -PGID`) reach the
        # gateway only, which closes the pipe; the helper ends on EOF after shipping what it holds.
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy._shipper",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self._handed = self._done = 0
        setup = {"recorder": self.config.model_dump(mode="json"), "instance": self.instance}
        self._write(b"C", orjson.dumps(setup))
        for secret in self._secrets:
            self._write(b"S", secret.encode())
        self._reader = asyncio.get_running_loop().create_task(self._read(self._process), name="span helper reader")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        totals: dict[str, int] = {}
        async for line in process.stdout:
            try:
                report = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            totals = report.get("counters", totals)
            self._helper_counters = totals
            self._done = _done(totals)
            token = report.get("flushed")
            if token and token in self._flushes and not self._flushes[token].done():
                self._flushes[token].set_result(None)
        await process.wait()
        for future in self._flushes.values():
            if not future.done():
                future.set_result(None)
        if self._closing:
            return
        # The helper died: what it held is lost (counted as dropped); start another.
        lost = max(0, self._handed - _done(totals))
        self._lost += lost
        for key, value in totals.items():
            self._earlier[key] = self._earlier.get(key, 0) + value
        self._helper_counters = {}
        logger.error("span shipping helper exited (%s); %d spans lost; restarting it", process.returncode, lost)
        self._restarts += 1
        await asyncio.sleep(min(5.0, 0.2 * self._restarts))
        if not self._closing:
            await self._spawn()

    async def _tick(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while not self._closing:
            await asyncio.sleep(interval)
            self._hand_off()

    async def flush(self) -> None:
        """Hand off the batch being filled and wait until the helper has shipped or spooled all it
        holds (or `send_timeout_s` twice over)."""
        self._hand_off()
        token = os.urandom(8)
        future = self._flushes[token.hex()] = asyncio.get_running_loop().create_future()
        if self._write(b"F", token):
            try:
                await asyncio.wait_for(future, self.config.send_timeout_s * 2 + 5)
            except TimeoutError:
                logger.warning("span shipping helper did not finish a flush in time")
        self._flushes.pop(token.hex(), None)

    async def close(self) -> None:
        """Hand off what is built, close the pipe, and let the helper ship or spool it all and exit."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        self._hand_off()
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), self.config.send_timeout_s + 10)
        except TimeoutError:
            logger.error("span shipping helper did not finish in time; stopping it")
            process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader

"""The flight recorder's gateway side: what a request leaves behind, and how it reaches the recorder.

On the request path the gateway fills a `Record` (timestamps and references to messages it already
has; see _record) and, once the request is answered, packs it and appends it to the batch being
filled: no I/O, no redaction walk. Full batches (and, every flush interval, a partial one) are handed
to the shipping helper, a child process (see helper/), as one MessagePack frame over a pipe. The
helper turns the records into rows (see helper/_spans), prefilters and redacts the payloads,
fills the protobuf columns, and ships them over short gRPC client streams, a few in flight at once;
the recorder's Ack means
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
import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # (the config imports the redaction patterns from this package)
    from .._config import RecorderConfig

from ._record import FRAME, Record, pack, records_header
from .helper._spans import MAX_BATCH_BYTES

logger = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # the largest pipe an unprivileged process may ask for (fs.pipe-max-size)

__all__ = ["SpanEmitter"]

_UNRECORDABLE = orjson.dumps({"slicewire.unrecorded": "payload nested too deep to record"})


def _as_json(value: Any) -> Any:
    """A parsed payload as JSON bytes: orjson goes 254 levels deep, the standard library's encoder as
    deep as the interpreter's recursion limit (orjson reads 1,024: what the gateway parsed may be deeper)."""
    if value is None or isinstance(value, bytes):
        return value
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (RecursionError, TypeError, ValueError):
        return _UNRECORDABLE


def _pack_salvaged(record: Record) -> bytes | None:
    """A record whose parsed payloads the packer refused (nested past its 254 levels), packed with every
    payload as JSON bytes (or, past every encoder's depth, a marker saying so); None if still refused."""
    record.request, record.response = _as_json(record.request), _as_json(record.response)
    for hop in record.hops or ():
        hop.request, hop.response = _as_json(hop.request), _as_json(hop.response)
    try:
        return pack(record)
    except TypeError:
        return None


def _done(helper: dict[str, int]) -> int:
    """Spans a helper no longer holds: sent (re-sends counted once), spooled or dropped."""
    return helper.get("sent", 0) - helper.get("resent", 0) + helper.get("spooled", 0) + helper.get("dropped", 0)


class SpanEmitter:
    """The gateway's side of recording: trace records, handed in batches to the shipping helper.

    emitter = SpanEmitter(config.recorder, instance="gw-1")
    await emitter.start()      # starts the helper process (proxy/recording/helper)
    emitter.emit(record)       # a Record (see _record); cheap, never awaits
    await emitter.flush()      # hand off what is built and wait until the helper shipped (or spooled) it
    await emitter.close()      # the helper ships what it can, spools the rest, and exits

    `emit` appends the record to the batch being filled. A full batch — or, every
    `flush_interval_ms`, a partial one — is written to the helper's stdin as one MessagePack frame:
    the rows, prefilter, redaction, protobuf, gRPC and spool work happens in the helper, off the serving
    thread and its core. Counters merge both sides: `emitted` and gateway-side drops are counted
    here, `sent`, `spooled`, `resent`, `send_failures` and the helper's own drops there.
    """

    def __init__(self, config: RecorderConfig, instance: str | None = None, token: str | None = None) -> None:
        assert config.target is not None
        self.config = config
        self._token = token  # the recorder's, for the helper (it looks up the local token file without one)
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self._pending: list[bytes] = [b""]  # the frame being filled: its header's slot, packed records
        self._pending_spans = 0
        self._pending_bytes = 0
        self._local = {"emitted": 0, "dropped": 0}
        self._helper_counters: dict[str, int] = {}  # the current helper's report
        self._earlier: dict[str, int] = {}  # what helpers that exited had reported
        self._lost = 0  # handed to a helper that died before reporting them
        self._handed = 0  # spans handed to the current helper
        self._taken = 0  # of those, read and taken in by the helper (updated as it reports)
        # Spans that may still be emitted before the bound: queue_max_spans - (handed - taken) - pending.
        self._room = config.queue_max_spans
        self._batch_spans = config.batch_spans
        self._process: asyncio.subprocess.Process | None = None
        self._pipe: asyncio.WriteTransport | None = None  # to the helper's stdin
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
        self._secrets.append(value)
        self._write(b"S", value.encode())

    # --- request path ----------------------------------------------------------------------------

    def emit(self, record: Record) -> None:
        """Record a finished trace: packed at once (MessagePack, ~1 µs; the record then dies with its
        request instead of waiting for the batch, where the garbage collector would walk it again and
        again) and appended to the frame being filled. No I/O, never blocks. Past `queue_max_spans`
        handed to the helper and not yet taken in (in the pipe: the helper is not keeping up), the
        trace is counted as dropped. A slow recorder is the helper's to absorb: past its own queue it
        spools."""
        spans = record.span_count()
        if spans > self._room:
            self._local["dropped"] += spans
            return
        try:
            data: bytes | None = pack(record)
        except TypeError:  # a parsed payload nested deeper than the packer goes (JSON allows it)
            data = _pack_salvaged(record)
        if data is None:
            logger.error("could not record a trace (%s): a payload is not plain JSON data; dropped", record.method)
            self._local["dropped"] += spans
            return
        self._room -= spans
        self._pending.append(data)
        self._pending_spans += spans
        self._pending_bytes += len(data)
        if self._pending_spans >= self._batch_spans or self._pending_bytes >= MAX_BATCH_BYTES:
            self._hand_off()

    def _hand_off(self) -> None:
        """Write the frame being filled to the helper: one MessagePack array of the packed records."""
        records, spans = self._pending, self._pending_spans
        if len(records) == 1:
            return
        self._pending, self._pending_spans, self._pending_bytes = [b""], 0, 0
        self._local["emitted"] += spans
        records[0] = records_header(len(records) - 1)  # the slot kept for it
        if not self._write(b"R", b"".join(records)):
            self._local["dropped"] += spans
            self._room += spans
            return
        self._handed += spans

    def _write(self, kind: bytes, payload: bytes) -> bool:
        process, pipe = self._process, self._pipe
        if process is None or pipe is None or process.returncode is not None or pipe.is_closing():
            return False
        pipe.write(FRAME.pack(kind, len(payload)))
        pipe.write(payload)
        return True

    # --- the helper --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._spawn()
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="span emitter")

    async def _spawn(self) -> None:
        # Its own session: signals for the gateway's process group (Ctrl-C, `kill -- -PGID`) reach the
        # gateway only, which closes the pipe; the helper ends on EOF after shipping what it holds.
        # The pipe is made here, not by asyncio, to make it large: a whole frame (a batch) fits at
        # once, so handing it over is one write, never a drip of partial writes.
        if self._pipe is not None:  # the pipe to a helper that died
            self._pipe.close()
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.recording.helper",
                stdin=read_end, stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(read_end)
        self._pipe, _ = await asyncio.get_running_loop().connect_write_pipe(
            asyncio.Protocol, os.fdopen(write_end, "wb", buffering=0)
        )
        self._handed = self._taken = 0
        self._room = self.config.queue_max_spans - self._pending_spans
        setup = {"recorder": self.config.model_dump(mode="json"), "instance": self.instance, "token": self._token}
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
            taken = totals.get("emitted", 0)
            self._room += taken - self._taken
            self._taken = taken
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
        if self._pipe is not None and not self._pipe.is_closing():
            self._pipe.close()
        try:
            await asyncio.wait_for(process.wait(), self.config.send_timeout_s + 10)
        except TimeoutError:
            logger.error("span shipping helper did not finish in time; stopping it")
            process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader

"""The flight recorder's shipping helper: a child process of the gateway that turns trace records into
SpanBatches (rows, prefilter, redaction, protobuf columns) and sends them to the recorder over gRPC,
spooling to disk while the recorder is away.

The gateway keeps each request's record (see _record) and hands full batches of records to this
process over a pipe; everything after that — rows, prefilter, redaction, protobuf, gRPC, spool: the
work that cost the gateway most of recording's price (bench/README.md) — happens here, on whatever
core the OS gives it. Nothing leaves the
gateway's host unredacted: the helper redacts before anything is sent or spooled.

Pipe protocol, gateway -> helper (stdin), frames of `kind (1 byte) | length (4 bytes BE) | payload`:

    C  {"recorder": RecorderConfig, "instance": str}    first frame, JSON
    R  trace records: one MessagePack array of them (see _record)
    S  a secret value (UTF-8) to scrub wherever it appears
    F  a flush token (8 bytes): ship everything now, then answer with it
    EOF: ship (or spool) everything, report, exit

helper -> gateway (stdout), one JSON object per line: {"counters": {...}} after work, and
{"flushed": token, "counters": {...}} after a flush.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import sys
from collections import deque
from pathlib import Path
from typing import Any

import grpc
import orjson
import ormsgpack

from proto import batch_size, pb, pb_grpc
from proto._access import TOKEN_ENV, bearer, local_token

from ..._config import RecorderConfig
from .._record import FRAME, Record
from .._redact import Redactor
from ._sessions import ModernSessions
from ._spans import MAX_BATCH_BYTES, BatchBuilder

logger = logging.getLogger(__name__)

__all__ = ["Shipper", "main", "read_records", "read_spool"]

_LEN = struct.Struct(">I")
_BATCHES_PER_STREAM = 8
_STREAMS_IN_FLIGHT = 4


def read_spool(path: Path) -> list[Any]:
    """The SpanBatches waiting in a spool file (a partial last record is ignored, with a warning)."""
    data = path.read_bytes()
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


class Shipper:
    """Bounded queue -> batches -> gRPC, with a spool for when the recorder is away. Runs in the
    shipping helper process (see `main`); tests drive it in-process.

    shipper = Shipper(config.recorder, instance="gw-1")
    await shipper.start()
    shipper.add_records(records)       # records filled by the gateway (see _record)
    await shipper.close()                                  # ships what it can, spools the rest
    """

    def __init__(self, config: RecorderConfig, instance: str | None = None, token: str | None = None) -> None:
        assert config.target is not None
        self.config = config
        self.instance = instance or f"gateway-{os.getppid()}"
        # The recorder's token: given (recorder.token_file or $SLICEWIRE_RECORDER_TOKEN, read by the gateway),
        # else found in the token file a recorder on this machine keeps: read once, and again after a failed
        # send (the recorder may start after the gateway, or restart with another token).
        self._token = token
        self._found: str | None = None
        self._refused = False  # the recorder said UNAUTHENTICATED (logged once per run of refusals)
        self.redactor = Redactor.for_recorder(config)
        self.sessions = ModernSessions()  # 2026-07-28 runs, followed across batches
        self._queue: deque[BatchBuilder] = deque()  # full builders waiting for the background task
        self._queued_spans = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self.spool = Path(config.spool_dir) / "spans.spool"
        self.counters = {
            "emitted": 0, "sent": 0, "spooled": 0, "dropped": 0, "resent": 0, "send_failures": 0, "payloads_replaced": 0
        }  # fmt: skip
        self._closing = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._recorder_away = False

    # --- rows in ------------------------------------------------------------------------------------

    def add_records(self, records: list[Any]) -> None:
        """A batch of records from the gateway (see _record: `Record`s, or their arrays as they came over
        the pipe), turned into rows here. When `queue_max_spans` are already waiting for the recorder
        (it is slower than the traffic), the rows go to the spool instead, to be re-sent when the queue
        has drained; only a spool that is full or unwritable drops spans (counted). A record that cannot
        be read is dropped (counted)."""
        builder = BatchBuilder(self.redactor, self.config.payloads, self.sessions)
        for item in records:
            try:
                builder.add(item if isinstance(item, Record) else Record.from_row(item))
            except Exception:  # a bad record must not stop recording; it is logged and dropped
                logger.exception("shipping helper: could not read a trace record; dropped")
                self.counters["emitted"] += self._spans_of(item)
                self.counters["dropped"] += self._spans_of(item)
                continue
            if builder.spans >= self.config.batch_spans or builder.payload_bytes >= MAX_BATCH_BYTES:
                self._add_builder(builder)
                builder = BatchBuilder(self.redactor, self.config.payloads, self.sessions)
        if builder.spans:
            self._add_builder(builder)

    @staticmethod
    def _spans_of(item: Any) -> int:
        try:
            return (item if isinstance(item, Record) else Record.from_row(item)).span_count()
        except Exception:
            return 0

    def _add_builder(self, builder: BatchBuilder) -> None:
        spans = builder.spans
        self.counters["emitted"] += spans
        if self._queued_spans + spans > self.config.queue_max_spans:
            batch = self._batch(builder)
            if batch is not None:
                self._spool([batch])
            return
        self._queue.append(builder)
        self._queued_spans += spans
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
        while self._queue:
            # What is built is sent (or spooled) before more than a few streams' worth is built, so
            # a recorder that falls behind shows up as a longer queue (bounded) rather than as an
            # unbounded pile of built batches.
            batches: list[Any] = []
            while self._queue and len(batches) < _BATCHES_PER_STREAM:
                batch = self._take_batch()
                if batch is not None:
                    batches.append(batch)
                await asyncio.sleep(0)
            if not batches:
                continue
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
        return self._batch(builder)

    def _batch(self, builder: BatchBuilder) -> Any:
        """The builder's SpanBatch; None (its spans counted as dropped, never silently lost) when it
        cannot be made. A payload that cannot be redacted does not get here: it is stored as a marker."""
        try:
            batch = builder.batch(self.instance)
        except Exception:
            logger.exception("shipping helper: a batch of %d spans could not be built; dropped", builder.spans)
            self.counters["dropped"] += builder.spans
            return None
        finally:
            self.counters["payloads_replaced"] = self.redactor.replaced
        return batch

    async def _send(self, batches: list[Any]) -> bool:
        try:
            if self._token is None and self._found is None:
                self._found = local_token(self.config.target or "")
            metadata = bearer(self._token or self._found)
            ack = await self._stub.Record(iter(batches), timeout=self.config.send_timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            self._found = None
            self.counters["send_failures"] += 1
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.UNAUTHENTICATED and not self._refused:
                logger.warning(
                    "the recorder at %s refused the gateway's token; spans are spooled until it accepts one "
                    "(set recorder.token_file or $%s)", self.config.target, TOKEN_ENV,
                )  # fmt: skip
            self._refused = code == grpc.StatusCode.UNAUTHENTICATED
            logger.debug("recorder send failed: %s", code)
            return False
        self._refused = False
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
        return read_spool(self.spool)

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
        if self._queue:
            await self.flush()  # sends, or spools once the recorder fails
        if self._channel is not None:
            await self._channel.close()


# --- the helper process ------------------------------------------------------------------------------


def read_records(frame: bytes) -> list[Any]:
    """The trace records in an R frame (an unreadable frame is dropped, with an error)."""
    try:
        records = ormsgpack.unpackb(frame)
    except (ormsgpack.MsgpackDecodeError, ValueError) as exc:
        logger.error("shipping helper: an unreadable frame of records (%s); dropped", exc)
        return []
    if not isinstance(records, list):
        logger.error("shipping helper: a frame of records that is not an array; dropped")
        return []
    return records


def _report(counters: dict[str, int], **extra: Any) -> None:
    try:
        sys.stdout.buffer.write(orjson.dumps({"counters": counters, **extra}) + b"\n")
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        pass  # the gateway died (killed): nobody reads its counters; the spans were shipped all the same


async def _serve(reader: asyncio.StreamReader) -> None:
    kind, length = FRAME.unpack(await reader.readexactly(FRAME.size))
    if kind != b"C":
        raise RuntimeError(f"expected the config frame first, got {kind!r}")
    setup = orjson.loads(await reader.readexactly(length))
    shipper = Shipper(RecorderConfig.model_validate(setup["recorder"]), setup["instance"], setup.get("token"))
    await shipper.start()
    reported: dict[str, int] = {}

    async def report_changes() -> None:
        nonlocal reported
        while True:
            await asyncio.sleep(0.1)
            if shipper.counters != reported:
                reported = dict(shipper.counters)
                _report(reported)

    reporter = asyncio.get_running_loop().create_task(report_changes())
    try:
        while True:
            try:
                kind, length = FRAME.unpack(await reader.readexactly(FRAME.size))
                payload = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                break  # the gateway closed the pipe: finish up
            if kind == b"R":
                shipper.add_records(read_records(payload))
            elif kind == b"S":
                shipper.redactor.add_secret(payload.decode())
            elif kind == b"F":
                await shipper.flush()
                reported = dict(shipper.counters)
                _report(reported, flushed=payload.hex())
    finally:
        reporter.cancel()
        await shipper.close()
        _report(dict(shipper.counters), closed=True)


def main() -> None:
    """`python -m proxy.recording.helper`: started by the gateway's SpanEmitter, never by hand."""
    # The helper's life is the pipe's: it ends when the gateway closes it — on shutdown, or by dying,
    # which closes it too — after shipping or spooling everything it holds. The gateway starts it in
    # a session of its own, so signals for the gateway's process group (Ctrl-C, `kill -- -PGID`) do
    # not reach it; a SIGINT or SIGTERM sent to it directly is ignored for the same reason.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    async def run() -> None:
        reader = asyncio.StreamReader(limit=2**26)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(sys.stdin.fileno(), "rb", buffering=0)
        )
        await _serve(reader)

    asyncio.run(run())

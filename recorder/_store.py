"""The recorder's DuckDB file, behind one writer thread.

Every write goes through one thread and one connection, in batches (group commit): concurrent
`Record` streams queue their span batches, the writer turns everything queued into one Arrow table,
inserts it with `INSERT OR IGNORE` (span ids are the primary key, so re-sent spans are counted as
duplicates, not stored twice), folds the new spans into `sessions`, commits, and only then
resolves each caller's future — so an Ack means "durably stored".

Reads run on their own cursors (DuckDB's MVCC), so queries see committed data while writes go on.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from proto import pb

from ._schema import migrate

logger = logging.getLogger(__name__)

__all__ = ["QueryRefused", "SpanStore", "StoreError", "WriteResult", "spans_to_arrow"]

_KIND = {pb.SPAN_KIND_INTERNAL: "INTERNAL", pb.SPAN_KIND_SERVER: "SERVER", pb.SPAN_KIND_CLIENT: "CLIENT"}
_DIRECTION = {
    pb.DIRECTION_CLIENT_TO_GATEWAY: "client->gateway",
    pb.DIRECTION_GATEWAY_TO_BACKEND: "gateway->backend",
    pb.DIRECTION_BACKEND_TO_GATEWAY: "backend->gateway",
    pb.DIRECTION_GATEWAY_TO_CLIENT: "gateway->client",
}
_MESSAGE = {
    pb.MESSAGE_KIND_REQUEST: "request",
    pb.MESSAGE_KIND_NOTIFICATION: "notification",
    pb.MESSAGE_KIND_RESULT: "result",
    pb.MESSAGE_KIND_ERROR: "error",
}
_STATUS = {pb.STATUS_CODE_UNSET: "UNSET", pb.STATUS_CODE_OK: "OK", pb.STATUS_CODE_ERROR: "ERROR"}

_COLUMNS = [
    ("span_id", pa.string()),
    ("trace_id", pa.string()),
    ("parent_span_id", pa.string()),
    ("name", pa.string()),
    ("kind", pa.string()),
    ("session_id", pa.string()),
    ("virtual_server", pa.string()),
    ("backend", pa.string()),
    ("subject", pa.string()),
    ("direction", pa.string()),
    ("method", pa.string()),
    ("request_id", pa.string()),
    ("message_kind", pa.string()),
    ("tool_name", pa.string()),
    ("backend_tool_name", pa.string()),
    ("start_ns", pa.int64()),
    ("end_ns", pa.int64()),
    ("duration_ns", pa.int64()),
    ("status", pa.string()),
    ("error_code", pa.int32()),
    ("error_message", pa.string()),
    ("attrs", pa.string()),
    ("request_payload", pa.string()),
    ("response_payload", pa.string()),
    ("payload_truncated", pa.bool_()),
    ("protocol_era", pa.string()),
    ("protocol_version", pa.string()),
    ("replay_of", pa.string()),
    ("gateway_instance", pa.string()),
]
_SCHEMA = pa.schema(_COLUMNS)
_INSERT = f"INSERT OR IGNORE INTO spans ({', '.join(n for n, _ in _COLUMNS)}) SELECT * FROM batch"
_FOLD_SESSIONS = """
INSERT INTO sessions
SELECT session_id, any_value(virtual_server), any_value(subject), min(start_ns), max(end_ns), count(*),
       count(*) FILTER (WHERE status = 'ERROR')
FROM batch WHERE session_id IS NOT NULL GROUP BY session_id
ON CONFLICT (session_id) DO UPDATE SET
    first_ns = least(sessions.first_ns, excluded.first_ns),
    last_ns = greatest(sessions.last_ns, excluded.last_ns),
    spans = sessions.spans + excluded.spans,
    errors = sessions.errors + excluded.errors,
    subject = coalesce(sessions.subject, excluded.subject)
"""
# After a batch with duplicates, recount the sessions it touched from the spans themselves.
_RECOUNT_SESSIONS = """
INSERT OR REPLACE INTO sessions
SELECT session_id, any_value(virtual_server), any_value(subject), min(start_ns), max(end_ns), count(*),
       count(*) FILTER (WHERE status = 'ERROR')
FROM spans WHERE session_id IN (SELECT DISTINCT session_id FROM batch WHERE session_id IS NOT NULL)
GROUP BY session_id
"""
_READ_ONLY = {"SELECT", "EXPLAIN"}


class StoreError(Exception):
    """The DuckDB file could not be opened or written."""


class QueryRefused(Exception):
    """A query that is not a single read-only statement, or that failed."""


@dataclass
class WriteResult:
    received: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


def _hex(value: bytes) -> str | None:
    return value.hex() if value else None


def _text(value: bytes) -> str | None:
    return value.decode("utf-8", "replace") if value else None


def spans_to_arrow(spans: list[Any]) -> pa.Table:
    """Protobuf spans -> one Arrow table in the `spans` column order."""
    cols: list[list[Any]] = [[] for _ in _COLUMNS]
    (span_id, trace_id, parent, name, kind, session, vs, backend, subject, direction, method, request_id,
     message_kind, tool, backend_tool, start, end, duration, status, code, message, attrs, req, resp, cut,
     era, version, replay_of, instance) = cols  # fmt: skip
    for s in spans:
        span_id.append(s.span_id.hex())
        trace_id.append(s.trace_id.hex())
        parent.append(_hex(s.parent_span_id))
        name.append(s.name)
        kind.append(_KIND.get(s.kind, "INTERNAL"))
        session.append(s.session_id or None)
        vs.append(s.virtual_server or None)
        backend.append(s.backend or None)
        subject.append(s.subject or None)
        direction.append(_DIRECTION.get(s.direction))
        method.append(s.method or None)
        request_id.append(s.request_id or None)
        message_kind.append(_MESSAGE.get(s.message_kind))
        tool.append(s.tool_name or None)
        backend_tool.append(s.backend_tool_name or None)
        start.append(s.start_time_unix_nano)
        end.append(s.end_time_unix_nano)
        duration.append(max(0, s.end_time_unix_nano - s.start_time_unix_nano))
        status.append(_STATUS.get(s.status, "UNSET"))
        code.append(s.error_code or None)
        message.append(s.error_message or None)
        attrs.append(_text(s.attributes_json) or "{}")
        req.append(_text(s.request_payload))
        resp.append(_text(s.response_payload))
        cut.append(s.payload_truncated)
        era.append(s.protocol_era or None)
        version.append(s.protocol_version or None)
        replay_of.append(_hex(s.replay_of_trace_id))
        instance.append(s.gateway_instance or None)
    return pa.Table.from_arrays([pa.array(c, type=t) for c, (_, t) in zip(cols, _COLUMNS, strict=True)], schema=_SCHEMA)


class SpanStore:
    """The DuckDB file. `write()` from any thread; `query()` from any thread; `close()` flushes.

    store = SpanStore("traces.duckdb")
    store.write(batch.spans).result()   # WriteResult(received=64, stored=64)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._con = duckdb.connect(self.path)
            previous = migrate(self._con)
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        if previous == 0:
            logger.info("created trace store %s", self.path)
        self._queue: queue.Queue[tuple[pa.Table, concurrent.futures.Future[WriteResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="span-writer", daemon=True)
        self._closed = False
        self.stored = 0
        self.duplicates = 0
        self.batches = 0
        self._thread.start()

    def write(self, spans: list[Any]) -> concurrent.futures.Future[WriteResult]:
        """Queue spans for the writer. The protobuf -> Arrow conversion happens here, in the caller's
        thread, so that it overlaps with the writer's inserts (which release the GIL)."""
        future: concurrent.futures.Future[WriteResult] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(StoreError("the store is closed"))
            return future
        try:
            table = spans_to_arrow(spans)
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            future.set_exception(StoreError(f"spans could not be converted: {exc}"))
            return future
        self._queue.put((table, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending = [item]
            # Group commit: take whatever else is queued right now into the same transaction.
            while len(pending) < 256:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write(pending)
                    return
                pending.append(more)
            self._write(pending)

    def _write(self, pending: list[tuple[pa.Table, concurrent.futures.Future[WriteResult]]]) -> None:
        total = sum(table.num_rows for table, _ in pending)
        try:
            batch = pa.concat_tables([table for table, _ in pending])  # noqa: F841 - DuckDB reads it by name
            self._con.execute("BEGIN TRANSACTION")
            row = self._con.execute(_INSERT).fetchone()
            stored = int(row[0]) if row else 0
            self._con.execute(_FOLD_SESSIONS if stored == total else _RECOUNT_SESSIONS)
            self._con.execute("COMMIT")
        except (duckdb.Error, pa.ArrowException, ValueError) as exc:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            logger.exception("writing %d spans failed", total)
            for _, future in pending:
                future.set_exception(StoreError(str(exc)))
            return
        self.stored += stored
        self.duplicates += total - stored
        self.batches += 1
        # Stored counts are per transaction; split them over the callers in order (duplicates are rare
        # and only matter for the Ack's statistics, never for correctness).
        left = stored
        for table, future in pending:
            mine = min(left, table.num_rows)
            left -= mine
            future.set_result(WriteResult(table.num_rows, mine))

    def query(self, sql: str, max_rows: int = 0) -> pa.Table:
        """Run one read-only statement on its own cursor; the result as an Arrow table."""
        cursor = self._con.cursor()
        try:
            statements = cursor.extract_statements(sql)
            if len(statements) != 1 or statements[0].type.name not in _READ_ONLY:
                kinds = ", ".join(s.type.name for s in statements) or "nothing"
                raise QueryRefused(f"only one read-only SELECT is allowed; got {kinds}")
            relation = cursor.sql(sql)
            if max_rows:
                relation = relation.limit(max_rows)
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise QueryRefused(str(exc).splitlines()[0]) from None
        finally:
            cursor.close()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is written (tests, shutdown)."""
        self.write([]).result(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        started = time.monotonic()
        self._queue.put(None)
        self._thread.join()
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error:
            logger.warning("checkpoint of %s failed", self.path, exc_info=True)
        self._con.close()
        logger.info("trace store %s closed in %.2fs", self.path, time.monotonic() - started)

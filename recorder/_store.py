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

from ._schema import migrate

logger = logging.getLogger(__name__)

__all__ = ["QueryRefused", "SpanStore", "StoreError", "WriteResult", "batch_size", "batch_to_arrow", "spans_to_arrow"]

# Arrow columns in wire form (ids as bytes, enums as numbers): conversion to the stored form (hex ids,
# enum names, NULL for empty) happens inside DuckDB's INSERT, in C, not per span in Python.
_RAW = [
    ("trace_id", pa.binary()),
    ("span_id", pa.binary()),
    ("parent_span_id", pa.binary()),
    ("name", pa.string()),
    ("kind", pa.int32()),
    ("session_id", pa.string()),
    ("virtual_server", pa.string()),
    ("backend", pa.string()),
    ("subject", pa.string()),
    ("direction", pa.int32()),
    ("method", pa.string()),
    ("request_id", pa.string()),
    ("message_kind", pa.int32()),
    ("tool_name", pa.string()),
    ("backend_tool_name", pa.string()),
    ("start_time_unix_nano", pa.uint64()),
    ("end_time_unix_nano", pa.uint64()),
    ("status", pa.int32()),
    ("error_code", pa.int32()),
    ("error_message", pa.string()),
    ("attributes_json", pa.binary()),
    ("request_payload", pa.binary()),
    ("response_payload", pa.binary()),
    ("payload_truncated", pa.bool_()),
    ("protocol_era", pa.string()),
    ("protocol_version", pa.string()),
    ("replay_of_trace_id", pa.binary()),
    ("gateway_instance", pa.string()),
]
_RAW_SCHEMA = pa.schema(_RAW)
_TEXT_FROM_BYTES = ("attributes_json", "request_payload", "response_payload")

_INSERT = """
INSERT OR IGNORE INTO spans (
    span_id, trace_id, parent_span_id, name, kind, session_id, virtual_server, backend, subject, direction,
    method, request_id, message_kind, tool_name, backend_tool_name, start_ns, end_ns, duration_ns, status,
    error_code, error_message, attrs, request_payload, response_payload, payload_truncated, protocol_era,
    protocol_version, replay_of, gateway_instance)
SELECT
    lower(hex(span_id)), lower(hex(trace_id)), nullif(lower(hex(parent_span_id)), ''), name,
    CASE kind WHEN 2 THEN 'SERVER' WHEN 3 THEN 'CLIENT' ELSE 'INTERNAL' END,
    nullif(session_id, ''), nullif(virtual_server, ''), nullif(backend, ''), nullif(subject, ''),
    CASE direction WHEN 1 THEN 'client->gateway' WHEN 2 THEN 'gateway->backend'
                   WHEN 3 THEN 'backend->gateway' WHEN 4 THEN 'gateway->client' END,
    nullif(method, ''), nullif(request_id, ''),
    CASE message_kind WHEN 1 THEN 'request' WHEN 2 THEN 'notification' WHEN 3 THEN 'result' WHEN 4 THEN 'error' END,
    nullif(tool_name, ''), nullif(backend_tool_name, ''),
    start_time_unix_nano::BIGINT, end_time_unix_nano::BIGINT,
    greatest(end_time_unix_nano::BIGINT - start_time_unix_nano::BIGINT, 0),
    CASE status WHEN 1 THEN 'OK' WHEN 2 THEN 'ERROR' ELSE 'UNSET' END,
    nullif(error_code, 0), nullif(error_message, ''),
    coalesce(nullif(attributes_json, ''), '{}'), nullif(request_payload, ''), nullif(response_payload, ''),
    payload_truncated, nullif(protocol_era, ''), nullif(protocol_version, ''),
    nullif(lower(hex(replay_of_trace_id)), ''), nullif(gateway_instance, '')
FROM batch
"""
_FOLD_SESSIONS = """
INSERT INTO sessions
SELECT session_id, any_value(nullif(virtual_server, '')), any_value(nullif(subject, '')),
       min(start_time_unix_nano)::BIGINT, max(end_time_unix_nano)::BIGINT, count(*),
       count(*) FILTER (WHERE status = 2)
FROM batch WHERE session_id <> '' GROUP BY session_id
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
FROM spans WHERE session_id IN (SELECT DISTINCT session_id FROM batch WHERE session_id <> '')
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


def _text_column(values: list[bytes]) -> pa.Array:
    """UTF-8 bytes -> Arrow strings, vectorized; invalid UTF-8 (a buggy sender) is replaced, not fatal."""
    raw = pa.array(values, pa.binary())
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([v.decode("utf-8", "replace") for v in values], pa.string())


def _table(columns: dict[str, list[Any]]) -> pa.Table:
    arrays = []
    for name, kind in _RAW:
        values = columns[name]
        arrays.append(_text_column(values) if name in _TEXT_FROM_BYTES else pa.array(values, kind))
    return pa.Table.from_arrays(
        arrays, schema=pa.schema([(n, pa.string() if n in _TEXT_FROM_BYTES else t) for n, t in _RAW])
    )


def batch_size(batch: Any) -> int:
    """How many spans a SpanBatch carries, in either form."""
    return len(batch.spans) + (len(batch.columns.span_id) if batch.HasField("columns") else 0)


def batch_to_arrow(batch: Any) -> pa.Table:
    """One SpanBatch (row form, column form, or both) -> one Arrow table in wire form."""
    tables = []
    if batch.spans:
        tables.append(spans_to_arrow(list(batch.spans)))
    if batch.HasField("columns"):
        columns = batch.columns
        data = {name: list(getattr(columns, name)) for name, _ in _RAW}
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ValueError(f"SpanColumns columns differ in length: {sorted(lengths)}")
        tables.append(_table(data))
    if not tables:
        return _table({name: [] for name, _ in _RAW})
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def spans_to_arrow(spans: list[Any]) -> pa.Table:
    """Protobuf spans (row form) -> one Arrow table in wire form."""
    return _table({name: [getattr(s, name) for s in spans] for name, _ in _RAW})


def _settle(
    future: concurrent.futures.Future[WriteResult], result: WriteResult | None = None, error: Exception | None = None
) -> None:
    """Resolve a caller's future unless it gave up (a cancelled stream): the writer must never die of it."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    except concurrent.futures.InvalidStateError:
        pass  # cancelled between the check and the call


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

    def write(self, spans: list[Any] | Any) -> concurrent.futures.Future[WriteResult]:
        """Queue spans (a list of Span, or a SpanBatch in either form) for the writer. The protobuf ->
        Arrow conversion happens here, in the caller's thread, overlapping the writer's inserts."""
        future: concurrent.futures.Future[WriteResult] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(StoreError("the store is closed"))
            return future
        try:
            table = spans_to_arrow(spans) if isinstance(spans, list) else batch_to_arrow(spans)
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
                _settle(future, error=StoreError(str(exc)))
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
            _settle(future, WriteResult(table.num_rows, mine))

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

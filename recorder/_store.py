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
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from proto import batch_size

from ._schema import migrate
from ._spans import CHILD_ID_MACRO, EXPAND, HOP, HOP_FROM_TRACE, SPAN, TRACE, unset

logger = logging.getLogger(__name__)

__all__ = [
    "Converted",
    "QueryRefused",
    "SpanStore",
    "StoreError",
    "WriteResult",
    "batch_to_arrow",
    "convert",
    "spans_to_arrow",
]

# Spans arrive in wire form (ids as bytes, enums as numbers, SPAN): the stored form (hex ids, enum names,
# NULL for empty) is made inside DuckDB's INSERT, in C, not per span in Python.
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
LINGER_S = 0.05  # how long the writer waits for more batches to commit together
GROUP_SPANS = 16384  # ... unless this many spans are already waiting


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


_SPAN_SCHEMA = pa.schema([(n, pa.string() if n in _TEXT_FROM_BYTES else t) for n, t in SPAN])
_PAYLOADS = ("headers_json", "request_payload", "response_payload")


def _table(
    columns: dict[str, list[Any]],
    fields: list[tuple[str, Any]] = SPAN,
    text: tuple[str, ...] = _TEXT_FROM_BYTES,
    extra: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """Columns (lists) -> an Arrow table of `fields` (`text` ones as strings) plus `extra` arrays."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    names, arrays = [], []
    for name, kind in fields:
        values = columns[name]
        names.append(name)
        arrays.append(_text_column(values) if name in text else pa.array(values, kind))
    for name, array in (extra or {}).items():
        names.append(name)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=names)


@dataclass
class Converted:
    """One SpanBatch in Arrow form: spans as they came, traces and hops still to be expanded."""

    spans: pa.Table | None
    traces: pa.Table | None
    hops: pa.Table | None
    size: int  # spans, once expanded


def _column(source: Any, name: str, rows: int) -> list[Any]:
    """A column of a columns message; one a sender did not fill (a gateway older than the field, e.g. a
    batch from its spool) is its field's default in every row."""
    values = list(getattr(source, name))
    if not values and rows:
        return [unset(source, name)] * rows
    return values


def convert(batch: Any) -> Converted:
    """One SpanBatch (any form) -> Arrow tables in wire form. Hops get their trace's shared fields."""
    tables = []
    if batch.spans:
        tables.append(spans_to_arrow(list(batch.spans)))
    if batch.HasField("columns"):
        columns = batch.columns
        tables.append(_table({name: list(getattr(columns, name)) for name, _ in SPAN}))
    spans = (tables[0] if len(tables) == 1 else pa.concat_tables(tables)) if tables else None
    traces = hops = None
    if batch.HasField("traces"):
        source = batch.traces
        n = len(source.span_id)
        sender = pa.array([batch.sender] * n, pa.string())
        traces = _table({name: _column(source, name, n) for name, _ in TRACE}, TRACE, _PAYLOADS,
                        {"gateway_instance": sender})  # fmt: skip
        hop_source = batch.hops
        index = list(hop_source.trace_index)
        if index and max(index) >= n:
            raise ValueError(f"a hop names trace {max(index)} of a batch with {n}")
        rows = pa.array(index, pa.uint32())
        shared = {name: traces[name].take(rows) for name in (*HOP_FROM_TRACE, "gateway_instance")}
        hops = _table({name: _column(hop_source, name, len(index)) for name, _ in HOP}, HOP, _PAYLOADS, shared)
    return Converted(spans, traces, hops, batch_size(batch))


@contextlib.contextmanager
def _registered(con: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[None]:
    """Arrow tables visible to `con` by name for the block. Registered explicitly: the store's database
    runs with external access off, which also turns off DuckDB's scans of Python variables."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            con.unregister(name)


def batch_to_arrow(batch: Any) -> pa.Table:
    """One SpanBatch (any form) -> one Arrow table of spans in wire form, traces expanded."""
    con = duckdb.connect()
    try:
        con.execute(CHILD_ID_MACRO)
        return _spans_of([convert(batch)], con)
    finally:
        con.close()


def _spans_of(items: list[Converted], con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every span the converted batches carry, traces expanded by `con` (which has the id macro)."""
    tables = [item.spans for item in items if item.spans is not None]
    traces = [item.traces for item in items if item.traces is not None]
    if traces:
        hops = pa.concat_tables([item.hops for item in items if item.hops is not None])
        with _registered(con, trace_rows=pa.concat_tables(traces), hop_rows=hops):
            expanded = con.sql(EXPAND).to_arrow_table()
        tables.append(expanded.rename_columns(_SPAN_SCHEMA.names).cast(_SPAN_SCHEMA))
    if not tables:
        return _SPAN_SCHEMA.empty_table()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def spans_to_arrow(spans: list[Any]) -> pa.Table:
    """Protobuf spans (row form) -> one Arrow table in wire form."""
    return _table({name: [getattr(s, name) for s in spans] for name, _ in SPAN})


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
            self._con.execute(CHILD_ID_MACRO)
            # The database is shared with the Query RPC's cursors: no file, network or extension access
            # (read_text('/etc/...'), COPY, ATTACH), and settings frozen, for every connection of it.
            self._con.execute("SET enable_external_access = false")
            self._con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None
        if previous == 0:
            logger.info("created trace store %s", self.path)
        self._queue: queue.Queue[tuple[Converted, concurrent.futures.Future[WriteResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="span-writer", daemon=True)
        self._closed = False
        self.stored = 0
        self.duplicates = 0
        self.batches = 0
        self._thread.start()

    def write(self, spans: list[Any] | Any) -> concurrent.futures.Future[WriteResult]:
        """Queue spans (a list of Span, or a SpanBatch in any form) for the writer. The protobuf ->
        Arrow conversion happens here, in the caller's thread, overlapping the writer's inserts; traces
        are expanded into spans by the writer, all pending batches in one query."""
        future: concurrent.futures.Future[WriteResult] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(StoreError("the store is closed"))
            return future
        try:
            if isinstance(spans, list):
                item = Converted(spans_to_arrow(spans), None, None, len(spans))
            else:
                item = convert(spans)
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            future.set_exception(StoreError(f"spans could not be converted: {exc}"))
            return future
        self._queue.put((item, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending = [item]
            spans = item[0].size
            # Group commit: what is queued, and what arrives within LINGER_S, goes into the same
            # transaction. A transaction costs ~1-2 ms whatever its size (the commit, the session
            # fold): one per 256-span batch would spend most of the writer's time there.
            deadline = time.monotonic() + LINGER_S
            while len(pending) < 256 and spans < GROUP_SPANS:
                try:
                    wait = deadline - time.monotonic()
                    more = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write(pending)
                    return
                pending.append(more)
                spans += more[0].size
            self._write(pending)

    def _write(self, pending: list[tuple[Converted, concurrent.futures.Future[WriteResult]]]) -> None:
        total = sum(item.size for item, _ in pending)
        try:
            batch = _spans_of([item for item, _ in pending], self._con)
            if batch.num_rows != total:  # a sender's span count that does not match what it sent
                raise ValueError(f"batches announced {total} spans and carried {batch.num_rows}")
            with _registered(self._con, batch=batch):
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
        for item, future in pending:
            mine = min(left, item.size)
            left -= mine
            _settle(future, WriteResult(item.size, mine))

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the store's connection, for another thread (the OTLP feed); close it after use."""
        return self._con.cursor()

    def query(self, sql: str, max_rows: int = 0) -> pa.Table:
        """Run one SELECT on its own cursor, inside a READ ONLY transaction (DuckDB refuses any write in
        it, a data-modifying CTE included), on a database without external access; the result as an
        Arrow table. Only a single SELECT or EXPLAIN statement is taken."""
        cursor = self._con.cursor()
        try:
            statements = cursor.extract_statements(sql)
            if len(statements) != 1 or statements[0].type.name not in _READ_ONLY:
                kinds = ", ".join(s.type.name for s in statements) or "nothing"
                raise QueryRefused(f"only one read-only SELECT is allowed; got {kinds}")
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            relation = cursor.sql(sql)
            if max_rows:
                relation = relation.limit(max_rows)
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise QueryRefused(str(exc).splitlines()[0]) from None
        finally:
            cursor.close()  # ends (rolls back) the read-only transaction

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

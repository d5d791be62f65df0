"""The DuckDB store on real files: batches, de-duplication, sessions, the waterfall, read-only queries."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from proto import pb, session_key
from recorder import SCHEMA_VERSION, QueryRefused, SchemaError, SpanStore, connect


def span(trace: int, span: int, parent: int | None, start: int, end: int, **kw: object) -> pb.Span:
    return pb.Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=kw.pop("name", f"span {span}"),  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        session_id=kw.pop("session_id", "s1"),  # type: ignore[arg-type]
        attributes_json=b'{"mcp.method.name": "tools/call"}',
        **kw,
    )


def test_write_dedupe_sessions_and_waterfall(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "t.duckdb")
    batch = [
        span(1, 1, None, 1000, 2000, name="tools/call get_issue", kind=pb.SPAN_KIND_SERVER, tool_name="get_issue"),
        span(1, 2, 1, 1100, 1200, name="parse"),
        span(1, 3, 1, 1200, 1900, name="tools/call get_issue", kind=pb.SPAN_KIND_CLIENT, backend="/gh"),
        span(1, 4, 3, 1500, 1500, name="notifications/progress"),
        span(2, 5, None, 3000, 3500, status=pb.STATUS_CODE_ERROR, error_code=-32602, error_message="Unknown tool: x"),
    ]
    assert store.write(batch).result(10).stored == 5
    again = store.write([*batch[:2], span(3, 6, None, 4000, 4100, session_id="s2")]).result(10)
    assert (again.received, again.stored, again.duplicates) == (3, 1, 2)
    rows = store.query("SELECT span_id, depth, offset_ns, duration_ns, self_ns FROM waterfall WHERE trace_id = "
                       f"'{(1).to_bytes(16, 'big').hex()}' ORDER BY start_ns")  # fmt: skip
    as_dicts = rows.to_pylist()
    assert [r["depth"] for r in as_dicts] == [0, 1, 1, 2]
    assert as_dicts[0]["self_ns"] == 1000 - 100 - 700  # root minus its direct children
    assert as_dicts[2]["offset_ns"] == 200
    sessions = {r["session_id"]: r for r in store.query("SELECT * FROM sessions").to_pylist()}
    assert sessions["s1"]["spans"] == 5 and sessions["s1"]["errors"] == 1  # duplicates not counted twice
    assert sessions["s2"]["spans"] == 1
    traces = store.query("SELECT * FROM traces ORDER BY start_ns").to_pylist()
    assert traces[0]["name"] == "tools/call get_issue" and traces[0]["backends"] == "/gh" and traces[0]["spans"] == 4
    dotted = store.query("""SELECT attrs->>'$."mcp.method.name"' AS m FROM spans LIMIT 1""").to_pylist()
    assert dotted == [{"m": "tools/call"}]
    store.close()


def test_queries_are_read_only(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "t.duckdb")
    for sql in ("DELETE FROM spans", "DROP TABLE spans", "SELECT 1; SELECT 2", "INSERT INTO sessions VALUES (1)"):
        with pytest.raises(QueryRefused):
            store.query(sql)
    with pytest.raises(QueryRefused, match="nope"):
        store.query("SELECT * FROM nope")
    store.close()


def test_queries_can_neither_write_nor_reach_files(tmp_path: Path) -> None:
    """A SELECT that writes (a data-modifying CTE, which DuckDB classes as SELECT) or reads a file, a
    database or another setting is refused by DuckDB itself, and the recording is intact afterwards."""
    secret = tmp_path / "state.db"
    secret.write_text("the state DB")
    store = SpanStore(tmp_path / "t.duckdb")
    store.write([span(1, 1, None, 0, 10, session_id="s")]).result()
    for sql in (
        "WITH d AS (DELETE FROM spans RETURNING 1) SELECT count(*) FROM d",
        "WITH d AS (UPDATE spans SET name = 'x' RETURNING 1) SELECT count(*) FROM d",
        f"SELECT content FROM read_text('{secret}')",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM read_parquet('{tmp_path}/*.parquet')",
        "SET enable_external_access = true",
    ):
        with pytest.raises(QueryRefused):
            store.query(sql)
    assert store.query("SELECT count(*) AS n FROM spans").to_pylist() == [{"n": 1}]
    store.write([span(1, 2, 1, 1, 5, session_id="s")]).result()  # the writer is unaffected
    assert store.query("SELECT count(*) AS n FROM spans").to_pylist() == [{"n": 2}]
    store.close()


def test_reopen_and_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    SpanStore(path).close()
    store = SpanStore(path)  # migrations are not re-applied
    store.close()
    con = duckdb.connect(str(path))
    assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    con.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(SchemaError, match="upgrade Slicewire"):
        SpanStore(path)


def test_file_reader_for_a_stopped_recorder(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    store = SpanStore(path)
    store.write([span(7, 9, None, 10, 20, name="tools/list")]).result(10)
    store.close()
    with connect(str(path)) as rec:
        assert not rec.live
        assert rec.rows("SELECT name FROM traces") == [{"name": "tools/list"}]
        assert rec.sql("SELECT count(*) AS n FROM spans").fetchall() == [(1,)]


def test_writer_survives_a_caller_that_gave_up(tmp_path: Path) -> None:
    """A Record stream cancelled by its client (timeout) leaves a cancelled future; the writer goes on."""
    store = SpanStore(tmp_path / "t.duckdb")
    abandoned = [store.write([span(9, i, None, 1, 2)]) for i in range(1, 50)]
    for future in abandoned:
        future.cancel()
    assert store.write([span(9, 100, None, 1, 2)]).result(10).stored == 1  # still writing
    assert store.query("SELECT count(*) AS n FROM spans").to_pylist() == [{"n": 50}]  # abandoned spans stored too
    store.close()


def test_a_session_is_found_by_its_key_or_by_the_raw_id(tmp_path: Path) -> None:
    """A 2025-11-25 session is stored under a digest of its id; a user holding the id (from a client's
    log) finds it all the same, in the listing and the session view."""
    from proxy.recording import Record
    from proxy.recording._redact import Redactor
    from proxy.recording.helper._spans import BatchBuilder
    from recorder._views import TraceFilter, list_traces, session_rows

    record = Record.begin([])
    record.received("tools/list", 1, b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    record.parsed("legacy", "2025-11-25", "3f1c0a9e-raw-session")
    record.answered(b"{}", "/v")
    builder = BatchBuilder(Redactor())
    builder.add(record)
    store = SpanStore(tmp_path / "t.duckdb")
    store.write(builder.batch("gw")).result(10)
    store.close()
    with connect(str(tmp_path / "t.duckdb")) as rec:
        (key,) = {row["session_id"] for row in rec.rows("SELECT session_id FROM spans")}
        assert key == session_key("3f1c0a9e-raw-session") and "raw-session" not in key
        for name in (key, "3f1c0a9e-raw-session"):
            assert [t["name"] for t in list_traces(rec, TraceFilter(session=name))] == ["tools/list"]
            assert session_rows(rec, name)["session"]["session_id"] == key
        assert list_traces(rec, TraceFilter(session="another")) == []

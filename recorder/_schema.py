"""The recorder's DuckDB schema, versioned, with forward migrations.

`schema_version` holds one row per applied migration. Opening a file runs the migrations it has
not seen, in order, inside one transaction each; a file written by a newer Slicewire is refused.
"""

from __future__ import annotations

import duckdb

__all__ = ["SCHEMA_VERSION", "SchemaError", "migrate"]


class SchemaError(Exception):
    """The file's schema is newer than this Slicewire understands."""


_TABLES_V1 = """
CREATE TABLE spans (
    span_id            VARCHAR PRIMARY KEY,   -- 16 hex digits
    trace_id           VARCHAR NOT NULL,      -- 32 hex digits
    parent_span_id     VARCHAR,               -- NULL for a trace's root
    name               VARCHAR NOT NULL,
    kind               VARCHAR NOT NULL,      -- SERVER, CLIENT, INTERNAL
    session_id         VARCHAR,
    virtual_server     VARCHAR,
    backend            VARCHAR,
    subject            VARCHAR,
    direction          VARCHAR,
    method             VARCHAR,
    request_id         VARCHAR,
    message_kind       VARCHAR,
    tool_name          VARCHAR,
    backend_tool_name  VARCHAR,
    start_ns           BIGINT NOT NULL,
    end_ns             BIGINT NOT NULL,
    duration_ns        BIGINT NOT NULL,
    status             VARCHAR NOT NULL,      -- UNSET, OK, ERROR
    error_code         INTEGER,
    error_message      VARCHAR,
    attrs              JSON,                  -- OTel keys contain dots: attrs->>'$."mcp.method.name"'
    request_payload    VARCHAR,               -- redacted JSON; cut at the cap when payload_truncated
    response_payload   VARCHAR,
    payload_truncated  BOOLEAN NOT NULL,
    protocol_era       VARCHAR,
    protocol_version   VARCHAR,
    replay_of          VARCHAR,
    gateway_instance   VARCHAR,
    recorded_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);
-- No secondary indexes: they cost ~20% of ingest, and DuckDB's zone maps serve lookups by trace or
-- session (spans arrive roughly in time order) well enough.

CREATE TABLE sessions (
    session_id      VARCHAR PRIMARY KEY,
    virtual_server  VARCHAR,
    subject         VARCHAR,
    first_ns        BIGINT NOT NULL,
    last_ns         BIGINT NOT NULL,
    spans           BIGINT NOT NULL,
    errors          BIGINT NOT NULL
);

"""

# The views, over the `spans` table (or any relation of its shape: a Parquet export).
VIEWS_V1 = """
-- A trace's root: no parent, or a parent outside the recording (the caller's span, via traceparent).
CREATE VIEW roots AS
SELECT s.* FROM spans s ANTI JOIN spans p ON p.span_id = s.parent_span_id;

-- One row per trace: its root span and totals.
CREATE VIEW traces AS
SELECT
    s.trace_id,
    any_value(r.name) AS name,
    any_value(s.session_id) AS session_id,
    any_value(s.virtual_server) AS virtual_server,
    any_value(s.subject) AS subject,
    any_value(r.tool_name) AS tool_name,
    string_agg(DISTINCT s.backend, ',') FILTER (WHERE s.backend IS NOT NULL AND s.backend <> '') AS backends,
    min(s.start_ns) AS start_ns,
    max(s.end_ns) AS end_ns,
    max(s.end_ns) - min(s.start_ns) AS duration_ns,
    count(*) AS spans,
    count(*) FILTER (WHERE s.status = 'ERROR') AS errors,
    any_value(s.replay_of) AS replay_of
FROM spans s
LEFT JOIN roots r ON r.span_id = s.span_id
GROUP BY s.trace_id;

-- Every span placed in its trace: depth, offset from the trace's start, duration, self time.
CREATE VIEW waterfall AS
WITH RECURSIVE tree(span_id, depth) AS (
    SELECT span_id, 0 FROM roots
    UNION ALL
    SELECT c.span_id, t.depth + 1 FROM spans c JOIN tree t ON c.parent_span_id = t.span_id
),
starts AS (SELECT trace_id, min(start_ns) AS trace_start FROM spans GROUP BY trace_id),
children AS (
    SELECT parent_span_id AS span_id, CAST(sum(duration_ns) AS BIGINT) AS child_ns
    FROM spans WHERE parent_span_id IS NOT NULL GROUP BY parent_span_id
)
SELECT
    s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.direction, s.method, s.tool_name,
    s.backend, s.backend_tool_name, s.session_id, s.virtual_server, s.status, s.error_code, s.error_message,
    coalesce(t.depth, 0) AS depth,
    CAST(s.start_ns - st.trace_start AS BIGINT) AS offset_ns,
    s.duration_ns,
    CAST(greatest(s.duration_ns - coalesce(c.child_ns, 0), 0) AS BIGINT) AS self_ns,
    s.start_ns, s.end_ns, s.attrs, s.request_payload, s.response_payload, s.payload_truncated
FROM spans s
JOIN starts st USING (trace_id)
LEFT JOIN tree t USING (span_id)
LEFT JOIN children c USING (span_id);
"""

_V1 = _TABLES_V1 + VIEWS_V1.lstrip("\n")

# Version 2: an ingest sequence on spans (the order spans were stored in, for continuous export),
# and the export positions (one row per OTLP destination: the last `seq` it acknowledged).
_V2 = """
CREATE SEQUENCE span_seq;
ALTER TABLE spans ADD COLUMN seq BIGINT DEFAULT nextval('span_seq');
CREATE TABLE exports (
    name        VARCHAR PRIMARY KEY,   -- the destination: protocol and endpoint
    position    BIGINT NOT NULL,       -- spans with seq <= position have been exported
    exported    BIGINT NOT NULL,       -- spans exported so far
    updated_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
"""

# Migration N turns a version N-1 file into version N. Append; never edit a released entry.
_MIGRATIONS: list[str] = [_V1, _V2]
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the file's schema up to SCHEMA_VERSION. Returns the version it had before."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise SchemaError(
            f"the trace file has schema version {current}; this Slicewire knows up to {SCHEMA_VERSION}: "
            "upgrade Slicewire"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(_MIGRATIONS[version - 1])
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
            con.execute("COMMIT")
        except duckdb.Error:
            con.execute("ROLLBACK")
            raise
    return current

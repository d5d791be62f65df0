"""Reading a recording: from a live recorder over gRPC, from its DuckDB file when it is stopped, or from
a Parquet export of its spans."""

from __future__ import annotations

import os
from typing import Any

import duckdb
import grpc
import pyarrow as pa

from proto import pb, pb_grpc, session_key
from proto._access import TOKEN_ENV, bearer, local_token, local_token_file

from ._last import last_recording
from ._schema import VIEWS_V1

__all__ = ["RecorderUnavailable", "Recording", "RecordingError", "connect", "sql_literal"]


def sql_literal(value: str) -> str:
    """`value` as a SQL string literal (quotes doubled): for the read-only queries built here and by
    the CLI, replay and notebooks, where the Query RPC takes no parameters."""
    return "'" + value.replace("'", "''") + "'"


def session_is(value: str, column: str = "session_id") -> str:
    """A SQL condition for one session, named by its key as recordings list it or by the raw
    `Mcp-Session-Id` a 2025-11-25 client holds (recorded as its key: see proto.session_key)."""
    return f"{column} IN ({sql_literal(value)}, {sql_literal(session_key(value))})"


class RecordingError(Exception):
    """The recording could not be read (recorder unreachable, file missing, query refused)."""


class RecorderUnavailable(RecordingError):
    """No recorder answers at `target`; `last_file` is the trace file it last stored in, when known."""

    def __init__(self, target: str) -> None:
        super().__init__(f"no recorder answers at {target}")
        self.target = target
        self.last_file = last_recording(target)

    def advice(self, flag: str) -> str:
        """The message, with what to do instead: read the last trace file (`flag` names the CLI's option)."""
        if self.last_file:
            return f"{self}; the recorder there last stored its spans in {self.last_file}: add {flag} {self.last_file}"
        return f"{self}: start one (slicewire up, or slicewire recorder), or read a trace file with {flag} FILE"


class Recording:
    """Query a recording with DuckDB SQL; results as DuckDB relations, pandas frames or Arrow tables.

    Tables and views: `spans`, `sessions`, `traces` (one row per trace), `waterfall` (every span
    with depth, offset from its trace's start, duration and self time).

    Attribute keys follow the OpenTelemetry conventions and contain dots, so quote them inside the
    JSON path: ``attrs->>'$."mcp.method.name"'`` (not ``attrs->>'$.mcp.method.name'``, which DuckDB
    reads as nested objects and answers with NULL).

        rec = recorder.connect("127.0.0.1:4317")          # live recorder
        rec = recorder.connect("traces.duckdb")           # stopped recorder: the file itself
        rec = recorder.connect("session.parquet")         # an export (slicewire export)
        rec.df("SELECT tool_name, count(*) FROM spans GROUP BY 1")
    """

    def __init__(self, target: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._local = duckdb.connect()
        self._file: duckdb.DuckDBPyConnection | None = None
        self._channel: grpc.Channel | None = None
        if _is_parquet(target):
            self._file = _parquet(target)
        elif _is_file(target):
            if not os.path.exists(target):
                raise RecordingError(f"{target}: no such trace file")
            try:
                self._file = duckdb.connect(target, read_only=True)
            except duckdb.Error as exc:
                raise RecordingError(
                    f"{target}: cannot open read-only ({str(exc).splitlines()[0]}); while a recorder is writing "
                    "it, connect to the recorder's address instead"
                ) from None
        else:
            self._channel = grpc.insecure_channel(target)
            self._stub = pb_grpc.RecorderStub(self._channel)
            self._metadata = bearer(token or local_token(target))

    @property
    def live(self) -> bool:
        return self._channel is not None

    def arrow(self, query: str, max_rows: int = 0) -> pa.Table:
        if self._file is not None:
            try:
                relation = self._file.sql(query)
                if max_rows:
                    relation = relation.limit(max_rows)
                return relation.to_arrow_table()
            except duckdb.Error as exc:
                raise RecordingError(str(exc).splitlines()[0]) from None
        try:
            request = pb.QueryRequest(sql=query, max_rows=max_rows)
            chunks = self._stub.Query(request, timeout=self.timeout, metadata=self._metadata)
            data = b"".join(chunk.arrow_ipc for chunk in chunks)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise RecorderUnavailable(self.target) from None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise RecordingError(
                    f"the recorder at {self.target} refused: it needs its token (set ${TOKEN_ENV} to the "
                    f"contents of its token file, {local_token_file(self.target)} on the recorder's machine)"
                ) from None
            raise RecordingError(exc.details() or str(code)) from None
        return pa.ipc.open_stream(data).read_all()

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """The result as a DuckDB relation (query it further, `.df()`, `.fetchall()`)."""
        if self._file is not None:
            try:
                return self._file.sql(query)
            except duckdb.Error as exc:
                raise RecordingError(str(exc).splitlines()[0]) from None
        return self._local.from_arrow(self.arrow(query))

    def df(self, query: str) -> Any:
        """The result as a pandas DataFrame (needs pandas)."""
        return self.arrow(query).to_pandas()

    def rows(self, query: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.arrow(query).to_pylist()
        return rows

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._file is not None:
            self._file.close()
        self._local.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SESSIONS_VIEW = """
CREATE VIEW sessions AS
SELECT session_id, any_value(virtual_server) AS virtual_server, any_value(subject) AS subject,
       min(start_ns) AS first_ns, max(end_ns) AS last_ns, count(*) AS spans,
       count(*) FILTER (WHERE status = 'ERROR') AS errors
FROM spans WHERE session_id IS NOT NULL GROUP BY session_id
"""


def _is_parquet(target: str) -> bool:
    """A `.parquet` file, a directory of them (exports), or of hourly partitions (`recorder --parquet-dir`)."""
    return target.endswith(".parquet") or (
        os.path.isdir(target) and any(p.endswith(".parquet") or p.startswith("date=") for p in os.listdir(target))
    )


def _parquet(target: str) -> duckdb.DuckDBPyConnection:
    """An in-memory database whose `spans` are the Parquet file(s) (`slicewire export`, or the partitions
    recorders write: every file under the directory, the partition columns `date` and `hour` added), with
    the views."""
    if not os.path.exists(target):
        raise RecordingError(f"{target}: no such Parquet file")
    files = os.path.join(target, "**", "*.parquet") if os.path.isdir(target) else target
    con = duckdb.connect()
    try:
        reader = f"read_parquet({sql_literal(files)}, hive_partitioning = true, union_by_name = true)"
        con.execute(f"CREATE VIEW spans AS SELECT * FROM {reader}")
        con.execute(VIEWS_V1)
        con.execute(_SESSIONS_VIEW)
    except duckdb.Error as exc:
        con.close()
        raise RecordingError(f"{target}: not a span export ({str(exc).splitlines()[0]})") from None
    return con


def _is_file(target: str) -> bool:
    return target.endswith((".duckdb", ".db")) or os.sep in target or os.path.exists(target)


def connect(target: str, timeout: float = 10.0, token: str | None = None) -> Recording:
    """A live recorder's `host:port`, the path of a trace file written by a stopped recorder, or a
    Parquet export of spans (a `.parquet` file or a directory of them). A live recorder needs its token:
    `token`, else $SLICEWIRE_RECORDER_TOKEN, else the token file a recorder on this machine keeps."""
    return Recording(target, timeout, token)

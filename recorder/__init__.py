"""Slicewire's flight recorder: spans of every JSON-RPC message, stored in DuckDB, queryable live.

import recorder
rec = recorder.connect("127.0.0.1:4317")      # a live recorder, or a path to its trace file
rec.df("SELECT tool_name, count(*) FROM spans GROUP BY 1")
"""

from ._client import RecorderUnavailable, Recording, RecordingError, connect, session_is, sql_literal
from ._schema import SCHEMA_VERSION, SchemaError
from ._server import ListenError, RecorderService, serve
from ._store import QueryRefused, SpanStore, StoreError, WriteResult

__all__ = [
    "SCHEMA_VERSION",
    "ListenError",
    "QueryRefused",
    "RecorderService",
    "RecorderUnavailable",
    "Recording",
    "RecordingError",
    "SchemaError",
    "SpanStore",
    "StoreError",
    "WriteResult",
    "connect",
    "serve",
    "session_is",
    "sql_literal",
]

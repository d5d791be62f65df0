"""Which recorded calls to replay, read from a recording (live recorder, DuckDB file or Parquet).

    calls = select(recording, Selection(session="…"))       # the session's calls, in order
    tools = recorded_tools(recording, calls)                # the tool lists the client was shown

A recorded call is a trace whose root is a client's `tools/call`, `prompts/get` or `resources/read`:
the request and answer the client saw, and the first upstream hop (the backend request and the
backend's answer). Traces that are themselves replays (`replay_of` set) are left out unless asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from recorder import session_is, sql_literal

__all__ = [
    "REPLAYED",
    "RecordedCall",
    "Selection",
    "SelectionError",
    "recorded_definitions",
    "recorded_server_info",
    "recorded_tools",
    "select",
]


class SelectionError(Exception):
    """The selection is empty or malformed; the message says what to change."""


@dataclass
class Selection:
    session: str | None = None
    trace: str | None = None  # a trace id, or a unique prefix of one
    tool: str | None = None  # exposed tool name
    start: str | None = None  # --from: a position (1-based), a trace id or span id prefix
    end: str | None = None  # --to: the same, inclusive
    errors_only: bool = False
    include_replays: bool = False


# The requests a replay re-issues and a mock answers: what an agent asks a backend for.
REPLAYED = ("tools/call", "prompts/get", "resources/read")
_REPLAYED_SQL = ", ".join(f"'{m}'" for m in REPLAYED)


@dataclass
class RecordedCall:
    """One recorded call (`tools/call`, `prompts/get`, `resources/read`): what the client sent and got,
    and what the backend sent and got. `tool` is what it names: the exposed tool, prompt or URI."""

    index: int  # position in the session (or trace), 1-based; what --from/--to, --set and the report use
    trace_id: str
    span_id: str
    session_id: str | None
    virtual_server: str | None
    tool: str  # the exposed name (alias)
    backend: str | None
    backend_tool: str | None
    start_ns: int
    duration_ns: int
    request: dict[str, Any] | None  # the client's JSON-RPC request (redacted)
    response: dict[str, Any] | None  # the JSON-RPC answer the client got
    truncated: bool  # a payload was cut at the recorder's cap: the request cannot be rebuilt
    era: str | None
    hop_request: dict[str, Any] | None = None  # the request as first sent to the backend
    hop_response: dict[str, Any] | None = None  # the backend's final answer
    hop_duration_ns: int | None = None
    hop_truncated: bool = False
    recorded_error: tuple[int, str] | None = field(default=None, repr=False)
    # What the agent answered when the backend asked it something during the call (elicitation,
    # sampling, roots), in order: (method, {"result": …} or {"error": …}).
    answers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    method: str = "tools/call"

    @property
    def arguments(self) -> dict[str, Any] | None:
        """The arguments sent (a resource read has none: `{}`); None when the request was not recorded."""
        params = (self.request or {}).get("params")
        if not isinstance(params, dict):
            return None
        if self.method == "resources/read":
            return {}
        arguments = params.get("arguments", {})
        return arguments if isinstance(arguments, dict) else None

    @property
    def failed(self) -> bool:
        """It failed when recorded: a JSON-RPC error, or a tool result with isError."""
        result = (self.response or {}).get("result")
        return self.recorded_error is not None or (isinstance(result, dict) and result.get("isError") is True)

    @property
    def label(self) -> str:
        return (
            f"#{self.index} {self.tool}" if self.method == "tools/call" else f"#{self.index} {self.method} {self.tool}"
        )


def _json(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_HEX = re.compile(r"^[0-9a-f]{1,32}$")

_CALLS = """
SELECT r.trace_id, r.span_id, r.method, r.session_id, r.virtual_server, r.tool_name, r.backend, r.backend_tool_name,
       r.start_ns, r.duration_ns, r.request_payload, r.response_payload, r.payload_truncated, r.protocol_era,
       r.status, r.error_code, r.error_message,
       h.request_payload AS hop_request, h.response_payload AS hop_response, h.duration_ns AS hop_duration_ns,
       h.payload_truncated AS hop_truncated
FROM spans r
LEFT JOIN (
    -- The upstream call: the first request sent, the last answer (after any InputRequiredResult
    -- round trips), the time from the one to the other.
    SELECT trace_id, parent_span_id, method,
           arg_min(request_payload, start_ns) AS request_payload,
           arg_max(response_payload, start_ns) AS response_payload,
           max(end_ns) - min(start_ns) AS duration_ns, bool_or(payload_truncated) AS payload_truncated
    FROM spans WHERE kind = 'CLIENT' AND method IN ({replayed})
    GROUP BY trace_id, parent_span_id, method
) h ON h.trace_id = r.trace_id AND h.parent_span_id = r.span_id AND h.method = r.method
WHERE r.kind = 'SERVER' AND r.method IN ({replayed}) AND r.direction = 'client->gateway' {where}
ORDER BY r.start_ns, r.span_id
"""


def select(recording: Any, selection: Selection) -> list[RecordedCall]:
    """The recorded calls `selection` names, in recorded order. Raises SelectionError when none do."""
    where = []
    if selection.session:
        where.append(session_is(selection.session, "r.session_id"))
    if selection.trace:
        trace = selection.trace.lower()
        if not _HEX.match(trace):
            raise SelectionError(f"--trace: expected a trace id (hex), found {selection.trace!r}")
        where.append(f"starts_with(r.trace_id, {sql_literal(trace)})")
    if not selection.include_replays:
        where.append("r.replay_of IS NULL")
    if not (selection.session or selection.trace):
        raise SelectionError("say what to replay: a session id (SESSION) or --trace TRACE_ID")
    rows = recording.rows(_CALLS.format(where="".join(f" AND {w}" for w in where), replayed=_REPLAYED_SQL))
    if selection.trace and len({row["trace_id"] for row in rows}) > 1:
        raise SelectionError(f"--trace {selection.trace} matches several traces: give more of its id")
    # Positions count every call of the session (or trace), whatever is filtered out: #3 is always
    # the session's third call, in the report, in --from/--to and in --set.
    calls = _range([_call(i + 1, row) for i, row in enumerate(rows)], selection)
    _attach_answers(recording, calls, where)
    if selection.tool:
        calls = [c for c in calls if c.tool == selection.tool]
    if selection.errors_only:
        calls = [c for c in calls if c.failed]
    if not calls:
        raise SelectionError(f"no recorded tools/call, prompts/get or resources/read matches {_describe(selection)}")
    return calls


def _attach_answers(recording: Any, calls: list[RecordedCall], where: list[str]) -> None:
    """The agent's recorded answers to the backend's questions, per call (relayed request hops)."""
    by_trace = {c.trace_id: c for c in calls}
    if not by_trace:
        return
    rows = recording.rows(
        "SELECT r.trace_id, h.method, h.response_payload FROM spans h "
        f"JOIN spans r ON r.trace_id = h.trace_id AND r.kind = 'SERVER' AND r.method IN ({_REPLAYED_SQL}) "
        "WHERE h.direction = 'gateway->client' AND h.kind = 'INTERNAL' AND h.response_payload IS NOT NULL"
        + "".join(f" AND {w}" for w in where)
        + " ORDER BY h.start_ns"
    )
    for row in rows:
        call = by_trace.get(row["trace_id"])
        answer = _json(row["response_payload"])
        if call is not None and answer is not None and row["method"]:
            call.answers.append((row["method"], answer))


def _call(index: int, row: dict[str, Any]) -> RecordedCall:
    error = (int(row["error_code"] or 0), row["error_message"] or "") if row["status"] == "ERROR" else None
    return RecordedCall(
        index=index,
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        session_id=row["session_id"],
        virtual_server=row["virtual_server"],
        tool=row["tool_name"] or "",
        backend=row["backend"] or None,
        backend_tool=row["backend_tool_name"] or None,
        start_ns=row["start_ns"],
        duration_ns=row["duration_ns"],
        request=_json(row["request_payload"]),
        response=_json(row["response_payload"]),
        truncated=bool(row["payload_truncated"]),
        era=row["protocol_era"],
        hop_request=_json(row["hop_request"]),
        hop_response=_json(row["hop_response"]),
        hop_duration_ns=row["hop_duration_ns"],
        hop_truncated=bool(row["hop_truncated"]),
        recorded_error=error,
        method=row["method"],
    )


def _position(calls: list[RecordedCall], ref: str, flag: str) -> int:
    """Where `ref` (1-based position, trace id or span id prefix) is in `calls`."""
    if ref.isdigit():
        n = int(ref)
        if not 1 <= n <= len(calls):
            raise SelectionError(f"{flag} {ref}: the recording has {len(calls)} calls here (1 to {len(calls)})")
        return n - 1
    ref = ref.lower()
    found = [i for i, c in enumerate(calls) if c.trace_id.startswith(ref) or c.span_id.startswith(ref)]
    if not found:
        raise SelectionError(f"{flag} {ref}: no call in the selection has that trace or span id")
    if len(found) > 1:
        raise SelectionError(f"{flag} {ref}: several calls match; give more of the id")
    return found[0]


def _range(calls: list[RecordedCall], selection: Selection) -> list[RecordedCall]:
    if not calls:
        return calls
    first = _position(calls, selection.start, "--from") if selection.start else 0
    last = _position(calls, selection.end, "--to") if selection.end else len(calls) - 1
    if last < first:
        raise SelectionError(f"--to {selection.end} comes before --from {selection.start}")
    return calls[first : last + 1]


def _describe(selection: Selection) -> str:
    parts = [
        f"{name} {value}"
        for name, value in (
            ("session", selection.session),
            ("--trace", selection.trace),
            ("--tool", selection.tool),
        )
        if value
    ]
    if selection.errors_only:
        parts.append("--errors-only")
    return ", ".join(parts) or "the selection"


def recorded_tools(recording: Any, calls: list[RecordedCall]) -> dict[str, dict[str, Any]]:
    """The tools the client was shown (latest recorded `tools/list` answer per tool name) for the
    sessions, else the virtual servers, of `calls`: names, descriptions, schemas, annotations."""
    return recorded_definitions(recording, calls, ("tools/list",)).get("tool", {})


_LISTS = {"tools/list": ("tool", "tools", "name"), "prompts/list": ("prompt", "prompts", "name"),
          "resources/list": ("resource", "resources", "uri")}  # fmt: skip


def recorded_definitions(
    recording: Any, calls: list[RecordedCall], methods: tuple[str, ...] = tuple(_LISTS)
) -> dict[str, dict[str, dict[str, Any]]]:
    """What the client was shown by the list methods (latest answer per name) for the sessions, else
    the virtual servers, of `calls`: kind (tool, prompt, resource) -> exposed name -> definition."""
    sessions = sorted({c.session_id for c in calls if c.session_id})
    servers = sorted({c.virtual_server for c in calls if c.virtual_server})
    found: dict[str, dict[str, dict[str, Any]]] = {}
    listed = ", ".join(sql_literal(m) for m in methods)
    for column, values in (("virtual_server", servers), ("session_id", sessions)):  # session answers win
        if not values:
            continue
        rows = recording.rows(
            f"SELECT method, response_payload FROM spans WHERE kind = 'SERVER' AND method IN ({listed}) "
            f"AND {column} IN ({', '.join(sql_literal(v) for v in values)}) AND response_payload IS NOT NULL "
            "ORDER BY start_ns"
        )
        for row in rows:
            kind, key, name = _LISTS[row["method"]]
            result = (_json(row["response_payload"]) or {}).get("result")
            for item in (result or {}).get(key) or []:
                if isinstance(item, dict) and isinstance(item.get(name), str):
                    found.setdefault(kind, {})[item[name]] = item
    return found


def recorded_server_info(recording: Any, calls: list[RecordedCall]) -> dict[str, Any]:
    """The serverInfo the client was given (the latest initialize or server/discover answer) for the
    virtual servers of `calls`, if recorded."""
    servers = sorted({c.virtual_server for c in calls if c.virtual_server})
    if not servers:
        return {}
    rows = recording.rows(
        "SELECT response_payload FROM spans WHERE kind = 'SERVER' AND method IN ('initialize', 'server/discover') "
        f"AND virtual_server IN ({', '.join(sql_literal(s) for s in servers)}) AND response_payload IS NOT NULL "
        "ORDER BY start_ns DESC LIMIT 1"
    )
    for row in rows:
        result = (_json(row["response_payload"]) or {}).get("result") or {}
        info = result.get("serverInfo") or (result.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo")
        if isinstance(info, dict):
            return info
    return {}

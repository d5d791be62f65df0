"""From a finished `Trace` to spans, in column form: one list per Span field, one entry per span.

Building columns costs a few list appends per span instead of a protobuf message per span, and the
recorder turns columns straight into Arrow arrays. Runs in the emitter's background task, never on
the request path; payloads are redacted here, before anything leaves the gateway.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from proto import pb

from ._redact import Redactor

if TYPE_CHECKING:
    from ._recording import Hop, Trace

__all__ = ["SpanColumns", "batch_size", "build_spans"]

FIELDS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "session_id", "virtual_server", "backend", "subject",
    "direction", "method", "request_id", "message_kind", "tool_name", "backend_tool_name", "start_time_unix_nano",
    "end_time_unix_nano", "status", "error_code", "error_message", "attributes_json", "request_payload",
    "response_payload", "payload_truncated", "protocol_era", "protocol_version", "replay_of_trace_id",
    "gateway_instance",
)  # fmt: skip
_EMPTY_ATTRS = b"{}"


def batch_size(batch: Any) -> int:
    """How many spans a SpanBatch carries, in either form."""
    return len(batch.spans) + (len(batch.columns.span_id) if batch.HasField("columns") else 0)


class SpanColumns:
    """Spans being gathered for one SpanBatch: one tuple per span, in FIELDS order, turned into
    columns (a C-level transpose) only when the message is built."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def truncate(self, size: int) -> None:
        """Drop spans past `size` (a trace that failed half-way)."""
        del self.rows[size:]

    def message(self) -> Any:
        columns = zip(*self.rows, strict=True) if self.rows else [()] * len(FIELDS)
        return pb.SpanColumns(**dict(zip(FIELDS, columns, strict=True)))

    def batch(self, sender: str) -> Any:
        """A SpanBatch carrying these spans, its columns filled in place (no copy of a built message)."""
        batch = pb.SpanBatch(sender=sender)
        target = batch.columns
        if self.rows:
            for name, column in zip(FIELDS, zip(*self.rows, strict=True), strict=True):
                getattr(target, name).extend(column)
        else:
            batch.columns.SetInParent()
        return batch


class _Context:
    """What every span of one trace shares."""

    __slots__ = ("columns", "instance", "trace", "trace_id")

    def __init__(self, trace: Trace, trace_id: bytes, instance: str, columns: SpanColumns) -> None:
        self.trace = trace
        self.trace_id = trace_id
        self.instance = instance
        self.columns = columns

    def add(
        self,
        span_id: bytes,
        parent: bytes,
        name: str,
        kind: int,
        start: int,
        end: int,
        *,
        direction: int = 0,
        method: str = "",
        request_id: str = "",
        message_kind: int = 0,
        tool: str = "",
        backend: str = "",
        backend_tool: str = "",
        error: tuple[int, str] | None = None,
        attrs: bytes = _EMPTY_ATTRS,
        request: bytes = b"",
        response: bytes = b"",
        truncated: bool = False,
        at: int | None = None,
    ) -> None:
        t = self.trace
        rows = self.columns.rows
        (rows.append if at is None else lambda row: rows.insert(at, row))(
            (
                self.trace_id, span_id, parent, name, kind, t.session_id, t.virtual_server, backend, t.subject,
                direction, method, request_id, message_kind, tool, backend_tool, start, max(start, end),
                pb.STATUS_CODE_ERROR if error else pb.STATUS_CODE_OK, error[0] if error else 0,
                error[1] if error else "", attrs, request, response, truncated, t.era, t.protocol_version, b"",
                self.instance,
            )
        )  # fmt: skip


class _NoPayloads(Redactor):
    """Stands in for the redactor when payloads are not captured: every payload is empty."""

    def checked_raw(self, data: bytes, known_clean: bool = False) -> tuple[bytes, bool, bool]:
        return b"", False, True

    def checked_payload(self, value: Any, known_clean: bool = False) -> tuple[bytes, bool, bool]:
        return b"", False, True


_NO_PAYLOADS = _NoPayloads()


def _hop_failed(hops: list[Hop]) -> bool:
    return any(hop.error is not None or _hop_failed(hop.children) for hop in hops)


def _error_of(trace: Trace, response: Any) -> tuple[int, str] | None:
    if trace.error is not None:
        return trace.error
    if isinstance(response, dict):
        err = response.get("error")
        if isinstance(err, dict):
            code = err.get("code", 0)
            return (int(code) if isinstance(code, int) else 0, str(err.get("message", "")))
    return None


def build_spans(trace: Trace, redactor: Redactor, instance: str, columns: SpanColumns, payloads: str = "all") -> None:
    """Append the spans of one trace (see the span model in _recording's docstring) to `columns`.

    `payloads`: "all", "errors" (only traces that ended in an error carry them) or "none".
    """
    from ._recording import new_span_id

    ctx = _Context(trace, trace.ensure_trace_id(), instance, columns)
    end = trace.end_ns or time.time_ns()
    request_id = "" if trace.request_id is None else str(trace.request_id)
    response: Any = None
    if trace.response and trace.error is None and b'"error":' in trace.response:
        try:
            response = orjson.loads(trace.response)
        except orjson.JSONDecodeError:
            response = None
    error = _error_of(trace, response)
    headers_redactor = redactor  # headers are always recorded, always redacted by the real rules
    if payloads == "none" or (payloads == "errors" and error is None and not _hop_failed(trace.hops)):
        redactor = _NO_PAYLOADS
    attrs: dict[str, Any] = {
        "mcp.method.name": trace.method,
        "mcp.protocol.version": trace.protocol_version,
        "network.transport": "tcp",
        "network.protocol.name": "http",
    }
    if trace.session_id:
        attrs["mcp.session.id"] = trace.session_id
    if request_id:
        attrs["jsonrpc.request.id"] = request_id
    if trace.tool:
        attrs["gen_ai.tool.name"] = trace.tool
        attrs["gen_ai.operation.name"] = "execute_tool"
    if error is not None:
        attrs["error.type"] = str(error[0])
        attrs["rpc.response.status_code"] = str(error[0])
    if trace.headers:
        headers = headers_redactor.headers(trace.headers)
        if "user-agent" in headers:
            attrs["user_agent.original"] = headers["user-agent"]
        attrs["http.request.headers"] = headers
    # The upstream call carries the client's request (renamed, plus gateway-made _meta) and its answer
    # becomes the client's response (plus gateway-made fields): each content is checked once.
    if trace.request_body is not None:
        request_payload, cut_in, request_clean = redactor.checked_raw(trace.request_body)
    else:
        request_payload, cut_in, request_clean = redactor.checked_payload(trace.request)
    root_at = len(ctx.columns)  # the root span goes first, though its response is checked last
    upstream_clean = True
    root = trace.span_id
    for hop in trace.hops:
        upstream_clean = _hop(ctx, redactor, hop, root, request_clean) and upstream_clean
    response_payload, cut_out, _ = redactor.checked_raw(
        trace.response or b"", known_clean=bool(trace.hops) and upstream_clean
    )
    ctx.add(
        trace.span_id,
        trace.parent_span_id,
        f"{trace.method} {trace.tool}" if trace.tool else trace.method or "request",
        pb.SPAN_KIND_SERVER,
        trace.start_ns,
        end,
        direction=trace.direction,
        method=trace.method,
        request_id=request_id,
        message_kind=pb.MESSAGE_KIND_REQUEST if request_id else pb.MESSAGE_KIND_NOTIFICATION,
        tool=trace.tool,
        backend=trace.backend,
        backend_tool=trace.backend_tool,
        error=error,
        attrs=orjson.dumps(attrs),
        request=request_payload,
        response=response_payload,
        truncated=cut_in or cut_out,
        at=root_at,
    )
    parsed = trace.parsed_ns or trace.start_ns
    ctx.add(new_span_id(), root, "parse", pb.SPAN_KIND_INTERNAL, trace.start_ns, parsed, method=trace.method)
    if trace.sliced_ns:
        ctx.add(new_span_id(), root, "slice", pb.SPAN_KIND_INTERNAL, parsed, trace.sliced_ns, tool=trace.tool)
    respond_from = trace.sliced_ns or parsed
    for hop in trace.hops:
        respond_from = max(respond_from, hop.end_ns)
    ctx.add(new_span_id(), root, "respond", pb.SPAN_KIND_INTERNAL, respond_from, end, method=trace.method)


def _hop(ctx: _Context, redactor: Redactor, hop: Hop, parent: bytes, request_clean: bool) -> bool:
    """Append a hop's spans; True when nothing it (or a child) carried needed redacting."""
    upstream = hop.kind == pb.SPAN_KIND_CLIENT
    request_payload, cut_in, sent_clean = redactor.checked_payload(hop.request, upstream and request_clean)
    if isinstance(hop.response, bytes):
        response_payload, cut_out, clean = redactor.checked_raw(hop.response)
    else:
        response_payload, cut_out, clean = redactor.checked_payload(hop.response)
    clean = clean and sent_clean
    attrs: dict[str, Any] = {"mcp.method.name": hop.method}
    if hop.backend:
        attrs["server.address"] = hop.backend
    if hop.tool:
        attrs["gen_ai.tool.name"] = hop.tool
        attrs["gen_ai.operation.name"] = "execute_tool"
    if hop.error is not None:
        attrs["error.type"] = str(hop.error[0])
        attrs["rpc.response.status_code"] = str(hop.error[0])
    ctx.add(
        hop.span_id,
        parent,
        hop.name,
        hop.kind,
        hop.start_ns,
        hop.end_ns,
        direction=hop.direction,
        method=hop.method,
        message_kind=pb.MESSAGE_KIND_REQUEST,
        backend=hop.backend,
        backend_tool=hop.tool,
        error=hop.error,
        attrs=orjson.dumps(attrs),
        request=request_payload,
        response=response_payload,
        truncated=cut_in or cut_out,
    )
    for child in hop.children:
        clean = _hop(ctx, redactor, child, hop.span_id, False) and clean
    return clean

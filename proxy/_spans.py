"""From finished `Trace`s to a `SpanBatch` in trace form: one row per request, one row per hop.

The gateway does not build spans. Per request it appends one tuple (the trace's scalars and its
redacted payloads) and one tuple per hop; `batch()` turns the tuples into protobuf columns (a C-level
transpose and one `extend` per column). The recorder expands each trace into its spans — root,
parse, slice, respond, and one per hop — with OpenTelemetry attributes, in SQL (recorder/_store.py).
That split is what keeps recording within a few percent of the gateway's throughput: building five
spans with their attribute maps in Python cost more than proxying the call.

Runs in the emitter's background task, never on the request path; payloads are redacted here, before
anything leaves the gateway: the prefilter scans all of a batch's payloads at once, and only the
rows whose payloads may hold a secret are decoded and walked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from proto import pb

from ._redact import Redactor

if TYPE_CHECKING:
    from ._recording import Hop, Trace

__all__ = ["HOP_FIELDS", "TRACE_FIELDS", "BatchBuilder", "span_count"]

TRACE_FIELDS = (
    "trace_id", "span_id", "parent_span_id", "session_id", "virtual_server", "subject", "direction", "method",
    "request_id", "tool_name", "backend", "backend_tool_name", "start_time_unix_nano", "parsed_time_unix_nano",
    "sliced_time_unix_nano", "respond_time_unix_nano", "end_time_unix_nano", "error_code", "error_message",
    "headers_json", "request_payload", "response_payload", "payload_truncated", "protocol_era", "protocol_version",
    "replay_of_trace_id",
)  # fmt: skip
HOP_FIELDS = (
    "trace_index", "span_id", "parent_span_id", "name", "kind", "direction", "method", "message_kind", "backend",
    "backend_tool_name", "start_time_unix_nano", "end_time_unix_nano", "error_code", "error_message",
    "request_payload", "response_payload", "payload_truncated",
)  # fmt: skip

# A batch is cut at this many payload bytes even when it has fewer spans than `batch_spans`: far
# below the recorder's 64 MiB message limit, whatever the payload cap.
MAX_BATCH_BYTES = 8 * 1024 * 1024


def span_count(trace: Trace) -> int:
    """The spans a trace expands to: root, parse, respond, slice (when it ran), one per hop."""
    spans = (4 if trace.sliced_ns else 3) + len(trace.hops)
    for hop in trace.hops:
        if hop.children:
            spans += _descendants(hop)
    return spans


def _descendants(hop: Hop) -> int:
    return sum(1 + _descendants(child) for child in hop.children) if hop.children else 0


def _hop_failed(hops: list[Hop]) -> bool:
    return any(hop.error is not None or _hop_failed(hop.children) for hop in hops)


def _error_of(trace: Trace) -> tuple[int, str] | None:
    """The error the client was answered with: set by the gateway, or found in the response sent."""
    if trace.error is not None:
        return trace.error
    response = trace.response
    if not response or b'"error":' not in response:
        return None
    try:
        err = orjson.loads(response).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(err, dict):
        return None
    code = err.get("code", 0)
    return (code if isinstance(code, int) else 0, str(err.get("message", "")))


# Where the payloads sit in the row tuples (see TRACE_FIELDS / HOP_FIELDS).
_PAYLOAD_FIELDS = ("request_payload", "response_payload", "payload_truncated")
_TRACE_REQUEST, _TRACE_RESPONSE, _TRACE_CUT = (TRACE_FIELDS.index(f) for f in _PAYLOAD_FIELDS)
_HOP_REQUEST, _HOP_RESPONSE, _HOP_CUT = (HOP_FIELDS.index(f) for f in _PAYLOAD_FIELDS)


def _bytes(value: Any) -> bytes:
    """A payload as JSON bytes: the bytes on the wire when the gateway has them, else serialized."""
    if value is None:
        return b""
    return value if isinstance(value, bytes) else orjson.dumps(value)


class BatchBuilder:
    """Traces gathered for one SpanBatch, as row tuples (TRACE_FIELDS / HOP_FIELDS order).

    builder = BatchBuilder(redactor)
    builder.add(trace)               # -> the spans it will expand to
    batch = builder.batch("gw-1")    # a SpanBatch with `traces` and `hops` columns, payloads redacted

    Rows are appended with their payloads as they are (the bytes on the wire); `batch()` transposes
    rows into columns, asks the redactor's prefilter about all of the batch's payloads in one scan,
    and fixes up only the payloads that need redacting or cutting (rare): a clean request costs no
    per-payload work at all.
    """

    __slots__ = ("hops", "payload_bytes", "payloads", "redactor", "spans", "traces")

    def __init__(self, redactor: Redactor, payloads: str = "all") -> None:
        self.redactor = redactor
        self.payloads = payloads  # "all", "errors" (only failed requests carry them) or "none"
        self.traces: list[tuple[Any, ...]] = []
        self.hops: list[tuple[Any, ...]] = []
        self.spans = 0
        self.payload_bytes = 0

    def __len__(self) -> int:
        return self.spans

    def add(self, trace: Trace) -> int:
        """Append one trace (and its hops); returns the number of spans it expands to. A trace that
        fails half-way leaves nothing behind."""
        hops = len(self.hops)
        try:
            return self._add(trace)
        except BaseException:
            del self.hops[hops:]
            raise

    def _add(self, trace: Trace) -> int:
        error = _error_of(trace)
        capture = self.payloads == "all" or (
            self.payloads == "errors" and (error is not None or _hop_failed(trace.hops))
        )
        index = len(self.traces)
        root = trace.span_id
        spans = 4 if trace.sliced_ns else 3
        respond_from = trace.sliced_ns or trace.parsed_ns or trace.start_ns
        if capture:
            request = trace.request_body if trace.request_body is not None else _bytes(trace.request)
            response = trace.response or b""
        else:
            request = response = b""
        size = len(request) + len(response)
        for hop in trace.hops:
            hop_spans, hop_bytes = self._hop(index, hop, root, capture)
            spans += hop_spans
            size += hop_bytes
            if hop.end_ns > respond_from:
                respond_from = hop.end_ns
        self.traces.append(
            (
                trace.trace_id or trace.ensure_trace_id(), root, trace.parent_span_id, trace.session_id,
                trace.virtual_server, trace.subject, trace.direction, trace.method,
                "" if trace.request_id is None else str(trace.request_id), trace.tool, trace.backend,
                trace.backend_tool, trace.start_ns, trace.parsed_ns or trace.start_ns, trace.sliced_ns,
                respond_from, trace.end_ns or respond_from, error[0] if error else 0,
                (error[1] or "error") if error else "", self.redactor.headers_json(trace.headers), request, response,
                False, trace.era, trace.protocol_version, trace.replay_of,
            )
        )  # fmt: skip
        self.spans += spans
        self.payload_bytes += size
        return spans

    def _hop(self, index: int, hop: Hop, parent: bytes, capture: bool) -> tuple[int, int]:
        """Append a hop (and its children); the spans and payload bytes they add."""
        if capture:
            request, response = _bytes(hop.request), _bytes(hop.response)
        else:
            request = response = b""
        error = hop.error
        kind = pb.MESSAGE_KIND_NOTIFICATION if hop.method.startswith("notifications/") else pb.MESSAGE_KIND_REQUEST
        self.hops.append(
            (
                index, hop.span_id, parent, hop.name, hop.kind, hop.direction, hop.method, kind, hop.backend, hop.tool,
                hop.start_ns, hop.end_ns, error[0] if error else 0, (error[1] or "error") if error else "", request,
                response, False,
            )
        )  # fmt: skip
        spans, size = 1, len(request) + len(response)
        for child in hop.children:
            child_spans, child_size = self._hop(index, child, hop.span_id, capture)
            spans += child_spans
            size += child_size
        return spans, size

    def batch(self, sender: str) -> Any:
        """A SpanBatch carrying these traces, payloads redacted, its columns filled in place (no
        message per row)."""
        tables = [
            (self.traces, TRACE_FIELDS, _TRACE_REQUEST, _TRACE_RESPONSE, _TRACE_CUT),
            (self.hops, HOP_FIELDS, _HOP_REQUEST, _HOP_RESPONSE, _HOP_CUT),
        ]
        columns: list[list[Any]] = [
            list(zip(*rows, strict=True)) if rows else [() for _ in fields] for rows, fields, *_ in tables
        ]
        # Every payload of the batch, in one list: per table, its requests then its responses.
        payloads: list[bytes] = []
        places = []  # (table, column, start in `payloads`)
        for t, (_, _, request, response, _) in enumerate(tables):
            for column in (request, response):
                places.append((t, column, len(payloads)))
                payloads.extend(columns[t][column])
        redactor = self.redactor
        dirty = redactor.dirty(payloads) if self.payload_bytes else set()
        cap = redactor.max_payload_bytes
        over = {i for i, data in enumerate(payloads) if len(data) > cap} if self.payload_bytes > cap else set()
        if dirty or over:
            for i in sorted(dirty | over):
                t, column, start = next(place for place in reversed(places) if place[2] <= i)
                row = i - start
                data = payloads[i]
                if i in dirty and data:
                    data = redactor.redact_raw(data)
                data, was_cut = redactor.cut(data)
                cols = columns[t]
                cols[column] = fixed = list(cols[column])
                fixed[row] = data
                if was_cut:
                    flag = tables[t][4]
                    cols[flag] = flags = list(cols[flag])
                    flags[row] = True
        batch = pb.SpanBatch(sender=sender)
        for (_, fields, *_), cols, target in zip(tables, columns, (batch.traces, batch.hops), strict=True):
            target.SetInParent()
            if cols and cols[0]:
                for name, column in zip(fields, cols, strict=True):
                    getattr(target, name).extend(column)
        return batch

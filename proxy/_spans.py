"""From finished `Trace`s to a `SpanBatch` in trace form: one row per request, one row per hop.

The gateway does not build spans. Per request it appends one tuple (the trace's scalars and its
redacted payloads) and one tuple per hop; `batch()` turns the tuples into protobuf columns (a C-level
transpose and one `extend` per column). The recorder expands each trace into its spans — root,
parse, slice, respond, and one per hop — with OpenTelemetry attributes, in SQL (recorder/_store.py).
That split is what keeps recording within a few percent of the gateway's throughput: building five
spans with their attribute maps in Python cost more than proxying the call.

Runs in the emitter's background task, never on the request path; payloads are redacted here, before
anything leaves the gateway.
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


class _NoPayloads(Redactor):
    """Stands in for the redactor when payloads are not captured: every payload is empty."""

    def checked_raw(self, data: bytes, known_clean: bool = False) -> tuple[bytes, bool, bool]:
        return b"", False, True

    def checked_payload(self, value: Any, known_clean: bool = False) -> tuple[bytes, bool, bool]:
        return b"", False, True


_NO_PAYLOADS = _NoPayloads()


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


class BatchBuilder:
    """Traces gathered for one SpanBatch, as row tuples (TRACE_FIELDS / HOP_FIELDS order).

    builder = BatchBuilder(redactor)
    builder.add(trace)               # -> the spans it will expand to
    batch = builder.batch("gw-1")    # a SpanBatch with `traces` and `hops` columns
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
        hops_before = len(self.hops)
        try:
            return self._add(trace)
        except BaseException:
            del self.hops[hops_before:]
            raise

    def _add(self, trace: Trace) -> int:
        error = _error_of(trace)
        redactor = self.redactor
        payloads = self.payloads
        if payloads == "none" or (payloads == "errors" and error is None and not _hop_failed(trace.hops)):
            redactor = _NO_PAYLOADS
        # The upstream call carries the client's request (renamed, plus gateway-made _meta) and its
        # answer becomes the client's response (plus gateway-made fields): each content is checked once.
        if trace.request_body is not None:
            request, cut_in, request_clean = redactor.checked_raw(trace.request_body)
        else:
            request, cut_in, request_clean = redactor.checked_payload(trace.request)
        index = len(self.traces)
        root = trace.span_id
        spans = 4 if trace.sliced_ns else 3
        size = len(request)
        upstream_clean = True
        respond_from = trace.sliced_ns or trace.parsed_ns or trace.start_ns
        for hop in trace.hops:
            clean, hop_spans, hop_bytes = self._hop(redactor, index, hop, root, request_clean)
            upstream_clean = upstream_clean and clean
            spans += hop_spans
            size += hop_bytes
            if hop.end_ns > respond_from:
                respond_from = hop.end_ns
        response, cut_out, _ = redactor.checked_raw(
            trace.response or b"", known_clean=bool(trace.hops) and upstream_clean
        )
        end = trace.end_ns or respond_from
        self.traces.append(
            (
                trace.trace_id or trace.ensure_trace_id(), root, trace.parent_span_id, trace.session_id,
                trace.virtual_server, trace.subject, trace.direction, trace.method,
                "" if trace.request_id is None else str(trace.request_id), trace.tool, trace.backend,
                trace.backend_tool, trace.start_ns, trace.parsed_ns or trace.start_ns, trace.sliced_ns,
                respond_from, end, error[0] if error else 0, (error[1] or "error") if error else "",
                self.redactor.headers_json(trace.headers), request, response, cut_in or cut_out, trace.era,
                trace.protocol_version, b"",
            )
        )  # fmt: skip
        self.spans += spans
        self.payload_bytes += size + len(response)
        return spans

    def _hop(
        self, redactor: Redactor, index: int, hop: Hop, parent: bytes, request_clean: bool
    ) -> tuple[bool, int, int]:
        """Append a hop (and its children): whether nothing it carried needed redacting, its spans, its bytes."""
        upstream = hop.kind == pb.SPAN_KIND_CLIENT
        request, cut_in, sent_clean = redactor.checked_payload(hop.request, upstream and request_clean)
        if isinstance(hop.response, bytes):
            response, cut_out, clean = redactor.checked_raw(hop.response)
        else:
            response, cut_out, clean = redactor.checked_payload(hop.response)
        error = hop.error
        kind = pb.MESSAGE_KIND_NOTIFICATION if hop.method.startswith("notifications/") else pb.MESSAGE_KIND_REQUEST
        self.hops.append(
            (
                index, hop.span_id, parent, hop.name, hop.kind, hop.direction, hop.method, kind, hop.backend, hop.tool,
                hop.start_ns, hop.end_ns, error[0] if error else 0, (error[1] or "error") if error else "", request,
                response, cut_in or cut_out,
            )
        )  # fmt: skip
        spans, size = 1, len(request) + len(response)
        clean = clean and sent_clean
        for child in hop.children:
            child_clean, child_spans, child_size = self._hop(redactor, index, child, hop.span_id, False)
            clean = clean and child_clean
            spans += child_spans
            size += child_size
        return clean, spans, size

    def batch(self, sender: str) -> Any:
        """A SpanBatch carrying these traces, its columns filled in place (no message per row)."""
        batch = pb.SpanBatch(sender=sender)
        for rows, target, fields in ((self.traces, batch.traces, TRACE_FIELDS), (self.hops, batch.hops, HOP_FIELDS)):
            target.SetInParent()
            if rows:
                for name, column in zip(fields, zip(*rows, strict=True), strict=True):
                    getattr(target, name).extend(column)
        return batch

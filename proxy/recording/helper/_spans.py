"""From trace records (see _record) to a `SpanBatch` in trace form: one row per request, one per hop.

Runs in the shipping helper (see _shipper), never in the serving process. The gateway hands over
records as they were filled on the request path; `add` derives what the gateway did not spend time
on — the root span id, the trace id when no hop needed one, the error the client was answered with,
the headers as redacted JSON, the 2026-07-28 session key — and appends one tuple per request and one
per hop; `batch()` turns the tuples into protobuf columns (a C-level transpose and one `extend` per
column). The recorder expands each trace into its spans — root, parse, slice, respond, and one per
hop — with OpenTelemetry attributes, in SQL (recorder/_store.py).

Payloads are redacted here, before anything leaves the gateway's host: the prefilter scans all of a
batch's payloads at once, and only the rows whose payloads may hold a secret are decoded and walked.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from typing import Any

import orjson

from proto import column_names, pb, session_key, trace_spans

from .._record import Hop, Record, attributes_reader, new_span_id, new_trace_id
from .._redact import UNREDACTABLE, Redactor
from ._sessions import ModernSessions

__all__ = ["HOP_FIELDS", "TRACE_FIELDS", "BatchBuilder"]

logger = logging.getLogger(__name__)

# The row tuples' order: the wire's columns, as proto/slicewire/v1/recorder.proto defines them.
TRACE_FIELDS = column_names(pb.TraceColumns)
HOP_FIELDS = column_names(pb.HopColumns)

# A column whose record field has the column's name (or the name given here) is copied as it is; every
# other column is derived in `_add` / `_hop`. A new column the gateway fills is a field in the proto
# and one in the record; a row missing a column fails its first test (KeyError).
_TRACE_NAMES = {"tool_name": "tool", "backend_tool_name": "backend_tool", "protocol_era": "era",
                "protocol_version": "version", "replay_of_trace_id": "replay_of",
                "network_protocol_version": "http_version", "parent_span_id": "parent"}  # fmt: skip
_HOP_NAMES = {"backend_tool_name": "tool", "start_time_unix_nano": "start_ns", "end_time_unix_nano": "end_ns"}


def _copier(columns: tuple[str, ...], record: type, names: dict[str, str]) -> tuple[tuple[str, ...], Any]:
    """The columns copied from a record's fields, and a function reading those fields in that order."""
    fields = {f.name for f in dataclasses.fields(record)}
    copied = tuple(c for c in columns if names.get(c, c) in fields)
    return copied, attributes_reader([names.get(c, c) for c in copied])


_TRACE_COPIED, _trace_copied = _copier(TRACE_FIELDS, Record, _TRACE_NAMES)
_HOP_COPIED, _hop_copied = _copier(HOP_FIELDS, Hop, _HOP_NAMES)
_trace_row = operator.itemgetter(*TRACE_FIELDS)
_hop_row = operator.itemgetter(*HOP_FIELDS)

# A batch is cut at this many payload bytes even when it has fewer spans than `batch_spans`: far
# below the recorder's 64 MiB message limit, whatever the payload cap.
MAX_BATCH_BYTES = 8 * 1024 * 1024


def _hop_failed(hops: list[Hop] | None) -> bool:
    return hops is not None and any(hop.error is not None for hop in hops)


def _session_of(trace: Record, sessions: ModernSessions) -> str:
    """The session key: a 2025-11-25 session's digest, a 2026-07-28 request's derived (ModernSessions)."""
    session = trace.session
    if session is not None:
        return session_key(session) if session else ""
    baggage = next((v.decode("latin-1") for k, v in trace.headers if k == b"baggage"), "")
    request = trace.request
    try:
        meta = (request if isinstance(request, dict) else orjson.loads(request)).get("params", {}).get("_meta")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        meta = None
    return sessions.key(trace.virtual_server, trace.subject, trace.method, meta, baggage, trace.start_ns)


_MESSAGE_KINDS = {
    "request": pb.MESSAGE_KIND_REQUEST,
    "notification": pb.MESSAGE_KIND_NOTIFICATION,
    "result": pb.MESSAGE_KIND_RESULT,
    "error": pb.MESSAGE_KIND_ERROR,
}
_NO_PEER = ("", 0, "", "", "")


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
    builder.add(trace)               # a trace record (see _record) -> the spans it will expand to
    batch = builder.batch("gw-1")    # a SpanBatch with `traces` and `hops` columns, payloads redacted

    Rows are appended with their payloads as they are (the bytes on the wire); `batch()` transposes
    rows into columns, asks the redactor's prefilter about all of the batch's payloads in one scan,
    and fixes up only the payloads that need redacting or cutting (rare): a clean request costs no
    per-payload work at all.
    """

    __slots__ = ("hops", "payload_bytes", "payloads", "redactor", "sessions", "spans", "traces")

    def __init__(self, redactor: Redactor, payloads: str = "all", sessions: ModernSessions | None = None) -> None:
        self.redactor = redactor
        # 2026-07-28 session keys follow runs across batches: the helper passes one for all of its batches.
        self.sessions = sessions if sessions is not None else ModernSessions()
        self.payloads = payloads  # "all", "errors" (only failed requests carry them) or "none"
        self.traces: list[tuple[Any, ...]] = []
        self.hops: list[tuple[Any, ...]] = []
        self.spans = 0
        self.payload_bytes = 0

    def __len__(self) -> int:
        return self.spans

    def add(self, trace: Record) -> int:
        """Append one trace record (and its hops); returns the number of spans it expands to. A trace
        that fails half-way leaves nothing behind."""
        hops = len(self.hops)
        try:
            return self._add(trace)
        except BaseException:
            del self.hops[hops:]
            raise

    def _add(self, trace: Record) -> int:
        response = trace.response
        error = trace.error
        capture = self.payloads == "all" or (
            self.payloads == "errors" and (error is not None or _hop_failed(trace.hops))
        )
        index = len(self.traces)
        # Ids the gateway did not need are made here, and kept in the record: adding it again (a test,
        # a re-built batch) expands to the same span ids, which is what the recorder de-duplicates on.
        if not trace.span_id:
            trace.span_id = new_span_id()
        if not trace.trace_id:
            trace.trace_id = new_trace_id()
        root = trace.span_id
        start, parsed, sliced = trace.start_ns, trace.parsed_ns, trace.sliced_ns
        respond_from = sliced or parsed or start
        if capture:
            request, response = _bytes(trace.request), response or b""
        else:
            request = response = b""
        size = len(request) + len(response)
        hops = trace.hops or ()
        for hop in hops:
            size += self._hop(index, hop, root, capture)
            if hop.end_ns > respond_from and not hop.parent:
                respond_from = hop.end_ns
        spans = trace_spans(sliced != 0, len(hops))
        request_id = trace.request_id
        client = trace.client or ("", 0)
        row = dict(zip(_TRACE_COPIED, _trace_copied(trace), strict=True))  # then what is derived:
        row.update(
            {
                "session_id": _session_of(trace, self.sessions),
                "request_id": "" if request_id is None else str(request_id),
                "start_time_unix_nano": start,
                "parsed_time_unix_nano": parsed or start,
                "sliced_time_unix_nano": sliced,
                "respond_time_unix_nano": respond_from,
                "end_time_unix_nano": trace.end_ns or respond_from,
                "error_code": error[0] if error else 0,
                "error_message": (error[1] or "error") if error else "",
                "headers_json": self.redactor.headers_json(trace.headers),
                "request_payload": request,
                "response_payload": response,
                "payload_truncated": False,
                "client_address": str(client[0] or ""),
                "client_port": int(client[1] or 0),
                "message_kind": _MESSAGE_KINDS.get(trace.kind, pb.MESSAGE_KIND_UNSPECIFIED),
            }
        )
        self.traces.append(_trace_row(row))
        self.spans += spans
        self.payload_bytes += size
        return spans

    def _hop(self, index: int, hop: Hop, root: bytes, capture: bool) -> int:
        """Append a hop; the payload bytes it adds."""
        if capture:
            request, response = _bytes(hop.request), _bytes(hop.response)
        else:
            request = response = b""
        error = hop.error
        method = hop.method
        kind = pb.MESSAGE_KIND_NOTIFICATION if method.startswith("notifications/") else pb.MESSAGE_KIND_REQUEST
        address, port, transport, version, session = hop.peer or _NO_PEER
        upstream_id = hop.request_id
        name = hop.name
        if name is None:  # the upstream call's: "tools/call echo" (a URI, unbounded, stays out of the name)
            name = f"{method} {hop.tool}" if hop.tool and method != "resources/read" else method
        row = dict(zip(_HOP_COPIED, _hop_copied(hop), strict=True))  # then what is derived:
        row.update(
            {
                "trace_index": index,
                "parent_span_id": hop.parent or root,
                "name": name,
                "message_kind": kind,
                "error_code": error[0] if error else 0,
                "error_message": (error[1] or "error") if error else "",
                "request_payload": request,
                "response_payload": response,
                "payload_truncated": False,
                "peer_address": address,
                "peer_port": port,
                "peer_transport": transport,
                "peer_protocol_version": version,
                "peer_session_id": session_key(session) if session else "",
                "peer_request_id": "" if upstream_id is None else str(upstream_id),
            }
        )
        self.hops.append(_hop_row(row))
        return len(request) + len(response)

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
                    try:
                        data = redactor.redact_raw(data)
                    except Exception:  # one payload that cannot be redacted must not cost the batch
                        logger.exception("a payload could not be redacted; stored as a marker")
                        redactor.replaced += 1
                        data = UNREDACTABLE
                data, was_cut = redactor.cut(data)
                cols = columns[t]
                cols[column] = fixed = list(cols[column])
                fixed[row] = data
                if was_cut:
                    flag = tables[t][4]
                    cols[flag] = flags = list(cols[flag])
                    flags[row] = True
        batch = pb.SpanBatch(sender=sender)
        targets: tuple[Any, Any] = (batch.traces, batch.hops)
        for (_, fields, *_), cols, target in zip(tables, columns, targets, strict=True):
            target.SetInParent()
            if cols and cols[0]:
                for name, column in zip(fields, cols, strict=True):
                    getattr(target, name).extend(column)
        return batch

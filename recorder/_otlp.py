"""Recorded spans to OTLP: as OpenTelemetry SDK spans, through `opentelemetry-exporter-otlp`.

The recorded ids and nanosecond timestamps are kept as they are, so a trace that continued an
agent's `traceparent` joins the agent's own trace in the backend. Names, kinds and attributes follow
the OpenTelemetry MCP semantic conventions (see docs/otlp.md):

- span name `{mcp.method.name} {target}` (as recorded: `tools/call get_issue`);
- kind SERVER for the client-facing root, CLIENT for upstream calls, INTERNAL for the rest;
- status ERROR, with `error.type`, for a JSON-RPC error (its code) and for a tool result with
  `isError: true` (`tool_error`); otherwise left UNSET, as the conventions ask of instrumentation;
- `http.request.header.<name>` for the (redacted) request headers;
- the resource: `service.name` (`slicewire`, or `OTEL_SERVICE_NAME`), `service.version`, `service.instance.id` (the
  gateway instance), `slicewire.virtual_server`, and whatever `OTEL_RESOURCE_ATTRIBUTES` adds.

Payloads are exported only when asked (`payloads=True`): `gen_ai.tool.call.arguments` and
`gen_ai.tool.call.result` on `tools/call` spans, redacted as they were recorded.

    exporter = span_exporter("http://127.0.0.1:4318/v1/traces", "http")
    exporter.export(to_otel(rows))

Endpoint, headers, TLS and timeout also come from the usual `OTEL_EXPORTER_OTLP_*` variables, read by
the exporters themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from proto import SLICEWIRE_VERSION

__all__ = ["COLUMNS", "Protocol", "protocol_from_env", "span_exporter", "to_otel"]

Protocol = Literal["grpc", "http"]

# The columns of `spans` an export reads.
COLUMNS = (
    "span_id, trace_id, parent_span_id, name, kind, start_ns, end_ns, status, error_code, error_message, attrs, "
    "method, tool_name, request_payload, response_payload, virtual_server, gateway_instance, subject, replay_of"
)
_KINDS = {"SERVER": SpanKind.SERVER, "CLIENT": SpanKind.CLIENT, "INTERNAL": SpanKind.INTERNAL}
_SCOPE = InstrumentationScope("slicewire", SLICEWIRE_VERSION)
_FLAGS = TraceFlags(TraceFlags.SAMPLED)


def protocol_from_env(default: Protocol = "grpc") -> Protocol:
    """`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: grpc or http/protobuf."""
    value = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if not value:
        return default
    if value == "grpc":
        return "grpc"
    if value in ("http/protobuf", "http"):
        return "http"
    raise ValueError(f"OTLP protocol {value!r} is not supported: use grpc or http/protobuf")


def span_exporter(endpoint: str | None, protocol: Protocol, timeout_s: float | None = None) -> SpanExporter:
    """An OTLP span exporter. `endpoint` None: the exporter reads `OTEL_EXPORTER_OTLP_*` itself. An
    HTTP endpoint without a path gets the standard `/v1/traces`."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = None if endpoint is None else endpoint.startswith("http://")
        return GrpcExporter(endpoint=endpoint, insecure=insecure, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if endpoint is not None and endpoint.rstrip("/").count("/") <= 2:  # scheme://host:port
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint, timeout=timeout_s)


def _attribute(value: Any) -> Any:
    """An OTel attribute value: a primitive, a list of one primitive type, or JSON text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return orjson.dumps(value).decode()


def _tool_error(response: str | None) -> bool:
    if not response or '"isError"' not in response:
        return False
    try:
        result = orjson.loads(response).get("result")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(result, dict) and result.get("isError") is True


def _payload_attributes(request: str | None, response: str | None) -> dict[str, str]:
    out = {}
    try:
        arguments = orjson.loads(request).get("params", {}).get("arguments") if request else None
    except (orjson.JSONDecodeError, AttributeError):
        arguments = None
    if arguments is not None:
        out["gen_ai.tool.call.arguments"] = orjson.dumps(arguments).decode()
    try:
        result = orjson.loads(response).get("result") if response else None
    except (orjson.JSONDecodeError, AttributeError):
        result = None
    if result is not None:
        out["gen_ai.tool.call.result"] = orjson.dumps(result).decode()
    return out


def to_otel(rows: Iterable[dict[str, Any]], payloads: bool = False) -> list[ReadableSpan]:
    """Rows of `spans` (the COLUMNS, as dicts) as SDK spans, ready for any SpanExporter."""
    service = os.environ.get("OTEL_SERVICE_NAME") or "slicewire"
    resources: dict[tuple[str, str], Resource] = {}
    spans = []
    for row in rows:
        key = (row.get("gateway_instance") or "", row.get("virtual_server") or "")
        resource = resources.get(key)
        if resource is None:
            attributes: dict[str, Any] = {"service.name": service, "service.version": SLICEWIRE_VERSION}
            if key[0]:
                attributes["service.instance.id"] = key[0]
            if key[1]:
                attributes["slicewire.virtual_server"] = key[1]
            # Resource.create merges OTEL_RESOURCE_ATTRIBUTES (ours win for the keys above).
            resource = resources[key] = Resource.create(attributes)
        trace_id = int(row["trace_id"], 16)
        context = SpanContext(trace_id, int(row["span_id"], 16), is_remote=False, trace_flags=_FLAGS)
        parent = None
        if row.get("parent_span_id"):
            parent = SpanContext(trace_id, int(row["parent_span_id"], 16), is_remote=False, trace_flags=_FLAGS)
        recorded = row.get("attrs") or "{}"
        attrs = orjson.loads(recorded) if isinstance(recorded, str) else dict(recorded)
        headers = attrs.pop("http.request.headers", None)
        attributes = {key: _attribute(value) for key, value in attrs.items() if value is not None}
        if isinstance(headers, dict):
            for name, value in headers.items():
                attributes[f"http.request.header.{name.lower()}"] = [str(value)]
        if row.get("subject") and row.get("kind") == "SERVER":
            attributes["slicewire.subject"] = row["subject"]  # who called the gateway (token subject)
        if row.get("replay_of"):
            attributes["slicewire.replay_of"] = row["replay_of"]
        status = Status(StatusCode.UNSET)
        is_call = row.get("method") == "tools/call" and row.get("kind") in ("SERVER", "CLIENT")
        if row.get("status") == "ERROR":
            status = Status(StatusCode.ERROR, row.get("error_message") or None)
            attributes.setdefault("error.type", str(row.get("error_code") or "_OTHER"))
        elif is_call and _tool_error(row.get("response_payload")):
            status = Status(StatusCode.ERROR, "the tool's result has isError: true")
            attributes["error.type"] = "tool_error"
        if payloads and is_call:
            attributes.update(_payload_attributes(row.get("request_payload"), row.get("response_payload")))
        spans.append(
            ReadableSpan(
                name=row["name"],
                context=context,
                parent=parent,
                resource=resource,
                attributes=attributes,
                kind=_KINDS.get(row.get("kind") or "", SpanKind.INTERNAL),
                status=status,
                start_time=int(row["start_ns"]),
                end_time=int(row["end_ns"]),
                instrumentation_scope=_SCOPE,
            )
        )
    return spans

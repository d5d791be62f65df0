"""Where spans are made: the gateway's trace and hop rows expanded into spans, in SQL.

The gateway sends one row per client request (`pb.TraceColumns`) and one per hop inside it
(`pb.HopColumns`); `EXPAND` turns each trace into its root, parse, slice (when the slice step ran) and
respond spans and each hop into its span (the rule `proto.trace_spans` counts by), with the
OpenTelemetry MCP semantic-convention attributes, inside DuckDB. Building the spans and their
attribute maps in the gateway's Python cost more than proxying the call (see docs/recording.md).

The Arrow layouts are derived from the protobuf messages (`arrow_fields`): a column added to
recorder.proto reaches these tables without another list to keep in step.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor

from proto import pb

__all__ = ["CHILD_ID_MACRO", "EXPAND", "HOP", "HOP_FROM_TRACE", "SPAN", "TRACE", "arrow_fields", "unset"]

# A protobuf field's type -> its Arrow type, and the value of a row that does not set it.
_TYPES: dict[int, tuple[pa.DataType, Any]] = {
    FieldDescriptor.TYPE_BYTES: (pa.binary(), b""),
    FieldDescriptor.TYPE_STRING: (pa.string(), ""),
    FieldDescriptor.TYPE_ENUM: (pa.int32(), 0),
    FieldDescriptor.TYPE_SINT32: (pa.int32(), 0),
    FieldDescriptor.TYPE_UINT32: (pa.uint32(), 0),
    FieldDescriptor.TYPE_FIXED64: (pa.uint64(), 0),
    FieldDescriptor.TYPE_BOOL: (pa.bool_(), False),
}


def arrow_fields(message: Any) -> list[tuple[str, pa.DataType]]:
    """A columns message's fields as Arrow (name, type) pairs, in wire order (ids stay bytes, enums
    numbers: the stored form is made in SQL)."""
    return [(field.name, _TYPES[field.type][0]) for field in message.DESCRIPTOR.fields]


def unset(message: Any, name: str) -> Any:
    """The value a row has for a field its sender did not fill (proto3's default for its type)."""
    return _TYPES[message.DESCRIPTOR.fields_by_name[name].type][1]


TRACE = arrow_fields(pb.TraceColumns)
HOP = arrow_fields(pb.HopColumns)
SPAN = arrow_fields(pb.SpanColumns)  # spans in wire form: what EXPAND yields, column for column
# What a hop's span takes from its trace's row.
HOP_FROM_TRACE = ("trace_id", "session_id", "virtual_server", "subject", "protocol_era", "protocol_version",
                  "replay_of_trace_id")  # fmt: skip

# A child span's id derived from its trace's root span id: the last byte XOR k (k = 1 parse, 2 slice,
# 3 respond). Deterministic, so a re-sent trace expands to the same ids and is de-duplicated.
CHILD_ID_MACRO = """
CREATE OR REPLACE TEMP MACRO sw_child_id(id, k) AS
    unhex(left(hex(id), 14) || printf('%02X', xor(('0x' || right(hex(id), 2))::INTEGER, k)))
"""
_ERROR_ATTRS = """
    'error.type', CASE WHEN failed THEN error_code::VARCHAR END,
    'rpc.response.status_code', CASE WHEN failed THEN error_code::VARCHAR END"""


def _target_attrs(column: str) -> str:
    """What a request is about, by method (MCP semantic conventions): the tool, the prompt, the URI."""
    return f"""
    'gen_ai.tool.name', CASE WHEN method = 'tools/call' THEN nullif({column}, '') END,
    'gen_ai.operation.name', CASE WHEN method = 'tools/call' AND {column} <> '' THEN 'execute_tool' END,
    'gen_ai.prompt.name', CASE WHEN method = 'prompts/get' THEN nullif({column}, '') END,
    'mcp.resource.uri', CASE WHEN method = 'resources/read' THEN nullif({column}, '') END"""


_TARGET_ATTRS = _target_attrs("tool_name")
_HOP_TARGET_ATTRS = _target_attrs("backend_tool_name")
# Traces and hops (the gateway's form) -> spans in wire form (the columns of SPAN, in order). The span
# model is described in docs/recording.md; json_merge_patch drops the attributes that are NULL.
EXPAND = f"""
WITH t AS (
    SELECT *, (error_code <> 0 OR error_message <> '') AS failed,
           greatest(start_time_unix_nano, parsed_time_unix_nano) AS parsed_ns,
           CASE WHEN headers_json NOT IN ('', '{{}}') THEN json(headers_json) END AS headers,
           -- what the client sent (a recording from before the column: a request when it has an id)
           CASE WHEN message_kind <> 0 THEN message_kind WHEN request_id <> '' THEN 1 ELSE 2 END AS kind
    FROM trace_rows
),
h AS (SELECT *, (error_code <> 0 OR error_message <> '') AS failed FROM hop_rows)
SELECT trace_id, span_id, parent_span_id,
       CASE WHEN kind = 3 AND method NOT LIKE '(%' THEN method || ' result'  -- the client's answer to it
            WHEN kind = 4 AND method NOT LIKE '(%' THEN method || ' error'
            WHEN tool_name <> '' AND method <> 'resources/read' THEN method || ' ' || tool_name
            WHEN method <> '' THEN method ELSE 'request' END,
       2, session_id, virtual_server, backend, subject, direction, method, request_id, kind, tool_name,
       backend_tool_name, start_time_unix_nano, greatest(start_time_unix_nano, end_time_unix_nano),
       CASE WHEN failed THEN 2 ELSE 1 END, error_code, error_message,
       json_merge_patch('{{}}', json_object(
           'mcp.method.name', method, 'mcp.protocol.version', protocol_version,
           'network.transport', 'tcp', 'network.protocol.name', 'http',
           'network.protocol.version', nullif(network_protocol_version, ''),
           'client.address', nullif(client_address, ''), 'client.port', nullif(client_port, 0),
           'mcp.session.id', nullif(session_id, ''), 'jsonrpc.request.id', nullif(request_id, ''),
           {_TARGET_ATTRS},{_ERROR_ATTRS},
           'user_agent.original', headers->>'user-agent',
           'http.request.headers', headers))::VARCHAR,
       request_payload, response_payload, payload_truncated, protocol_era, protocol_version, replay_of_trace_id,
       gateway_instance
FROM t
UNION ALL
SELECT trace_id, sw_child_id(span_id, 1), span_id, 'parse', 1, session_id, virtual_server, '', subject, 0, method, '',
       0, '', '', start_time_unix_nano, parsed_ns, 1, 0, '', '{{}}', '', '', false, protocol_era, protocol_version,
       replay_of_trace_id, gateway_instance
FROM t
UNION ALL
SELECT trace_id, sw_child_id(span_id, 2), span_id, 'slice', 1, session_id, virtual_server, '', subject, 0, '', '', 0,
       tool_name, '', parsed_ns, greatest(parsed_ns, sliced_time_unix_nano), 1, 0, '', '{{}}', '', '', false,
       protocol_era, protocol_version, replay_of_trace_id, gateway_instance
FROM t WHERE sliced_time_unix_nano > 0
UNION ALL
SELECT trace_id, sw_child_id(span_id, 3), span_id, 'respond', 1, session_id, virtual_server, '', subject, 0, method,
       '', 0, '', '', respond_time_unix_nano, greatest(respond_time_unix_nano, end_time_unix_nano), 1, 0, '', '{{}}',
       '', '', false, protocol_era, protocol_version, replay_of_trace_id, gateway_instance
FROM t
UNION ALL
SELECT trace_id, span_id, parent_span_id, name, kind, session_id, virtual_server, backend, subject, direction, method,
       '', message_kind, '', backend_tool_name, start_time_unix_nano,
       greatest(start_time_unix_nano, end_time_unix_nano), CASE WHEN failed THEN 2 ELSE 1 END, error_code,
       error_message,
       json_merge_patch('{{}}', json_object(
           'mcp.method.name', method, 'slicewire.backend', nullif(backend, ''),
           'server.address', nullif(peer_address, ''), 'server.port', nullif(peer_port, 0),
           'network.transport', nullif(peer_transport, ''),
           'network.protocol.name', CASE WHEN peer_transport = 'tcp' THEN 'http' END,
           'mcp.protocol.version', nullif(peer_protocol_version, ''), 'mcp.session.id', nullif(peer_session_id, ''),
           'jsonrpc.request.id', nullif(peer_request_id, ''),
           {_HOP_TARGET_ATTRS},{_ERROR_ATTRS}))::VARCHAR,
       request_payload, response_payload, payload_truncated, protocol_era, protocol_version, replay_of_trace_id,
       gateway_instance
FROM h
"""

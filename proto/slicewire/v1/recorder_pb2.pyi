from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPAN_KIND_UNSPECIFIED: _ClassVar[SpanKind]
    SPAN_KIND_INTERNAL: _ClassVar[SpanKind]
    SPAN_KIND_SERVER: _ClassVar[SpanKind]
    SPAN_KIND_CLIENT: _ClassVar[SpanKind]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_CLIENT_TO_GATEWAY: _ClassVar[Direction]
    DIRECTION_GATEWAY_TO_BACKEND: _ClassVar[Direction]
    DIRECTION_BACKEND_TO_GATEWAY: _ClassVar[Direction]
    DIRECTION_GATEWAY_TO_CLIENT: _ClassVar[Direction]

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_REQUEST: _ClassVar[MessageKind]
    MESSAGE_KIND_NOTIFICATION: _ClassVar[MessageKind]
    MESSAGE_KIND_RESULT: _ClassVar[MessageKind]
    MESSAGE_KIND_ERROR: _ClassVar[MessageKind]

class StatusCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_CODE_UNSET: _ClassVar[StatusCode]
    STATUS_CODE_OK: _ClassVar[StatusCode]
    STATUS_CODE_ERROR: _ClassVar[StatusCode]
SPAN_KIND_UNSPECIFIED: SpanKind
SPAN_KIND_INTERNAL: SpanKind
SPAN_KIND_SERVER: SpanKind
SPAN_KIND_CLIENT: SpanKind
DIRECTION_UNSPECIFIED: Direction
DIRECTION_CLIENT_TO_GATEWAY: Direction
DIRECTION_GATEWAY_TO_BACKEND: Direction
DIRECTION_BACKEND_TO_GATEWAY: Direction
DIRECTION_GATEWAY_TO_CLIENT: Direction
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_REQUEST: MessageKind
MESSAGE_KIND_NOTIFICATION: MessageKind
MESSAGE_KIND_RESULT: MessageKind
MESSAGE_KIND_ERROR: MessageKind
STATUS_CODE_UNSET: StatusCode
STATUS_CODE_OK: StatusCode
STATUS_CODE_ERROR: StatusCode

class Span(_message.Message):
    __slots__ = ("trace_id", "span_id", "parent_span_id", "name", "kind", "session_id", "virtual_server", "backend", "subject", "direction", "method", "request_id", "message_kind", "tool_name", "backend_tool_name", "start_time_unix_nano", "end_time_unix_nano", "status", "error_code", "error_message", "attributes_json", "request_payload", "response_payload", "payload_truncated", "protocol_era", "protocol_version", "replay_of_trace_id", "gateway_instance")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_SERVER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_ERA_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: SpanKind
    session_id: str
    virtual_server: str
    backend: str
    subject: str
    direction: Direction
    method: str
    request_id: str
    message_kind: MessageKind
    tool_name: str
    backend_tool_name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status: StatusCode
    error_code: int
    error_message: str
    attributes_json: bytes
    request_payload: bytes
    response_payload: bytes
    payload_truncated: bool
    protocol_era: str
    protocol_version: str
    replay_of_trace_id: bytes
    gateway_instance: str
    def __init__(self, trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., parent_span_id: _Optional[bytes] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[SpanKind, str]] = ..., session_id: _Optional[str] = ..., virtual_server: _Optional[str] = ..., backend: _Optional[str] = ..., subject: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., method: _Optional[str] = ..., request_id: _Optional[str] = ..., message_kind: _Optional[_Union[MessageKind, str]] = ..., tool_name: _Optional[str] = ..., backend_tool_name: _Optional[str] = ..., start_time_unix_nano: _Optional[int] = ..., end_time_unix_nano: _Optional[int] = ..., status: _Optional[_Union[StatusCode, str]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ..., attributes_json: _Optional[bytes] = ..., request_payload: _Optional[bytes] = ..., response_payload: _Optional[bytes] = ..., payload_truncated: _Optional[bool] = ..., protocol_era: _Optional[str] = ..., protocol_version: _Optional[str] = ..., replay_of_trace_id: _Optional[bytes] = ..., gateway_instance: _Optional[str] = ...) -> None: ...

class SpanColumns(_message.Message):
    __slots__ = ("trace_id", "span_id", "parent_span_id", "name", "kind", "session_id", "virtual_server", "backend", "subject", "direction", "method", "request_id", "message_kind", "tool_name", "backend_tool_name", "start_time_unix_nano", "end_time_unix_nano", "status", "error_code", "error_message", "attributes_json", "request_payload", "response_payload", "payload_truncated", "protocol_era", "protocol_version", "replay_of_trace_id", "gateway_instance")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_SERVER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_ERA_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    trace_id: _containers.RepeatedScalarFieldContainer[bytes]
    span_id: _containers.RepeatedScalarFieldContainer[bytes]
    parent_span_id: _containers.RepeatedScalarFieldContainer[bytes]
    name: _containers.RepeatedScalarFieldContainer[str]
    kind: _containers.RepeatedScalarFieldContainer[SpanKind]
    session_id: _containers.RepeatedScalarFieldContainer[str]
    virtual_server: _containers.RepeatedScalarFieldContainer[str]
    backend: _containers.RepeatedScalarFieldContainer[str]
    subject: _containers.RepeatedScalarFieldContainer[str]
    direction: _containers.RepeatedScalarFieldContainer[Direction]
    method: _containers.RepeatedScalarFieldContainer[str]
    request_id: _containers.RepeatedScalarFieldContainer[str]
    message_kind: _containers.RepeatedScalarFieldContainer[MessageKind]
    tool_name: _containers.RepeatedScalarFieldContainer[str]
    backend_tool_name: _containers.RepeatedScalarFieldContainer[str]
    start_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    end_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    status: _containers.RepeatedScalarFieldContainer[StatusCode]
    error_code: _containers.RepeatedScalarFieldContainer[int]
    error_message: _containers.RepeatedScalarFieldContainer[str]
    attributes_json: _containers.RepeatedScalarFieldContainer[bytes]
    request_payload: _containers.RepeatedScalarFieldContainer[bytes]
    response_payload: _containers.RepeatedScalarFieldContainer[bytes]
    payload_truncated: _containers.RepeatedScalarFieldContainer[bool]
    protocol_era: _containers.RepeatedScalarFieldContainer[str]
    protocol_version: _containers.RepeatedScalarFieldContainer[str]
    replay_of_trace_id: _containers.RepeatedScalarFieldContainer[bytes]
    gateway_instance: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, trace_id: _Optional[_Iterable[bytes]] = ..., span_id: _Optional[_Iterable[bytes]] = ..., parent_span_id: _Optional[_Iterable[bytes]] = ..., name: _Optional[_Iterable[str]] = ..., kind: _Optional[_Iterable[_Union[SpanKind, str]]] = ..., session_id: _Optional[_Iterable[str]] = ..., virtual_server: _Optional[_Iterable[str]] = ..., backend: _Optional[_Iterable[str]] = ..., subject: _Optional[_Iterable[str]] = ..., direction: _Optional[_Iterable[_Union[Direction, str]]] = ..., method: _Optional[_Iterable[str]] = ..., request_id: _Optional[_Iterable[str]] = ..., message_kind: _Optional[_Iterable[_Union[MessageKind, str]]] = ..., tool_name: _Optional[_Iterable[str]] = ..., backend_tool_name: _Optional[_Iterable[str]] = ..., start_time_unix_nano: _Optional[_Iterable[int]] = ..., end_time_unix_nano: _Optional[_Iterable[int]] = ..., status: _Optional[_Iterable[_Union[StatusCode, str]]] = ..., error_code: _Optional[_Iterable[int]] = ..., error_message: _Optional[_Iterable[str]] = ..., attributes_json: _Optional[_Iterable[bytes]] = ..., request_payload: _Optional[_Iterable[bytes]] = ..., response_payload: _Optional[_Iterable[bytes]] = ..., payload_truncated: _Optional[_Iterable[bool]] = ..., protocol_era: _Optional[_Iterable[str]] = ..., protocol_version: _Optional[_Iterable[str]] = ..., replay_of_trace_id: _Optional[_Iterable[bytes]] = ..., gateway_instance: _Optional[_Iterable[str]] = ...) -> None: ...

class TraceColumns(_message.Message):
    __slots__ = ("trace_id", "span_id", "parent_span_id", "session_id", "virtual_server", "subject", "direction", "method", "request_id", "tool_name", "backend", "backend_tool_name", "start_time_unix_nano", "parsed_time_unix_nano", "sliced_time_unix_nano", "respond_time_unix_nano", "end_time_unix_nano", "error_code", "error_message", "headers_json", "request_payload", "response_payload", "payload_truncated", "protocol_era", "protocol_version", "replay_of_trace_id", "client_address", "client_port", "network_protocol_version", "message_kind")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_SERVER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    PARSED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SLICED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    RESPOND_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_ERA_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PORT_FIELD_NUMBER: _ClassVar[int]
    NETWORK_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    trace_id: _containers.RepeatedScalarFieldContainer[bytes]
    span_id: _containers.RepeatedScalarFieldContainer[bytes]
    parent_span_id: _containers.RepeatedScalarFieldContainer[bytes]
    session_id: _containers.RepeatedScalarFieldContainer[str]
    virtual_server: _containers.RepeatedScalarFieldContainer[str]
    subject: _containers.RepeatedScalarFieldContainer[str]
    direction: _containers.RepeatedScalarFieldContainer[Direction]
    method: _containers.RepeatedScalarFieldContainer[str]
    request_id: _containers.RepeatedScalarFieldContainer[str]
    tool_name: _containers.RepeatedScalarFieldContainer[str]
    backend: _containers.RepeatedScalarFieldContainer[str]
    backend_tool_name: _containers.RepeatedScalarFieldContainer[str]
    start_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    parsed_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    sliced_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    respond_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    end_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    error_code: _containers.RepeatedScalarFieldContainer[int]
    error_message: _containers.RepeatedScalarFieldContainer[str]
    headers_json: _containers.RepeatedScalarFieldContainer[bytes]
    request_payload: _containers.RepeatedScalarFieldContainer[bytes]
    response_payload: _containers.RepeatedScalarFieldContainer[bytes]
    payload_truncated: _containers.RepeatedScalarFieldContainer[bool]
    protocol_era: _containers.RepeatedScalarFieldContainer[str]
    protocol_version: _containers.RepeatedScalarFieldContainer[str]
    replay_of_trace_id: _containers.RepeatedScalarFieldContainer[bytes]
    client_address: _containers.RepeatedScalarFieldContainer[str]
    client_port: _containers.RepeatedScalarFieldContainer[int]
    network_protocol_version: _containers.RepeatedScalarFieldContainer[str]
    message_kind: _containers.RepeatedScalarFieldContainer[MessageKind]
    def __init__(self, trace_id: _Optional[_Iterable[bytes]] = ..., span_id: _Optional[_Iterable[bytes]] = ..., parent_span_id: _Optional[_Iterable[bytes]] = ..., session_id: _Optional[_Iterable[str]] = ..., virtual_server: _Optional[_Iterable[str]] = ..., subject: _Optional[_Iterable[str]] = ..., direction: _Optional[_Iterable[_Union[Direction, str]]] = ..., method: _Optional[_Iterable[str]] = ..., request_id: _Optional[_Iterable[str]] = ..., tool_name: _Optional[_Iterable[str]] = ..., backend: _Optional[_Iterable[str]] = ..., backend_tool_name: _Optional[_Iterable[str]] = ..., start_time_unix_nano: _Optional[_Iterable[int]] = ..., parsed_time_unix_nano: _Optional[_Iterable[int]] = ..., sliced_time_unix_nano: _Optional[_Iterable[int]] = ..., respond_time_unix_nano: _Optional[_Iterable[int]] = ..., end_time_unix_nano: _Optional[_Iterable[int]] = ..., error_code: _Optional[_Iterable[int]] = ..., error_message: _Optional[_Iterable[str]] = ..., headers_json: _Optional[_Iterable[bytes]] = ..., request_payload: _Optional[_Iterable[bytes]] = ..., response_payload: _Optional[_Iterable[bytes]] = ..., payload_truncated: _Optional[_Iterable[bool]] = ..., protocol_era: _Optional[_Iterable[str]] = ..., protocol_version: _Optional[_Iterable[str]] = ..., replay_of_trace_id: _Optional[_Iterable[bytes]] = ..., client_address: _Optional[_Iterable[str]] = ..., client_port: _Optional[_Iterable[int]] = ..., network_protocol_version: _Optional[_Iterable[str]] = ..., message_kind: _Optional[_Iterable[_Union[MessageKind, str]]] = ...) -> None: ...

class HopColumns(_message.Message):
    __slots__ = ("trace_index", "span_id", "parent_span_id", "name", "kind", "direction", "method", "message_kind", "backend", "backend_tool_name", "start_time_unix_nano", "end_time_unix_nano", "error_code", "error_message", "request_payload", "response_payload", "payload_truncated", "peer_address", "peer_port", "peer_transport", "peer_protocol_version", "peer_session_id", "peer_request_id")
    TRACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    END_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PEER_PORT_FIELD_NUMBER: _ClassVar[int]
    PEER_TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    PEER_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PEER_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    trace_index: _containers.RepeatedScalarFieldContainer[int]
    span_id: _containers.RepeatedScalarFieldContainer[bytes]
    parent_span_id: _containers.RepeatedScalarFieldContainer[bytes]
    name: _containers.RepeatedScalarFieldContainer[str]
    kind: _containers.RepeatedScalarFieldContainer[SpanKind]
    direction: _containers.RepeatedScalarFieldContainer[Direction]
    method: _containers.RepeatedScalarFieldContainer[str]
    message_kind: _containers.RepeatedScalarFieldContainer[MessageKind]
    backend: _containers.RepeatedScalarFieldContainer[str]
    backend_tool_name: _containers.RepeatedScalarFieldContainer[str]
    start_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    end_time_unix_nano: _containers.RepeatedScalarFieldContainer[int]
    error_code: _containers.RepeatedScalarFieldContainer[int]
    error_message: _containers.RepeatedScalarFieldContainer[str]
    request_payload: _containers.RepeatedScalarFieldContainer[bytes]
    response_payload: _containers.RepeatedScalarFieldContainer[bytes]
    payload_truncated: _containers.RepeatedScalarFieldContainer[bool]
    peer_address: _containers.RepeatedScalarFieldContainer[str]
    peer_port: _containers.RepeatedScalarFieldContainer[int]
    peer_transport: _containers.RepeatedScalarFieldContainer[str]
    peer_protocol_version: _containers.RepeatedScalarFieldContainer[str]
    peer_session_id: _containers.RepeatedScalarFieldContainer[str]
    peer_request_id: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, trace_index: _Optional[_Iterable[int]] = ..., span_id: _Optional[_Iterable[bytes]] = ..., parent_span_id: _Optional[_Iterable[bytes]] = ..., name: _Optional[_Iterable[str]] = ..., kind: _Optional[_Iterable[_Union[SpanKind, str]]] = ..., direction: _Optional[_Iterable[_Union[Direction, str]]] = ..., method: _Optional[_Iterable[str]] = ..., message_kind: _Optional[_Iterable[_Union[MessageKind, str]]] = ..., backend: _Optional[_Iterable[str]] = ..., backend_tool_name: _Optional[_Iterable[str]] = ..., start_time_unix_nano: _Optional[_Iterable[int]] = ..., end_time_unix_nano: _Optional[_Iterable[int]] = ..., error_code: _Optional[_Iterable[int]] = ..., error_message: _Optional[_Iterable[str]] = ..., request_payload: _Optional[_Iterable[bytes]] = ..., response_payload: _Optional[_Iterable[bytes]] = ..., payload_truncated: _Optional[_Iterable[bool]] = ..., peer_address: _Optional[_Iterable[str]] = ..., peer_port: _Optional[_Iterable[int]] = ..., peer_transport: _Optional[_Iterable[str]] = ..., peer_protocol_version: _Optional[_Iterable[str]] = ..., peer_session_id: _Optional[_Iterable[str]] = ..., peer_request_id: _Optional[_Iterable[str]] = ...) -> None: ...

class SpanBatch(_message.Message):
    __slots__ = ("spans", "sender", "columns", "traces", "hops")
    SPANS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    TRACES_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    sender: str
    columns: SpanColumns
    traces: TraceColumns
    hops: HopColumns
    def __init__(self, spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., sender: _Optional[str] = ..., columns: _Optional[_Union[SpanColumns, _Mapping]] = ..., traces: _Optional[_Union[TraceColumns, _Mapping]] = ..., hops: _Optional[_Union[HopColumns, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("received", "stored", "duplicates")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    received: int
    stored: int
    duplicates: int
    def __init__(self, received: _Optional[int] = ..., stored: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("sql", "max_rows")
    SQL_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    max_rows: int
    def __init__(self, sql: _Optional[str] = ..., max_rows: _Optional[int] = ...) -> None: ...

class QueryChunk(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...

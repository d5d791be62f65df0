"""JSON-RPC 2.0 messages: parsing, validation and serialization.

Pure functions over bytes and plain data. Nothing here touches sockets, Starlette or an HTTP client,
so the parser can be fed raw bodies in tests and reused by every transport.

    >>> msg = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    >>> msg.kind, msg.method
    ('request', 'ping')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_DEPTH",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Message",
    "ProtocolError",
    "dumps",
    "encode_error",
    "encode_notification",
    "encode_request",
    "encode_result",
    "nested_deeper_than",
    "parse_message",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

RequestId = int | str
Kind = Literal["request", "notification", "result", "error"]

dumps = orjson.dumps

# The deepest JSON the gateway takes, from clients and backends alike: orjson re-encodes up to 255 levels
# (it parses up to 1,024), and the gateway may wrap a message once more; the redactor walks no deeper.
MAX_DEPTH = 250


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests containers more than `limit` levels deep (the top one is 1).
    Iterative: any depth is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _may_nest_deeper_than(data: bytes | str, limit: int) -> bool:
    """A necessary condition for JSON text nesting deeper than `limit`, cheap enough for every message:
    more than 2 * limit characters, and more than `limit` opening brackets."""
    if len(data) <= 2 * limit:
        return False
    raw = data if isinstance(data, bytes) else data.encode()
    return raw.count(b"[") + raw.count(b"{") > limit


class ProtocolError(Exception):
    """A message that is not valid JSON-RPC; carries the JSON-RPC error code to answer with."""

    def __init__(self, code: int, message: str, id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


@dataclass(slots=True)
class Message:
    """One parsed JSON-RPC message. `raw` is the decoded object, kept so that pass-through
    fields (for example `_meta` or unknown result keys) survive untouched."""

    kind: Kind
    raw: dict[str, Any]
    id: RequestId | None = None
    method: str | None = None
    # The message as it arrived, when it arrived as one JSON document (kept for the flight recorder).
    data: bytes | None = None

    @property
    def params(self) -> dict[str, Any]:
        params = self.raw.get("params")
        return params if isinstance(params, dict) else {}

    @property
    def result(self) -> Any:
        return self.raw.get("result")

    @property
    def error(self) -> dict[str, Any]:
        error = self.raw.get("error")
        return error if isinstance(error, dict) else {}


def _valid_id(value: Any) -> bool:
    # bool is an int subclass; JSON-RPC ids are strings or numbers, never booleans
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_object(obj: Any) -> Message:
    """Classify an already-decoded JSON value as a JSON-RPC message, or raise ProtocolError."""
    if isinstance(obj, list):
        raise ProtocolError(INVALID_REQUEST, "JSON-RPC batches are not supported by MCP; send one message per request")
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_REQUEST, "A JSON-RPC message must be a JSON object")
    if obj.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, 'The "jsonrpc" member must be exactly "2.0"', _id_or_none(obj))
    method = obj.get("method")
    has_id = "id" in obj
    if method is not None:
        if not isinstance(method, str) or not method:
            raise ProtocolError(INVALID_REQUEST, 'The "method" member must be a non-empty string', _id_or_none(obj))
        params = obj.get("params")
        if params is not None and not isinstance(params, dict):
            raise ProtocolError(INVALID_REQUEST, 'MCP "params" must be a JSON object', _id_or_none(obj))
        if not has_id:
            return Message("notification", obj, None, method)
        if not _valid_id(obj["id"]):
            raise ProtocolError(INVALID_REQUEST, 'The "id" member must be a string or an integer')
        return Message("request", obj, obj["id"], method)
    if not has_id:
        raise ProtocolError(INVALID_REQUEST, 'A JSON-RPC message needs a "method" or an "id"')
    if "result" in obj and "error" not in obj:
        return Message("result", obj, obj["id"])
    if "error" in obj and "result" not in obj and isinstance(obj["error"], dict):
        return Message("error", obj, obj["id"])
    raise ProtocolError(
        INVALID_REQUEST, 'A JSON-RPC response needs exactly one of "result" or "error"', _id_or_none(obj)
    )


def _id_or_none(obj: dict[str, Any]) -> RequestId | None:
    value = obj.get("id")
    return value if _valid_id(value) else None


def parse_message(data: bytes | str) -> Message:
    """Parse one JSON-RPC message from bytes. Raises ProtocolError with the code to answer with; a
    message nested deeper than MAX_DEPTH is refused as an invalid request."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(PARSE_ERROR, f"Parse error: {exc}") from None
    if _may_nest_deeper_than(data, MAX_DEPTH) and nested_deeper_than(obj, MAX_DEPTH):
        raise ProtocolError(
            INVALID_REQUEST, f"Invalid request: JSON nested deeper than {MAX_DEPTH} levels", _id_or_none(obj)
        )
    msg = parse_object(obj)
    if isinstance(data, bytes):
        msg.data = data
    return msg


def encode_result(id: RequestId | None, result: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": id, "result": result})


class ErrorAnswer(bytes):
    """An encoded JSON-RPC error answer that knows its error: whoever encodes an answer decides, once,
    that it is an error, and /metrics and the flight recorder read `error` instead of the bytes."""

    error: tuple[int, str]  # (code, message)


def encode_error(id: RequestId | None, code: int, message: str, data: Any = None) -> ErrorAnswer:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    answer = ErrorAnswer(orjson.dumps({"jsonrpc": "2.0", "id": id, "error": error}))
    answer.error = (code if type(code) is int else 0, message)  # (a backend's relayed code may be anything)
    return answer


def encode_request(id: RequestId, method: str, params: dict[str, Any] | None = None) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        obj["params"] = params
    return orjson.dumps(obj)


def encode_notification(method: str, params: dict[str, Any] | None = None) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    return orjson.dumps(obj)

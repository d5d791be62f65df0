"""MCP protocol vocabulary shared by both eras: versions, header names, error codes, `_meta` keys,
and the pure checks the streamable HTTP transport prescribes.

Legacy era (2025-11-25 and earlier): `initialize` handshake, `Mcp-Session-Id` sessions.
Modern era (2026-07-28): stateless requests carrying the protocol version and client capabilities
in `params._meta`, `server/discover`, `Mcp-Method` / `Mcp-Name` headers mirrored from the body.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final, Literal

from ._jsonrpc import Message

__all__ = [
    "ALL_VERSIONS",
    "KNOWN_METHODS",
    "LATEST_LEGACY",
    "LATEST_MODERN",
    "LEGACY_VERSIONS",
    "MODERN_VERSIONS",
    "Era",
    "HeaderMismatch",
    "check_modern_headers",
    "decode_header_value",
    "era_of",
    "negotiate_legacy",
]

Era = Literal["legacy", "modern"]

LEGACY_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: Final = ("2026-07-28",)
ALL_VERSIONS: Final = LEGACY_VERSIONS + MODERN_VERSIONS
LATEST_LEGACY: Final = LEGACY_VERSIONS[-1]
LATEST_MODERN: Final = MODERN_VERSIONS[-1]

# HTTP header names, lower-case as ASGI delivers them.
SESSION_ID_HEADER: Final = "mcp-session-id"
PROTOCOL_VERSION_HEADER: Final = "mcp-protocol-version"
METHOD_HEADER: Final = "mcp-method"
NAME_HEADER: Final = "mcp-name"

# MCP error codes (JSON-RPC server-error range reserved by the spec, 2026-07-28 numbering).
HEADER_MISMATCH: Final = -32020
MISSING_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
# Implementation-defined range (-32000..-32019): Slicewire's own.
BACKEND_ERROR: Final = -32000
SESSION_NOT_FOUND: Final = -32001
REQUEST_TIMEOUT: Final = -32002
# The caller has no credential of its own for a backend (per-user key not stored); the message says how.
CREDENTIALS_REQUIRED: Final = -32003
# The caller must authorize the gateway with a backend's OAuth server; data ends "Please visit: <url>".
AUTHORIZATION_REQUIRED: Final = -32004

# Reserved `_meta` keys of the modern era.
META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"
# The 2026-07-28 tasks extension (SEP-2663): declared under capabilities.extensions by both sides.
TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
# 2025-11-25 tasks: the task a message belongs to.
META_RELATED_TASK: Final = "io.modelcontextprotocol/related-task"

# RFC 5424 severities, as `logging/setLevel` and `notifications/message` name them, least severe first.
LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_SEVERITY: Final = {level: rank for rank, level in enumerate(LOG_LEVELS)}


def log_passes(level: Any, threshold: str | None) -> bool:
    """Whether a log message of `level` reaches a client that asked for `threshold` and above."""
    if threshold is None:
        return True
    return _SEVERITY.get(level, len(LOG_LEVELS)) >= _SEVERITY.get(threshold, 0)


# Methods whose `params.name` / `params.uri` / `params.taskId` the modern transport mirrors into
# `Mcp-Name` (SEP-2243; the tasks extension, SEP-2663, adds its methods).
_NAME_PARAM: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
                      "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}  # fmt: skip
# The tasks methods' `Mcp-Name` is checked when present: the SDKs' clients (mcp 2.3, fastmcp 4.1) do not
# send it yet, and refusing them would leave their tasks unfollowable.
_NAME_OPTIONAL: Final = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
_B64_PREFIX: Final = "=?base64?"
_B64_SUFFIX: Final = "?="


class HeaderMismatch(Exception):
    """The HTTP headers contradict the JSON-RPC body (answer: 400, code -32020)."""


def negotiate_legacy(requested: Any) -> str:
    """The version to answer an `initialize` with: the client's if we speak it, else our latest."""
    return requested if requested in LEGACY_VERSIONS else LATEST_LEGACY


def meta_of(msg: Message) -> dict[str, Any]:
    meta = msg.params.get("_meta")
    return meta if isinstance(meta, dict) else {}


def era_of(msg: Message, header_version: str | None) -> Era:
    """Which era a client-to-gateway message belongs to.

    A message carrying the modern `_meta` protocol version, or sent under a modern
    `MCP-Protocol-Version` header, is modern; everything else (including `initialize`) is legacy.
    """
    if header_version in MODERN_VERSIONS:
        return "modern"
    if msg.method is not None and META_PROTOCOL_VERSION in meta_of(msg):
        return "modern"
    return "legacy"


def decode_header_value(value: str) -> str:
    """Undo the `=?base64?...?=` sentinel encoding of `Mcp-Name` / `Mcp-Param-*` values."""
    if value.startswith(_B64_PREFIX) and value.endswith(_B64_SUFFIX) and len(value) >= len(_B64_PREFIX) + 2:
        encoded = value[len(_B64_PREFIX) : -len(_B64_SUFFIX)]
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HeaderMismatch(f"Header value {value!r} is not valid base64-encoded UTF-8") from None
    return value


def check_modern_headers(msg: Message, headers: dict[str, str]) -> str:
    """Validate the modern request metadata headers against the body; return the protocol version.

    Raises HeaderMismatch naming the first disagreement, as the 2026-07-28 transport requires.
    """
    header_version = headers.get(PROTOCOL_VERSION_HEADER)
    body_version = meta_of(msg).get(META_PROTOCOL_VERSION)
    if header_version is None:
        raise HeaderMismatch("Header mismatch: required header MCP-Protocol-Version is missing")
    if body_version is not None and body_version != header_version:
        raise HeaderMismatch(
            f"Header mismatch: MCP-Protocol-Version header value {header_version!r} "
            f"does not match body value {body_version!r}"
        )
    if msg.kind != "request":
        return header_version
    method_header = headers.get(METHOD_HEADER)
    if method_header is None:
        raise HeaderMismatch("Header mismatch: required header Mcp-Method is missing")
    if method_header != msg.method:
        raise HeaderMismatch(
            f"Header mismatch: Mcp-Method header value {method_header!r} does not match body value {msg.method!r}"
        )
    name_key = _NAME_PARAM.get(msg.method or "")
    if name_key is not None:
        name_header = headers.get(NAME_HEADER)
        if name_header is None:
            if msg.method in _NAME_OPTIONAL:
                return header_version
            raise HeaderMismatch(f"Header mismatch: required header Mcp-Name is missing for {msg.method}")
        body_name = msg.params.get(name_key)
        decoded = decode_header_value(name_header)
        if decoded != body_name:
            raise HeaderMismatch(
                f"Header mismatch: Mcp-Name header value {decoded!r} does not match body value {body_name!r}"
            )
    return header_version


def encode_header_value(value: str) -> str:
    """Encode a value for `Mcp-Name` / `Mcp-Param-*`, using the base64 sentinel when it is not plain ASCII."""
    plain = (
        value.isascii()
        and value == value.strip()
        and all(32 <= ord(c) < 127 or c == "\t" for c in value)
        and not (value.startswith(_B64_PREFIX) and value.endswith(_B64_SUFFIX))
    )
    if plain:
        return value
    return _B64_PREFIX + base64.b64encode(value.encode("utf-8")).decode("ascii") + _B64_SUFFIX


PARAM_HEADER_PREFIX: Final = "mcp-param-"


def param_headers(schema: Any) -> tuple[tuple[str, str], ...]:
    """(header name, argument) for each top-level input property a tool annotates with `x-mcp-header`
    (SEP-2243): the argument's value travels in `Mcp-Param-<name>` too. Invalid names are ignored."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return ()
    found = []
    for argument, spec in properties.items():
        name = spec.get("x-mcp-header") if isinstance(spec, dict) else None
        if isinstance(name, str) and name and all(c.isalnum() or c in "-_" for c in name) and name.isascii():
            found.append((name, argument))
    return tuple(found)


def header_text(value: Any) -> str:
    """An argument as its `Mcp-Param-*` header carries it (before the base64 sentinel, if needed)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check_param_headers(
    expected: tuple[tuple[str, str], ...], arguments: dict[str, Any], headers: dict[str, str]
) -> None:
    """Each `Mcp-Param-*` header must carry its argument's value (base64 sentinel decoded), and be
    there exactly when the argument is. Raises HeaderMismatch naming the first disagreement."""
    for name, argument in expected:
        value = arguments.get(argument)
        header = headers.get(PARAM_HEADER_PREFIX + name.lower())
        if header is None:
            if value is not None:
                raise HeaderMismatch(f"Header mismatch: required header Mcp-Param-{name} is missing")
            continue
        if not all(32 <= ord(c) < 127 or c == "\t" for c in header):
            raise HeaderMismatch(f"Header mismatch: Mcp-Param-{name} holds characters a header value cannot")
        if value is None:
            raise HeaderMismatch(f"Header mismatch: Mcp-Param-{name} is sent but params.arguments.{argument} is not")
        decoded = decode_header_value(header.strip(" \t"))
        if decoded != header_text(value):
            raise HeaderMismatch(
                f"Header mismatch: Mcp-Param-{name} header value {decoded!r} does not match params.arguments.{argument}"
            )


def name_param(method: str) -> str | None:
    """The params key mirrored into `Mcp-Name` for this method, if any."""
    return _NAME_PARAM.get(method)


# Method names /metrics labels by name (a client's other methods are counted as "other", so that no
# client can grow the label set): what either era defines for a client to send.
KNOWN_METHODS = frozenset({
    "initialize", "ping", "server/discover", "subscriptions/listen", "tools/list", "tools/call",
    "resources/list", "resources/read", "resources/templates/list", "resources/subscribe",
    "resources/unsubscribe", "prompts/list", "prompts/get", "completion/complete", "logging/setLevel",
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/roots/list_changed", "tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "tasks/update",
})  # fmt: skip

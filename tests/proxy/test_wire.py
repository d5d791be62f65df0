"""The pure wire layer: JSON-RPC parsing, SSE framing, MCP header rules, slicing."""

from __future__ import annotations

import orjson
import pytest

from proxy import VirtualServerConfig
from proxy._jsonrpc import ProtocolError, encode_error, parse_message
from proxy._mcp import HeaderMismatch, check_modern_headers, decode_header_value, encode_header_value, era_of
from proxy._slice import Slice
from proxy._sse import SSEDecoder, encode_event


def test_parse_kinds() -> None:
    assert parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}').kind == "request"
    assert parse_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}').kind == "notification"
    assert parse_message(b'{"jsonrpc":"2.0","id":"a","result":{}}').kind == "result"
    assert parse_message(b'{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}').kind == "error"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", -32700),
        (b"[]", -32600),
        (b'"x"', -32600),
        (b'{"jsonrpc":"1.0","id":1,"method":"a"}', -32600),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"a"}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"a","params":[1]}', -32600),
        (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', -32600),
        (b'{"jsonrpc":"2.0","method":""}', -32600),
    ],
)
def test_parse_errors(raw: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_message(raw)
    assert info.value.code == code


def test_encode_error_omits_absent_data() -> None:
    assert encode_error(1, -1, "m") == b'{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}'


def test_sse_roundtrip_and_chunking() -> None:
    stream = encode_event(b'{"a":1}') + b": keepalive\r\n\r\n" + encode_event(b'{"b":2}', id="7")
    decoder = SSEDecoder()
    events = []
    for i in range(len(stream)):  # one byte at a time
        events.extend(decoder.feed(stream[i : i + 1]))
    assert [(e.event, e.data, e.id) for e in events] == [("message", '{"a":1}', None), ("message", '{"b":2}', "7")]


def test_sse_multiline_and_cr() -> None:
    events = SSEDecoder().feed(b"event: endpoint\rdata: /messages?x=1\r\rdata: a\ndata: b\n\n")
    assert [(e.event, e.data) for e in events] == [("endpoint", "/messages?x=1"), ("message", "a\nb")]


def test_sse_event_size_limit() -> None:
    with pytest.raises(ValueError):
        SSEDecoder(max_event_bytes=10).feed(b"data: " + b"x" * 100 + b"\n\n")


def test_header_value_encoding() -> None:
    for value in ("plain", "wörld", " padded ", "a\nb", "=?base64?x?="):
        assert decode_header_value(encode_header_value(value)) == value
    assert encode_header_value("us-west1") == "us-west1"
    with pytest.raises(HeaderMismatch):
        decode_header_value("=?base64?@@@?=")


def test_era_detection() -> None:
    modern = parse_message(
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}'
    )
    legacy = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert era_of(modern, None) == "modern" and era_of(legacy, None) == "legacy"
    assert era_of(legacy, "2026-07-28") == "modern"


def test_check_modern_headers_uri() -> None:
    msg = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}')
    base = {"mcp-protocol-version": "2026-07-28", "mcp-method": "resources/read"}
    assert check_modern_headers(msg, {**base, "mcp-name": "file:///a"}) == "2026-07-28"
    with pytest.raises(HeaderMismatch):
        check_modern_headers(msg, {**base, "mcp-name": "file:///b"})


def _vs(*mappings: dict) -> VirtualServerConfig:
    return VirtualServerConfig.model_validate({"path": "/v", "server_name": "V", "tool_mappings": list(mappings)})


def test_slice_builds_routes_and_keeps_schemas() -> None:
    tool = {"name": "get_issue", "description": "d", "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": True},
            "icons": [{"src": "x"}], "outputSchema": {"type": "object"}}  # fmt: skip
    vs = _vs(
        {"tool_name": "get_issue", "backend_server_path": "/gh", "alias": "issue", "description_override": "new"},
        {"tool_name": "missing", "backend_server_path": "/gh"},
        {"tool_name": "later", "backend_server_path": "/down"},
    )
    s = Slice.build(vs, {"/gh": [tool, {"name": "delete_repo"}], "/down": None}, {})
    assert [t["name"] for t in s.tools] == ["issue"]
    exposed = s.tools[0]
    assert exposed["description"] == "new"
    assert {k: exposed[k] for k in ("inputSchema", "annotations", "icons", "outputSchema")} == {
        k: tool[k] for k in ("inputSchema", "annotations", "icons", "outputSchema")}  # fmt: skip
    assert tool["name"] == "get_issue" and tool["description"] == "d"  # the backend's copy is untouched
    assert s.routes["issue"].tool_name == "get_issue" and "delete_repo" not in s.routes
    assert "missing" not in s.routes and "later" in s.routes  # undiscovered backends still route
    assert any("no tool named 'missing'" in p for p in s.problems)


def test_slice_backend_version_pin() -> None:
    vs = _vs({"tool_name": "t", "backend_server_path": "/gh", "backend_version": "2.0"})
    assert Slice.build(vs, {"/gh": [{"name": "t"}]}, {"/gh": "1.0"}).tools == ()
    assert len(Slice.build(vs, {"/gh": [{"name": "t"}]}, {"/gh": "2.0"}).tools) == 1


def test_slice_pagination() -> None:
    vs = _vs(*({"tool_name": f"t{i}", "backend_server_path": "/gh"} for i in range(5)))
    s = Slice.build(vs, {"/gh": [{"name": f"t{i}"} for i in range(5)]}, {})
    page, cursor = s.page(None, 2)
    names = [t["name"] for t in page]
    while cursor:
        page, cursor = s.page(cursor, 2)
        names += [t["name"] for t in page]
    assert names == [f"t{i}" for i in range(5)]
    with pytest.raises(ValueError):
        s.page("bm9wZQ==", 2)


def test_encoded_pages_are_the_pages_per_view() -> None:
    vs = _vs(*({"tool_name": f"t{i}", "backend_server_path": "/gh"} for i in range(5)))
    s = Slice.build(vs, {"/gh": [{"name": f"t{i}"} for i in range(5)]}, {})
    everything = frozenset(t["name"] for t in s.tools)
    fragment, cursor = s.encoded_page(None, 3, s.tools, everything)
    assert orjson.loads(orjson.dumps(fragment)) == s.page(None, 3)[0] and cursor == s.page(None, 3)[1]
    assert s.encoded_page(None, 3, s.tools, everything)[0] is fragment  # encoded once
    # A caller whose scopes hide a tool has its own view, never another's encoding.
    narrow = tuple(t for t in s.tools if t["name"] != "t1")
    fragment, _ = s.encoded_page(None, 3, narrow, everything - {"t1"})
    assert [t["name"] for t in orjson.loads(orjson.dumps(fragment))] == ["t0", "t2", "t3"]
    second, cursor = s.encoded_page(cursor, 3, narrow, everything - {"t1"})
    assert [t["name"] for t in orjson.loads(orjson.dumps(second))] == ["t4"] and cursor is None
    with pytest.raises(ValueError):
        s.encoded_page("bm9wZQ==", 3, s.tools, everything)


def test_nesting_is_measured_without_recursion() -> None:
    from proxy._jsonrpc import nested_deeper_than

    deep: list[object] = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert nested_deeper_than(deep, 250)
    shallow: dict[str, object] = {"a": [1, {"b": [2, 3]}], "c": "[[[[not nesting]]]]"}
    assert not nested_deeper_than(shallow, 4) and nested_deeper_than(shallow, 3)

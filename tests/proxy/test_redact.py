"""Redaction rules: secret keys at any depth, paths, patterns, known secrets, headers, the size cap."""

from __future__ import annotations

import orjson

from proxy._config import RedactConfig
from proxy._redact import MARKER, Redactor


def default() -> Redactor:
    c = RedactConfig()
    return Redactor(c.keys, ["$.params.arguments.ssn", '$.result."dotted.key"', "$.items[*].card"], c.patterns, 200)


def test_keys_at_any_depth_case_insensitive() -> None:
    value = {"params": {"arguments": {"Password": "hunter2", "nested": [{"api_key": "k-123"}], "user": "ada"}}}
    out = default().value(value)
    assert out["params"]["arguments"] == {"Password": MARKER, "nested": [{"api_key": MARKER}], "user": "ada"}
    assert value["params"]["arguments"]["Password"] == "hunter2"  # the original is untouched


def test_paths_and_patterns() -> None:
    r = default()
    out = r.value({"params": {"arguments": {"ssn": "123-45-6789", "note": "use Bearer abc.DEF-123 please"}}})
    assert out["params"]["arguments"]["ssn"] == MARKER
    assert out["params"]["arguments"]["note"] == f"use {MARKER} please"
    assert r.value({"result": {"dotted.key": 1, "x": 2}}) == {"result": {"dotted.key": MARKER, "x": 2}}
    assert r.value({"items": [{"card": "4111"}, {"card": "5500"}]}) == {"items": [{"card": MARKER}, {"card": MARKER}]}
    assert MARKER in r.value({"text": "token sk-abcdefghijklmnop"})["text"]


def test_known_secret_values_are_scrubbed_anywhere() -> None:
    r = default()
    r.add_secret("s3cr3t-value")
    assert r.value({"a": ["prefix s3cr3t-value suffix"]}) == {"a": [f"prefix {MARKER} suffix"]}


def test_headers() -> None:
    headers = [(b"authorization", b"Bearer x"), (b"x-api-key", b"k"), (b"user-agent", b"ua"), (b"mcp-session-id", b"s")]
    out = default().headers(headers)
    assert out == {"authorization": MARKER, "x-api-key": MARKER, "user-agent": "ua", "mcp-session-id": MARKER}


def test_payload_cap_truncates_and_flags() -> None:
    data, cut = default().payload({"text": "x" * 500})
    assert cut is True and len(data) == 200
    data, cut = default().payload({"text": "short"})
    assert cut is False and orjson.loads(data) == {"text": "short"}


def test_secret_added_later_reaches_cached_headers() -> None:
    r = default()
    headers = [(b"x-tenant", b"acme s3cr3t-value")]
    assert r.headers(headers) == {"x-tenant": "acme s3cr3t-value"}
    r.add_secret("s3cr3t-value")
    assert r.headers(headers) == {"x-tenant": f"acme {MARKER}"}

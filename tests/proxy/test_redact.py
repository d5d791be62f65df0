"""Redaction rules: secret keys at any depth, paths, patterns, known secrets, headers, the size cap."""

from __future__ import annotations

import orjson

from proxy._config import RecorderConfig, RedactConfig
from proxy.recording._redact import MARKER, Redactor
from tests.support.credentials import CREDENTIALS, secret_parts


def default() -> Redactor:
    c = RedactConfig()
    return Redactor(c.keys, ["$.params.arguments.ssn", '$.result."dotted.key"', "$.items[*].card"], c.patterns, 200)


def test_keys_at_any_depth_case_insensitive() -> None:
    value = {"params": {"arguments": {"Password": "hunter2", "nested": [{"api_key": "k-123"}], "user": "ada"}}}
    out = default().value(value)
    assert out["params"]["arguments"] == {"Password": MARKER, "nested": [{"api_key": MARKER}], "user": "ada"}
    assert value["params"]["arguments"]["Password"] == "hunter2"  # the original is untouched


def test_tool_schemas_keep_secret_named_properties_but_not_their_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "user": {"type": "string", "default": {"token": "t-1"}},
            "password": {"type": "string", "description": "your password", "default": "hunter2", "enum": ["a"]},
            "auth": {"type": "object", "properties": {"api_key": {"type": "string", "examples": ["k-9"]}}},
        },
        "required": ["user", "password"],
    }
    listing = {"result": {"tools": [{"name": "login", "inputSchema": schema, "token": "x", "title": "Login"}]}}
    tool = default().value(listing)["result"]["tools"][0]
    props = tool["inputSchema"]["properties"]
    assert props["password"] == {"type": "string", "description": "your password", "default": MARKER, "enum": MARKER}
    assert props["auth"]["properties"]["api_key"] == {"type": "string", "examples": MARKER}
    assert props["user"] == {"type": "string", "default": {"token": MARKER}}  # values are data: walked
    assert tool["inputSchema"]["required"] == ["user", "password"]
    assert tool["token"] == MARKER and tool["title"] == "Login"  # outside the schema, the usual rules
    # Arguments named like secrets are still replaced: a schema is recognized only inside a tool.
    assert default().value({"params": {"name": "login", "arguments": {"password": {"type": "x"}}}})["params"][
        "arguments"
    ] == {"password": MARKER}


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
    out = orjson.loads(default().headers_json(headers))
    assert out == {"authorization": MARKER, "x-api-key": MARKER, "user-agent": "ua", "mcp-session-id": MARKER}


def test_payload_cap_truncates_and_flags() -> None:
    data, cut = default().payload({"text": "x" * 500})
    assert cut is True and len(data) == 200
    data, cut = default().payload({"text": "short"})
    assert cut is False and orjson.loads(data) == {"text": "short"}


def test_secret_added_later_reaches_cached_headers() -> None:
    r = default()
    headers = [(b"x-tenant", b"acme s3cr3t-value")]
    assert orjson.loads(r.headers_json(headers)) == {"x-tenant": "acme s3cr3t-value"}
    r.add_secret("s3cr3t-value")
    assert orjson.loads(r.headers_json(headers)) == {"x-tenant": f"acme {MARKER}"}


# Payloads the walk redacts, each spelled to slip past a careless byte search.
NEEDS_REDACTING = [
    b'{"params":{"arguments":{"PassWord":"x"}}}',
    b'{"a":{"pass\\u0077ord":"x"}}',  # the key spelled with an escape
    b'{"a":{"api_key" :  "x"}}',
    b'{"note":"Bearer\\nabc.def"}',  # only the decoded string has "Bearer <token>"... with a newline
    b'{"note":"\\u0042earer abc"}',  # the anchor itself escaped
    b'{"t":"use sk-abcdefghijklmnop"}',
    b'{"params":{"arguments":{"ssn":"123"}}}',  # a configured path
    b'{"result":{"dotted.key":1}}',
    b'{"s":"the s3cr3t-value here"}',  # a known secret
    b'{"P\\u00c4SSWORT":"x"}',  # a non-ASCII key, other case, escaped
    '{"PÄSSWORT":"x"}'.encode(),  # ... and as UTF-8
    # every credential format of the default patterns, in prose
    *(orjson.dumps({"note": f"here: {value} (end)"}) for value in CREDENTIALS.values()),
    b'{"Credentials":{"SecretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}',  # an AWS API answer
]
CLEAN = [
    b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the weather is fine"}]}}',
    b'{"params":{"arguments":{"query":"how do tokens work","text":"' + b"x" * 500 + b'"}}}',
]


def prefilter_redactors() -> list[Redactor]:
    c = RedactConfig()
    keys = [*c.keys, "Pässwort"]
    paths = ["$.params.arguments.ssn", '$.result."dotted.key"']
    out = [Redactor(keys, paths, c.patterns, 1 << 20, use_hyperscan=flag) for flag in (True, False)]
    for r in out:
        r.add_secret("s3cr3t-value")
    return out


def test_prefilter_never_skips_what_the_walk_redacts() -> None:
    """Both prefilters (Hyperscan, byte searches) against the exact walk: a payload the walk changes
    must never be declared clean."""
    for r in prefilter_redactors():
        for data in NEEDS_REDACTING:
            assert r.value(orjson.loads(data)) != orjson.loads(data), data  # the walk does redact it
            assert r._needs_walk(data), (r.use_hyperscan, data)
            redacted, _, clean = r.checked_raw(data)
            assert not clean and MARKER.encode() in redacted, data


def test_prefilter_passes_clean_payloads() -> None:
    for r in prefilter_redactors():
        for data in CLEAN:
            if r.use_hyperscan:  # keys matched exactly: "tokens" in a value is not the key "token"
                assert not r._needs_walk(data), data
            assert r.checked_raw(data) == (data, False, r.checked_raw(data)[2])


def test_prefilter_with_patterns_hyperscan_cannot_compile_or_anchor() -> None:
    for flag in (True, False):
        r = Redactor([], [], [r"(ab)\1", r"^secret-\d+"], 1 << 20, use_hyperscan=flag)  # back-reference; anchored
        assert r.value({"a": "xxababyy"}) == {"a": f"xx{MARKER}yy"}
        assert r._needs_walk(b'{"a":"xxababyy"}')
        assert r.value({"a": "secret-42"}) == {"a": MARKER}
        assert r._needs_walk(b'{"a":"secret-42"}')


def test_every_default_credential_format_is_redacted() -> None:
    r = Redactor.for_recorder(RecorderConfig())
    for name, value in CREDENTIALS.items():
        data = orjson.dumps({"params": {"arguments": {"text": f"here: {value} (end)"}}})
        redacted, _, clean = r.checked_raw(data)
        assert not clean, name
        assert MARKER.encode() in redacted, name
        for part in secret_parts():
            assert part.encode() not in redacted, (name, part)

"""Redaction: what is replaced before a span leaves the gateway.

Applied in the recorder's background task, never on the request path. Three rules, all on by
default with sensible lists: credential-looking header names, JSON object keys that name secrets
(at any depth), and string patterns (e.g. bearer tokens); plus configured JSON paths. Known secret
values (credentials the gateway injects, once the auth layer exists) are scrubbed wherever they
appear. A payload over the size cap is cut and flagged.

    redactor = Redactor(RedactConfig())
    data, truncated = redactor.payload({"params": {"arguments": {"password": "hunter2"}}})
    # b'{"params":{"arguments":{"password":"[REDACTED]"}}}', False
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .._jsonrpc import MAX_DEPTH, nested_deeper_than
from ._prefilter import BytesPrefilter, HyperscanPrefilter, Rules, make_prefilter

if TYPE_CHECKING:
    from ._config import RecorderConfig

__all__ = ["MARKER", "UNREDACTABLE", "Redactor"]

MARKER = "[REDACTED]"
# What a payload that cannot be redacted is stored as (JSON); the redactor counts them in `replaced`.
UNREDACTABLE = orjson.dumps(f"[NOT RECORDED: nested deeper than {MAX_DEPTH} levels, or not redactable]")

# JSON Schema keywords that carry values rather than describe them.
_SCHEMA_VALUES = frozenset(("default", "const", "enum", "examples", "example"))

CREDENTIAL_HEADER = re.compile(r"(auth|token|secret|key|cookie|password|credential|session|mcp-headers)", re.I)


def _parse_path(path: str) -> list[str | int]:
    """`$.params.arguments.ssn`, `$.a[0].b`, `$."dotted.key"` -> ["params", "arguments", "ssn"]."""
    if not path.startswith("$"):
        raise ValueError(f"a JSON path starts with '$', found {path!r}")
    parts: list[str | int] = []
    for match in re.finditer(r'\.(?:"([^"]+)"|([^.\[]+))|\[(\d+|\*)\]', path[1:]):
        quoted, plain, index = match.groups()
        if index is not None:
            parts.append(int(index) if index != "*" else "*")
        else:
            parts.append(quoted if quoted is not None else plain)
    return parts


class Redactor:
    def __init__(
        self,
        keys: Iterable[str] = (),
        paths: Iterable[str] = (),
        patterns: Iterable[str] = (),
        max_payload_bytes: int = 65536,
        use_hyperscan: bool = True,
    ) -> None:
        self.use_hyperscan = use_hyperscan  # False: the pure-Python prefilter (tests compare both)
        self.keys = {k.lower() for k in keys}
        self.paths = [_parse_path(p) for p in paths]
        self.patterns = [re.compile(p) for p in patterns]
        self.max_payload_bytes = max_payload_bytes
        self.replaced = 0  # payloads stored as UNREDACTABLE
        self._secrets: set[str] = set()
        self._secret_bytes: list[bytes] = []
        self._header_cache: dict[tuple[bytes, ...], tuple[bytes, bytes]] = {}
        self._headers_json_cache: dict[tuple[tuple[bytes, ...], ...], bytes] = {}  # whole header lists
        self._patterns_text = [p.pattern for p in self.patterns]
        self._prefilter: BytesPrefilter | HyperscanPrefilter | None = None  # built on first use

    @classmethod
    def for_recorder(cls, config: RecorderConfig) -> Redactor:
        """The redactor a `recorder:` config describes (keys, paths, patterns, payload cap)."""
        redact = config.redact
        return cls(redact.keys, redact.paths, [*redact.patterns, *redact.extra_patterns], config.max_payload_bytes)

    def add_secret(self, value: str) -> None:
        """A value that must never be recorded, wherever it appears (e.g. an injected credential)."""
        if len(value) >= 4 and value not in self._secrets:
            self._secrets.add(value)
            # As it would appear inside serialized JSON (escapes included).
            self._secret_bytes.append(orjson.dumps(value)[1:-1])
            self._header_cache.clear()  # cached header values were judged without this secret
            self._headers_json_cache.clear()
            self._prefilter = None  # rebuilt with the new secret at the next use

    def _get_prefilter(self) -> BytesPrefilter | HyperscanPrefilter:
        prefilter = self._prefilter
        if prefilter is None:
            rules = Rules(self.keys, self.paths, self._patterns_text, self._secret_bytes)
            prefilter = self._prefilter = make_prefilter(rules, self.use_hyperscan)
        return prefilter

    def _needs_walk(self, data: bytes) -> bool:
        """False when the serialized value certainly holds nothing to redact (see _prefilter): most
        payloads, decided from the bytes in one pass instead of decoding and walking them."""
        return self._get_prefilter().maybe(data)

    def dirty(self, payloads: Sequence[bytes]) -> set[int]:
        """Which of these serialized payloads may need redacting (`redact_raw`); one scan for all."""
        return self._get_prefilter().dirty(payloads)

    def redact_raw(self, data: bytes) -> bytes:
        """Serialized JSON, redacted (decoded, walked, encoded); text that is not JSON gets the
        string rules. JSON nested deeper than MAX_DEPTH (the walk's bound) is not walked: it becomes
        UNREDACTABLE, counted in `replaced`."""
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._string(data.decode("utf-8", "replace")).encode("utf-8")
        if nested_deeper_than(decoded, MAX_DEPTH):
            self.replaced += 1
            return UNREDACTABLE
        return orjson.dumps(self.value(decoded))

    def cut(self, data: bytes) -> tuple[bytes, bool]:
        """`data` within the payload cap, cut on a character boundary (stored text stays valid UTF-8);
        and whether it was cut."""
        if len(data) <= self.max_payload_bytes:
            return data, False
        return data[: self.max_payload_bytes].decode("utf-8", "ignore").encode("utf-8"), True

    def _string(self, value: str) -> str:
        for pattern in self.patterns:
            value = pattern.sub(MARKER, value)
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MARKER)
        return value

    def _walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("inputSchema"), dict) and isinstance(value.get("name"), str):
                return self._tool(value)
            return {
                k: (MARKER if isinstance(k, str) and k.lower() in self.keys else self._walk(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, str):
            return self._string(value)
        return value

    def _tool(self, tool: dict[str, Any]) -> dict[str, Any]:
        """A tool definition (tools/list): its schemas name arguments, they do not hold them."""
        return {
            k: self._schema(v, False) if k in ("inputSchema", "outputSchema") and isinstance(v, dict)
            else MARKER if isinstance(k, str) and k.lower() in self.keys
            else self._walk(v)
            for k, v in tool.items()
        }  # fmt: skip

    def _schema(self, schema: Any, secret: bool) -> Any:
        """A JSON Schema. A property named like a secret (`password`) keeps its schema, so a recorded
        tool list stays a valid tool list; the values a schema may carry (default, const, enum,
        examples) are replaced under such a property and walked as data everywhere else."""
        if isinstance(schema, list):
            return [self._schema(v, secret) for v in schema]
        if isinstance(schema, str):
            return self._string(schema)
        if not isinstance(schema, dict):
            return schema
        out: dict[str, Any] = {}
        for k, v in schema.items():
            if k == "properties" and isinstance(v, dict):
                out[k] = {
                    name: self._schema(sub, secret or (isinstance(name, str) and name.lower() in self.keys))
                    for name, sub in v.items()
                }
            elif k in _SCHEMA_VALUES:
                out[k] = MARKER if secret else self._walk(v)
            else:
                out[k] = self._schema(v, secret)
        return out

    def _apply_path(self, value: Any, path: list[str | int]) -> None:
        if not path:
            return
        head, rest = path[0], path[1:]
        if head == "*" and isinstance(value, list):
            targets = range(len(value))
        elif isinstance(head, int) and isinstance(value, list) and head < len(value):
            targets = range(head, head + 1)
        elif isinstance(head, str) and isinstance(value, dict) and head in value:
            targets = [head]  # type: ignore[assignment]
        else:
            return
        for key in targets:
            if rest:
                self._apply_path(value[key], rest)
            else:
                value[key] = MARKER

    def value(self, value: Any) -> Any:
        """A redacted copy of a decoded JSON value (the original is not modified)."""
        copy = self._walk(value)
        for path in self.paths:
            self._apply_path(copy, path)
        return copy

    def payload(self, value: Any) -> tuple[bytes, bool]:
        """A decoded value as redacted JSON bytes, cut at the cap; and whether it was cut."""
        data, truncated, _ = self.checked_raw(orjson.dumps(value))
        return data, truncated

    def checked_raw(self, data: bytes) -> tuple[bytes, bool, bool]:
        """JSON already serialized (a request body, an answer as sent), redacted and cut: used as it
        is unless the prefilter says it may need redacting, and only then decoded and walked. Also
        says whether it was clean. (Batches use `dirty()` instead: one scan for all payloads.)"""
        clean = not self._needs_walk(data)
        if not clean:
            data = self.redact_raw(data)
        data, truncated = self.cut(data)
        return data, truncated, clean

    def headers_json(self, headers: Iterable[Sequence[bytes]]) -> bytes:
        """Request headers for a span as a JSON object, credential-looking ones replaced by the marker;
        built from cached pieces.

        Clients send the same headers over and over: each (name, value) pair is judged once and its
        JSON member cached (credential values are never kept: their entry holds the marker), and so
        is each whole list's JSON. A name sent twice keeps its last value. Pairs may come as lists
        (MessagePack has no tuples)."""
        key = tuple(map(tuple, headers))
        whole = self._headers_json_cache.get(key)
        if whole is not None:
            return whole
        members: dict[bytes, bytes] = {}
        cache = self._header_cache
        for pair in key:
            entry = cache.get(pair)
            if entry is None:
                if len(cache) > 4096:
                    cache.clear()
                entry = cache[pair] = self._header(*pair)
            members[entry[0]] = entry[1]
        whole = b"{" + b",".join(members.values()) + b"}"
        if len(self._headers_json_cache) > 1024:
            self._headers_json_cache.clear()
        self._headers_json_cache[key] = whole
        return whole

    def _header(self, raw_name: bytes, raw_value: bytes) -> tuple[bytes, bytes]:
        """(lower-cased name, its JSON member `"name":"value"`)."""
        name = raw_name.decode("latin-1").lower()
        if CREDENTIAL_HEADER.search(name):
            value = MARKER
        else:
            value = raw_value.decode("latin-1")
            if name not in _PLAIN_HEADERS:
                value = self._string(value)
        key = name.encode("latin-1")
        return key, orjson.dumps(name) + b":" + orjson.dumps(value)


# Headers whose values are protocol plumbing: recorded as they are, without pattern scans.
_PLAIN_HEADERS = frozenset(
    ("host", "content-type", "content-length", "accept", "accept-encoding", "connection", "user-agent",
     "mcp-protocol-version", "mcp-method", "mcp-name", "traceparent", "tracestate")
)  # fmt: skip

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
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["MARKER", "Redactor"]

MARKER = "[REDACTED]"

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
    ) -> None:
        self.keys = {k.lower() for k in keys}
        self.paths = [_parse_path(p) for p in paths]
        self.patterns = [re.compile(p) for p in patterns]
        self.max_payload_bytes = max_payload_bytes
        self._secrets: set[str] = set()
        # Fast path: most payloads hold nothing to redact. The same rules as byte searches over the
        # serialized JSON decide whether the (slow) walk is needed at all.
        # Substring needles: a key that contains another key needs no needle of its own (a false
        # positive only costs the exact walk).
        minimal = [k for k in self.keys if not any(o != k and o in k for o in self.keys)]
        self._key_needles = tuple(k.encode("utf-8") for k in sorted(minimal))
        anchors = [_ANCHORS.get(p.pattern) for p in self.patterns]
        # When every pattern has known anchor literals, their absence proves no pattern matches.
        self._anchors = tuple(a.encode("utf-8") for group in anchors if group for a in group) if all(anchors) else None
        self._byte_patterns = [re.compile(p.pattern.encode("utf-8")) for p in self.patterns]
        self._secret_bytes: list[bytes] = []
        self._header_cache: dict[tuple[bytes, bytes], tuple[str, str]] = {}

    def add_secret(self, value: str) -> None:
        """A value that must never be recorded, wherever it appears (e.g. an injected credential)."""
        if len(value) >= 4:
            self._secrets.add(value)
            # As it would appear inside serialized JSON (escapes included).
            self._secret_bytes.append(orjson.dumps(value)[1:-1])
            self._header_cache.clear()  # cached header values were judged without this secret

    def _needs_walk(self, data: bytes) -> bool:
        """False when the serialized value certainly holds nothing to redact, decided with plain byte
        searches (much cheaper than walking it or running regexes here): no `"secret-key":`, no anchor
        literal of a pattern (patterns without known anchors always run), no known secret value."""
        if self.paths:
            return True
        lowered = data.lower()
        for needle in self._key_needles:
            if needle in lowered:
                return True
        if self._anchors is not None:
            for anchor in self._anchors:
                if anchor in lowered:
                    return True
        else:
            for pattern in self._byte_patterns:
                if pattern.search(data):
                    return True
        for secret in self._secret_bytes:
            if secret in data:
                return True
        return False

    def _string(self, value: str) -> str:
        for pattern in self.patterns:
            value = pattern.sub(MARKER, value)
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MARKER)
        return value

    def _walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (MARKER if isinstance(k, str) and k.lower() in self.keys else self._walk(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, str):
            return self._string(value)
        return value

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

    def payload(self, value: Any, known_clean: bool = False) -> tuple[bytes, bool]:
        """Redacted JSON bytes, cut at the cap; and whether it was cut.

        `known_clean`: the caller knows the value carries only what an already-checked clean payload
        carried plus gateway-made fields (e.g. the upstream copy of a client request), so the
        prefilter is skipped.
        """
        data, truncated, _ = self.checked_payload(value, known_clean)
        return data, truncated

    def checked_raw(self, data: bytes, known_clean: bool = False) -> tuple[bytes, bool, bool]:
        """Like `checked_payload` for JSON already serialized (a request body, an answer as sent): used
        as it is unless it needs redacting, and only then parsed and walked."""
        clean = known_clean or not self._needs_walk(data)
        if not clean:
            try:
                data = orjson.dumps(self.value(orjson.loads(data)))
            except orjson.JSONDecodeError:
                data = self._string(data.decode("utf-8", "replace")).encode("utf-8")
        if len(data) > self.max_payload_bytes:
            return data[: self.max_payload_bytes].decode("utf-8", "ignore").encode("utf-8"), True, clean
        return data, False, clean

    def checked_payload(self, value: Any, known_clean: bool = False) -> tuple[bytes, bool, bool]:
        """Like `payload`, plus whether the value was clean (nothing needed redacting)."""
        if value is None:
            return b"", False, True
        data = orjson.dumps(value)
        clean = known_clean or not self._needs_walk(data)
        if not clean:
            data = orjson.dumps(self.value(value))
        if len(data) > self.max_payload_bytes:
            # Cut on a character boundary so that the stored text stays valid UTF-8.
            return data[: self.max_payload_bytes].decode("utf-8", "ignore").encode("utf-8"), True, clean
        return data, False, clean

    def headers(self, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        """Request headers for a span: credential-looking ones replaced by the marker.

        Clients send the same headers over and over: each (name, value) pair is judged once and the
        recorded form cached (credential values are never kept: their entry is the marker)."""
        out = {}
        cache = self._header_cache
        for pair in headers:
            entry = cache.get(pair)
            if entry is None:
                if len(cache) > 4096:
                    cache.clear()
                entry = cache[pair] = self._header(*pair)
            out[entry[0]] = entry[1]
        return out

    def _header(self, raw_name: bytes, raw_value: bytes) -> tuple[str, str]:
        name = raw_name.decode("latin-1").lower()
        if CREDENTIAL_HEADER.search(name):
            return name, MARKER
        value = raw_value.decode("latin-1")
        return name, value if name in _PLAIN_HEADERS else self._string(value)


# Headers whose values are protocol plumbing: recorded as they are, without pattern scans.
_PLAIN_HEADERS = frozenset(
    ("host", "content-type", "content-length", "accept", "accept-encoding", "connection", "user-agent",
     "mcp-protocol-version", "mcp-method", "mcp-name", "traceparent", "tracestate")
)  # fmt: skip


# Literals that every match of a default pattern contains (lower-cased), so that payloads without any
# of them skip the regex. Patterns not listed here are always run.
_ANCHORS: dict[str, tuple[str, ...]] = {
    r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+": ("bearer",),
    r"\b(sk|pk|ghp|gho|xox[abprs])[-_][A-Za-z0-9_-]{8,}": ("sk-", "sk_", "pk-", "pk_", "ghp", "gho", "xox"),
}

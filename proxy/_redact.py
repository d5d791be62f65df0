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

    def add_secret(self, value: str) -> None:
        """A value that must never be recorded, wherever it appears (e.g. an injected credential)."""
        if len(value) >= 4:
            self._secrets.add(value)

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

    def payload(self, value: Any) -> tuple[bytes, bool]:
        """Redacted JSON bytes, cut at the cap; and whether it was cut."""
        if value is None:
            return b"", False
        data = orjson.dumps(self.value(value))
        if len(data) > self.max_payload_bytes:
            return data[: self.max_payload_bytes], True
        return data, False

    def headers(self, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        """Request headers for a span: credential-looking ones replaced by the marker."""
        out = {}
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").lower()
            out[name] = MARKER if CREDENTIAL_HEADER.search(name) else self._string(raw_value.decode("latin-1"))
        return out

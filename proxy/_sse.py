"""Server-Sent Events framing: an encoder and an incremental decoder. Pure; no I/O.

>>> decoder = SSEDecoder()
>>> [e.data for e in decoder.feed(b'event: message\\ndata: {"a":1}\\n\\n')]
['{"a":1}']
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent", "encode_event"]


@dataclass(slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


def encode_event(data: bytes, event: str | None = "message", id: str | None = None) -> bytes:
    """One SSE event carrying `data` (a JSON document: no newlines, as orjson writes it)."""
    head = b""
    if id is not None:
        head += b"id: " + id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


class SSEDecoder:
    """Feed bytes as they arrive; get complete events back. Handles CRLF, CR and LF line ends,
    multi-line data and comments, per the WHATWG event-stream rules."""

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            line, sep, rest = _split_line(self._buffer)
            if not sep:
                if len(self._buffer) > self._max:
                    raise ValueError(f"SSE event larger than {self._max} bytes")
                return events
            self._buffer = rest
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent("\n".join(self._data), self._event or "message", self._id)
            self._data, self._event, self._size = [], "", 0
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._size += len(value)
            if self._size > self._max:
                raise ValueError(f"SSE event larger than {self._max} bytes")
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return None


def _split_line(buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """Split off the first line, accepting \\r\\n, \\n or a lone \\r (not at the buffer's end)."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        if lf == -1:
            return buffer, b"", b""
        return buffer[:lf], b"\n", buffer[lf + 1 :]
    if cr == len(buffer) - 1:
        return buffer, b"", b""  # a \r at the end may be the first half of \r\n
    if buffer[cr + 1 : cr + 2] == b"\n":
        return buffer[:cr], b"\r\n", buffer[cr + 2 :]
    return buffer[:cr], b"\r", buffer[cr + 1 :]

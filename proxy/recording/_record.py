"""A request's record (`Record`, with a `Hop` per exchange inside it), kept on the request path.

What a request leaves behind is recorded at the edges: the gateway keeps the timestamps and the
references it already has (headers, bodies as received and sent, the upstream exchange's bytes), and
the shipping helper derives everything else (root span id, error, headers JSON, the 2026-07-28
session key, rows; see helper/_spans). A finished record crosses the pipe to the helper as
MessagePack arrays of its fields and its hops' (`pack`), the dataclasses' field order being the wire's.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import struct
import time
from dataclasses import dataclass, fields
from typing import Any

import ormsgpack

from proto import pb, trace_spans

__all__ = [
    "FRAME", "NULL_HOP", "NULL_RECORD", "Hop", "NullRecord", "Record", "new_hop", "new_span_id", "new_trace_id",
    "pack", "parse_traceparent", "records_header", "session_trace_id",
]  # fmt: skip

# Span and trace ids need to be unique, not secret: a PRNG seeded from the OS, as OTel SDKs do. Ids
# are bytes (b"" until known): `bytes.hex()` makes a traceparent ~6x faster than formatting an int.
_getrandbits = random.Random(os.urandom(32)).getrandbits


def new_random_bits(bits: int) -> int:
    return _getrandbits(bits)


def new_trace_id() -> bytes:
    return _getrandbits(128).to_bytes(16, "big")


def new_span_id() -> bytes:
    return _getrandbits(64).to_bytes(8, "big")


def session_trace_id(session_id: str) -> bytes:
    """The trace that collects a session's messages not tied to one request (stable per session)."""
    return hashlib.blake2b(session_id.encode(), digest_size=16).digest()


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?", re.IGNORECASE)


def parse_traceparent(value: Any) -> tuple[bytes, bytes] | None:
    """W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) -> (trace id, parent span id), or None."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None or match.group(1).lower() == "ff":
        return None
    trace_id, span_id = bytes.fromhex(match.group(2)), bytes.fromhex(match.group(3))
    if trace_id == bytes(16) or span_id == bytes(8):
        return None
    return trace_id, span_id


# --- the pipe to the shipping helper (see _recording, _shipper) ---------------------------------------

FRAME = struct.Struct(">cI")  # a frame's kind (C config, S secret, R records, F flush) and payload length


def records_header(count: int) -> bytes:
    """The MessagePack array header an R frame starts with: the frame is one array of `count` records,
    each packed on its own at `emit()` (ormsgpack, ~2x cheaper than `marshal` for a record; see
    bench/README.md) and joined after this header at hand-off."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


# --- records --------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Hop:
    """One message exchange inside a request's record: the call to a backend, a request relayed to the
    client, a message the backend sent about the call."""

    name: str | None  # None: "<method> <tool>", made by the shipping helper
    kind: int  # pb.SPAN_KIND_*
    direction: int  # pb.DIRECTION_*
    method: str
    start_ns: int
    end_ns: int
    span_id: bytes
    backend: str = ""
    tool: str = ""
    request: Any = None  # the bytes sent, or the message as a dict
    response: Any = None
    error: tuple[int, str] | None = None  # (code, message); a list once it has crossed the pipe
    parent: bytes = b""  # the span id of the hop this one is inside; b"": under the request's root span
    request_id: Any = None  # the JSON-RPC id the upstream request went with
    peer: tuple[str, int, str, str, str] | None = None  # the backend as reached: see Backend.peer

    def sent(self, request: Any, request_id: Any = None, peer: tuple[str, int, str, str, str] | None = None) -> None:
        """The request went to the backend: its bytes, its id there, and the backend as reached."""
        self.request, self.request_id, self.peer = request, request_id, peer

    def answered(self, response: Any, error: tuple[int, str] | None = None) -> None:
        self.end_ns = time.time_ns()
        self.response = response
        if error is not None:
            self.error = error

    def failed(self, error: tuple[int, str], request: Any = None) -> None:
        """No answer came (the backend was unreachable, timed out, or the call was abandoned)."""
        self.end_ns = time.time_ns()
        self.error = error
        if request is not None:
            self.request = request


@dataclass(slots=True, eq=False)
class Record:
    """What one message crossing the gateway leaves behind, filled at the edges of its handling: the
    timestamps, the references the gateway already holds (headers, the bodies as received and sent),
    and one `Hop` per exchange inside it. The shipping helper derives the rest (see helper/_spans).

        record = Record.begin(scope["headers"])
        record.received("tools/call", 1, body)
        record.parsed("modern", "2026-07-28", None)
        record.sliced("echo", "/echo", "echo")
        hop, traceparent = record.upstream("tools/call", "/echo", "echo")
        hop.answered(answer_bytes)
        record.answered(sent_bytes, "/virtual/echo")

    It crosses the pipe to the helper as MessagePack arrays of its fields in this order (`pack`)."""

    start_ns: int
    headers: list[tuple[bytes, bytes]]
    parsed_ns: int
    client: Any = None  # the caller's (host, port), as the ASGI server saw it; None: not known
    http_version: str = ""
    sliced_ns: int = 0  # 0: the request was not sliced (not a routed method, or refused before)
    end_ns: int = 0
    trace_id: bytes = b""  # b"" until known; the helper makes one when no hop needed it
    parent: bytes = b""  # the caller's span, when it sent a traceparent
    direction: int = pb.DIRECTION_CLIENT_TO_GATEWAY
    method: str = ""  # "" until parsed: a record without one is not emitted
    request_id: Any = None
    request: Any = None  # the body's bytes (a parsed dict where the gateway made the message)
    response: Any = None
    era: str = ""
    version: str = ""
    session: str | None = ""  # None for a 2026-07-28 request: the helper derives the key (ModernSessions)
    virtual_server: str = ""
    subject: str = ""
    tool: str = ""
    backend: str = ""
    backend_tool: str = ""
    hops: list[Hop] | None = None  # in the order they began; made on first use
    replay_of: bytes = b""  # the trace a `slicewire replay --via` request replays
    span_id: bytes = b""  # the root span's; the helper makes it
    error: tuple[int, str] | None = None  # the JSON-RPC error answered (code, message), as its encoder said
    kind: str = "request"  # what the client sent: request, notification, result or error

    @classmethod
    def begin(
        cls,
        headers: list[tuple[bytes, bytes]],
        start_ns: int | None = None,
        client: Any = None,
        http_version: str = "",
    ) -> Record:
        """A request arrived (now, or at `start_ns`) with these raw ASGI headers, from `client` (the
        ASGI scope's (host, port)) over HTTP/`http_version`."""
        start_ns = time.time_ns() if start_ns is None else start_ns
        return cls(start_ns, headers, start_ns, client, http_version)

    # --- events, in the order they happen ---

    def identified(self, subject: str) -> None:
        self.subject = subject

    def received(self, method: str, request_id: Any, body: Any, kind: str = "request") -> None:
        self.method, self.request_id, self.request, self.kind = method, request_id, body, kind

    def answers(self, method: str) -> None:
        """The client's answer (a result or an error) to the request the gateway relayed to it."""
        self.method = method

    def unreadable(self) -> None:
        """The body was not a JSON-RPC message (answered 400)."""
        self.method = "(invalid message)"

    def replays(self, trace_id: bytes) -> None:
        """A `slicewire replay --via` request, replaying that recorded trace."""
        self.replay_of = trace_id

    def parsed(self, era: str, version: str, session: str | None) -> None:
        """The era and session are known: the request is the gateway's to handle from here."""
        self.era, self.version, self.session, self.parsed_ns = era, version, session, time.time_ns()

    def in_session(self, session_id: str) -> None:
        """A message tied to no request of the session (a notification, an answer): it joins the
        session's own trace."""
        if not self.trace_id:
            self.trace_id = session_trace_id(session_id)

    def session_opened(self, session_id: str, version: str) -> None:
        """`initialize` made a session."""
        self.session, self.version = session_id, version

    def sliced(self, tool: str, backend: str = "", backend_tool: str = "") -> None:
        """The slice decided: the exposed name, and the backend and its name for it (empty: refused)."""
        self.tool, self.backend, self.backend_tool, self.sliced_ns = tool, backend, backend_tool, time.time_ns()

    def upstream(self, method: str, backend: str, tool: str, name: str | None = None) -> tuple[Hop, str]:
        """A call to a backend begins: its hop, and the traceparent the backend gets for it (the record
        gets its trace id here when it has none)."""
        span_id = new_span_id()
        hop = self.add(Hop(name, _CLIENT, _TO_BACKEND, method, time.time_ns(), 0, span_id, backend, tool))
        trace_id = self.trace_id
        if not trace_id:
            trace_id = self.trace_id = new_trace_id()
        return hop, f"00-{trace_id.hex()}-{span_id.hex()}-01"

    def add(self, hop: Hop) -> Hop:
        hops = self.hops
        if hops is None:
            self.hops = [hop]
        else:
            hops.append(hop)
        return hop

    def child(self, parent: Hop, hop: Hop) -> Hop:
        """A hop inside another."""
        hop.parent = parent.span_id
        return self.add(hop)

    def heard(self, upstream: Hop, method: str | None, message: Any) -> None:
        """The backend sent a message about the upstream call (a notification, a request for the client)."""
        hop = new_hop(method or "message", pb.SPAN_KIND_INTERNAL, pb.DIRECTION_BACKEND_TO_GATEWAY, method or "")
        hop.request = message
        self.child(upstream, hop)

    def guarded(self, rule: str, action: str, detail: str) -> None:
        """A guardrail fired on this request: an event of the gateway's (docs/guardrails.md)."""
        hop = self.add(new_hop(f"guardrail {rule}: {action}", pb.SPAN_KIND_INTERNAL, pb.DIRECTION_UNSPECIFIED,
                               "guardrail"))  # fmt: skip
        hop.request = {"rule": rule, "action": action, "detail": detail}

    def asked(self, method: str, request: Any) -> Hop:
        """The gateway relays a backend's request to the client (on a 2025-11-25 stream)."""
        hop = self.add(new_hop(method, pb.SPAN_KIND_INTERNAL, pb.DIRECTION_GATEWAY_TO_CLIENT, method))
        hop.request = request
        return hop

    def resumed(self, target: str, backend: str, request: Any) -> Hop:
        """A parked backend call goes on with the client's answers (2026-07-28 retry)."""
        self.backend = backend
        method = target.split(" ", 1)[0]
        hop = self.add(new_hop(f"{target} (resumed)", _CLIENT, _TO_BACKEND, method, backend=backend))
        hop.request = request
        return hop

    def answered(self, body: Any, virtual_server: str, error: tuple[int, str] | None = None) -> None:
        if type(body) is not bytes and isinstance(body, bytes):
            body = bytes(body)  # an ErrorAnswer: the packer takes plain bytes only
        self.end_ns, self.response, self.virtual_server, self.error = time.time_ns(), body, virtual_server, error

    def continue_from(self, traceparent_value: Any) -> None:
        """Join the caller's trace when it sent a W3C traceparent (header or params._meta)."""
        parsed = parse_traceparent(traceparent_value)
        if parsed is not None:
            self.trace_id, self.parent = parsed

    def span_count(self) -> int:
        """The spans it expands to in the recorder (see proto.trace_spans)."""
        hops = self.hops
        return trace_spans(self.sliced_ns != 0, len(hops) if hops else 0)

    # --- the wire form ---

    @classmethod
    def from_row(cls, row: list[Any]) -> Record:
        """A record as it came over the pipe (`pack`'s pair)."""
        values, hops = row
        values.insert(_HOPS, [Hop(*hop) for hop in hops] if hops else None)
        return cls(*values)


class _NullHop(Hop):
    """The hop of a request not recorded: its events do nothing."""

    __slots__ = ()

    def sent(self, request: Any, request_id: Any = None, peer: tuple[str, int, str, str, str] | None = None) -> None:
        pass

    def answered(self, response: Any, error: tuple[int, str] | None = None) -> None:
        pass

    def failed(self, error: tuple[int, str], request: Any = None) -> None:
        pass


class NullRecord(Record):
    """The record of a request when recording is off: every event does nothing, so handlers record
    without asking whether they do. One instance serves every request (`NULL_RECORD`)."""

    __slots__ = ()

    def identified(self, subject: str) -> None:
        pass

    def received(self, method: str, request_id: Any, body: Any, kind: str = "request") -> None:
        pass

    def answers(self, method: str) -> None:
        pass

    def unreadable(self) -> None:
        pass

    def replays(self, trace_id: bytes) -> None:
        pass

    def parsed(self, era: str, version: str, session: str | None) -> None:
        pass

    def in_session(self, session_id: str) -> None:
        pass

    def session_opened(self, session_id: str, version: str) -> None:
        pass

    def sliced(self, tool: str, backend: str = "", backend_tool: str = "") -> None:
        pass

    def upstream(self, method: str, backend: str, tool: str, name: str | None = None) -> tuple[Hop, str]:
        return NULL_HOP, ""

    def add(self, hop: Hop) -> Hop:
        return hop

    def child(self, parent: Hop, hop: Hop) -> Hop:
        return hop

    def heard(self, upstream: Hop, method: str | None, message: Any) -> None:
        pass

    def guarded(self, rule: str, action: str, detail: str) -> None:
        pass

    def asked(self, method: str, request: Any) -> Hop:
        return NULL_HOP

    def resumed(self, target: str, backend: str, request: Any) -> Hop:
        return NULL_HOP

    def answered(self, body: Any, virtual_server: str, error: tuple[int, str] | None = None) -> None:
        pass

    def continue_from(self, traceparent_value: Any) -> None:
        pass


NULL_HOP: Hop = _NullHop(None, 0, 0, "", 0, 0, b"")
NULL_RECORD: Record = NullRecord(0, [], 0)


def new_hop(
    name: str | None,
    kind: int,
    direction: int,
    method: str,
    start_ns: int | None = None,
    backend: str = "",
    tool: str = "",
) -> Hop:
    """A hop beginning now (or at `start_ns`). A name of None is "<method> <tool>", made by the helper."""
    start_ns = time.time_ns() if start_ns is None else start_ns
    return Hop(name, kind, direction, method, start_ns, start_ns, new_span_id(), backend, tool)


_CLIENT, _TO_BACKEND = pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND


def attributes_reader(names: list[str]) -> Any:
    """A function returning these attributes of an object as a tuple, generated as dataclasses generate
    `__init__`: one attribute load per name, a third of `operator.attrgetter`'s generic lookup on slots
    (docs/performance-notes.md)."""
    namespace: dict[str, Any] = {}
    exec(f"def read(o):\n    return ({', '.join(f'o.{name}' for name in names)},)\n", namespace)
    return namespace["read"]


_record_row = attributes_reader([f.name for f in fields(Record) if f.name != "hops"])
_hop_row = attributes_reader([f.name for f in fields(Hop)])
_HOPS = [f.name for f in fields(Record)].index("hops")


def pack(record: Record) -> bytes:
    """A record as MessagePack, for the pipe: a pair, its fields but `hops` in declared order and its
    hops' fields (`from_row` reads it back). Raises TypeError for a payload the packer cannot take
    (nested past its 254 levels)."""
    hops = record.hops
    return ormsgpack.packb((_record_row(record), [_hop_row(hop) for hop in hops] if hops else None))

"""A request's record, kept on the request path: a plain list, named by the constants here.

What a request leaves behind is recorded at the edges: the gateway keeps the timestamps and the
references it already has (headers, bodies as received and sent, the upstream exchange's bytes) in a
list, and the shipping helper derives everything else (root span id, error, headers JSON, the
2026-07-28 session key, rows; see _spans). A list is created by one C-level copy, set by index, and
carried over the pipe as MessagePack as it is: creating a `__slots__` object and converting it to rows
on the serving thread cost more than proxying the call (bench/README.md).

    trace = new_trace(time.time_ns(), scope["headers"])
    trace[METHOD], trace[REQUEST] = "tools/call", body
    hop, meta["traceparent"] = add_upstream_hop(trace, "tools/call", "/echo", "echo", time.time_ns())
    child = new_hop("notifications/progress", pb.SPAN_KIND_INTERNAL, ..., time.time_ns())
    add_child(trace, hop, child)
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import struct
import time
from typing import Any, TypeAlias

from proto import pb

__all__ = [
    "FRAME", "Hop", "ModernSessions", "Trace", "add_child", "add_hop", "add_upstream_hop", "continue_from",
    "new_hop", "new_span_id", "new_trace", "new_trace_id",
    "parse_traceparent", "records_header", "session_trace_id", "span_count",
]  # fmt: skip

# Span and trace ids need to be unique, not secret: a PRNG seeded from the OS, as OTel SDKs do. Ids
# are bytes (b"" until known): `bytes.hex()` makes a traceparent ~6x faster than formatting an int.
_getrandbits = random.Random(os.urandom(32)).getrandbits


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

Trace: TypeAlias = "list[Any]"  # a trace record (the indices below)
Hop: TypeAlias = "list[Any]"  # a hop record (HOP_* indices)

(START, HEADERS, PARSED, SLICED, END, TRACE_ID, PARENT, DIRECTION, METHOD, REQUEST_ID, REQUEST, RESPONSE, ERA,
 VERSION, SESSION, VIRTUAL_SERVER, SUBJECT, TOOL, BACKEND, BACKEND_TOOL, HOPS, REPLAY_OF,
 SPAN_ID) = range(23)  # fmt: skip
# Ids are bytes, b"" until known; the helper fills in the root SPAN_ID, and TRACE_ID when no hop needed it.
# SESSION is None for a 2026-07-28 request: the helper derives the key (see ModernSessions).
_DEFAULTS = {
    SLICED: 0, END: 0, TRACE_ID: b"", PARENT: b"", DIRECTION: pb.DIRECTION_CLIENT_TO_GATEWAY, METHOD: "",
    REQUEST_ID: None, REQUEST: None, RESPONSE: None, ERA: "", VERSION: "", SESSION: "", VIRTUAL_SERVER: "",
    SUBJECT: "", TOOL: "", BACKEND: "", BACKEND_TOOL: "", HOPS: None, REPLAY_OF: b"", SPAN_ID: b"",
}  # fmt: skip
_TRACE_TAIL = [_DEFAULTS[i] for i in range(SLICED, SPAN_ID + 1)]  # after START, HEADERS, PARSED

(HOP_NAME, HOP_KIND, HOP_DIRECTION, HOP_METHOD, HOP_START, HOP_END, HOP_SPAN_ID, HOP_BACKEND, HOP_TOOL, HOP_REQUEST,
 HOP_RESPONSE, HOP_ERROR, HOP_PARENT) = range(13)  # fmt: skip
# A trace's hops are one flat list, in the order they began; a hop inside another (a message the backend
# sent about the upstream call) names it in HOP_PARENT (its span id; b"" under the trace's root span).


def new_trace(start_ns: int, headers: list[tuple[bytes, bytes]]) -> Trace:
    """A trace record for a request that arrived at `start_ns` with these (raw ASGI) headers."""
    return [start_ns, headers, start_ns, *_TRACE_TAIL]


def new_hop(
    name: str | None, kind: int, direction: int, method: str, start_ns: int, backend: str = "", tool: str = ""
) -> Hop:
    """A hop record: one message exchange inside a trace (the upstream call, a relayed request, ...).
    A name of None is "<method> <tool>", made by the shipping helper."""
    return [name, kind, direction, method, start_ns, start_ns, new_span_id(), backend, tool, None, None, None, b""]


def add_hop(trace: Trace, hop: Hop) -> Hop:
    """Append a hop to the trace's list of them, made on first use (most records have one or none)."""
    hops = trace[HOPS]
    if hops is None:
        trace[HOPS] = [hop]
    else:
        hops.append(hop)
    return hop


def add_child(trace: Trace, parent: Hop, child: Hop) -> None:
    """A hop inside another: listed with the trace's hops, its parent named by span id."""
    child[HOP_PARENT] = parent[HOP_SPAN_ID]
    add_hop(trace, child)


_CLIENT, _TO_BACKEND = pb.SPAN_KIND_CLIENT, pb.DIRECTION_GATEWAY_TO_BACKEND


def add_upstream_hop(
    trace: Trace, method: str, backend: str, tool: str, start_ns: int, name: str | None = None
) -> tuple[Hop, str]:
    """The hop of a call to a backend, added to the trace, and the traceparent the backend gets for it
    (the trace gets its id here when it has none)."""
    hop = add_hop(trace, new_hop(name, _CLIENT, _TO_BACKEND, method, start_ns, backend, tool))
    trace_id = trace[TRACE_ID]
    if not trace_id:
        trace_id = trace[TRACE_ID] = new_trace_id()
    return hop, f"00-{trace_id.hex()}-{hop[HOP_SPAN_ID].hex()}-01"


def continue_from(trace: Trace, traceparent_value: Any) -> None:
    """Join the caller's trace when it sent a W3C traceparent (header or params._meta)."""
    parsed = parse_traceparent(traceparent_value)
    if parsed is not None:
        trace[TRACE_ID], trace[PARENT] = parsed


class ModernSessions:
    """Session keys for 2026-07-28 requests, which carry no session id.

    An agent run is found by what its requests share, first match:
    1. OTel baggage `session.id=<id>` (a header): the agent framework names its run itself; the key is
       `<id>@<subject>` for an authenticated caller, `<id>` on a public virtual server.
    2. Otherwise one caller (virtual server, subject) with one client (clientInfo name/version): a run
       starts at its `server/discover` (clients open with it) or after `RUN_IDLE_S` without a request,
       and its key is `<client>-<UTC start>-<4 hex>`, e.g. `mcp-20261203-064512-a1b2`.

    Two runs of the same client by the same caller that overlap in time are told apart only by (1).
    Requests are seen in the order they were emitted (one helper per gateway process).

        sessions = ModernSessions()
        sessions.key("/virtual/support", "alice", "server/discover", meta, baggage="", start_ns=t)
    """

    RUN_IDLE_S = 1800
    _MAX_CALLERS = 10_000  # past this, runs idle for RUN_IDLE_S are forgotten

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str, str], list[Any]] = {}  # caller -> [key, last request's start_ns]

    def key(self, virtual_server: str, subject: str, method: str, meta: Any, baggage: str, start_ns: int) -> str:
        for item in baggage.split(","):
            name, _, value = item.strip().partition("=")
            if name == "session.id" and value:
                # Namespaced by the caller: nobody can file spans under another user's session by naming it.
                value = value.split(";", 1)[0]
                return f"{value}@{subject}" if subject else value
        info = meta.get("io.modelcontextprotocol/clientInfo") if isinstance(meta, dict) else None
        client = f"{info.get('name', '?')}/{info.get('version', '?')}" if isinstance(info, dict) else "?"
        caller = (virtual_server, subject, client)
        run = self._runs.get(caller)
        idle_ns = self.RUN_IDLE_S * 1_000_000_000
        if run is None or method == "server/discover" or start_ns - run[1] > idle_ns:
            if len(self._runs) >= self._MAX_CALLERS:
                self._runs = {c: r for c, r in self._runs.items() if start_ns - r[1] <= idle_ns}
            name = _UNSAFE.sub("-", client.split("/", 1)[0]).strip("-")[:32] or "client"
            when = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start_ns / 1e9))
            run = self._runs[caller] = [f"{name}-{when}-{_getrandbits(16):04x}", start_ns]
        else:
            run[1] = max(run[1], start_ns)
        return str(run[0])


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def span_count(trace: Trace) -> int:
    """The spans a trace expands to: root, parse, respond, slice (when it ran), one per hop."""
    hops = trace[HOPS]
    return (4 if trace[SLICED] else 3) + (len(hops) if hops else 0)

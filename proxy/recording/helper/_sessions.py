"""Session keys for 2026-07-28 requests, which carry none: derived in the shipping helper."""

from __future__ import annotations

import re
import time
from typing import Any

from .._record import new_random_bits

__all__ = ["ModernSessions"]


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
            run = self._runs[caller] = [f"{name}-{when}-{new_random_bits(16):04x}", start_ns]
        else:
            run[1] = max(run[1], start_ns)
        return str(run[0])


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

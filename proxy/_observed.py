"""What the gateway learns about one client request as it handles it, told once (`Observed`).

Two consumers read it: `/metrics` (the request's labels and outcome, observed when it ends) and the
flight recorder (each event is passed on to the request's `Record`, `NULL_RECORD` when recording is
off). Handlers tell it what happened — the message arrived, the slice decided, the tool's result said
`isError` — and never ask whether either consumer is on.

    observed = Observed(record)
    observed.received(msg, body)                 # metrics: its method; record: method, id, body
    observed.sliced("echo", "/alpha", "echo")    # metrics: tool and backend; record: the slice step
    observed.finished(metrics, "/virtual/echo", responder, started)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._guardrails import Verdict
from ._jsonrpc import Message
from ._mcp import KNOWN_METHODS
from ._metrics import Metrics, outcome_of
from .recording._record import Record

if TYPE_CHECKING:
    from ._responder import Responder

__all__ = ["Observed"]


@dataclass(slots=True, eq=False)
class Observed:
    record: Record  # the flight recorder's (NULL_RECORD when not recording)
    # /metrics' labels: an MCP method (else "other", or the message's kind); for a routed request the
    # exposed tool (or a mapping's exposed form, never a client-chosen URI) and its backend.
    method: str = ""
    tool: str = ""
    backend: str = ""
    tool_error: bool = False  # the tool's result said isError
    verdicts: list[Verdict] | None = None  # the guardrails that fired, counted when the request ends

    def received(self, msg: Message, body: bytes) -> None:
        method = msg.method
        self.method = method if method in KNOWN_METHODS else ("other" if method else msg.kind)
        # The body's bytes, not the parsed dict: less to keep while queued.
        self.record.received(method or f"({msg.kind})", msg.id, body, msg.kind)

    def sliced(self, name: str, backend: str = "", backend_name: str = "", label: str | None = None) -> None:
        """The slice decided: the exposed name and, when it routes, its backend and the backend's name
        for it. `label`: what /metrics calls it when not the exposed name (a resource mapping's form)."""
        self.record.sliced(name, backend, backend_name)
        if backend:
            self.tool, self.backend = (name if label is None else label), backend

    def routed(self, backend: str) -> None:
        """The request goes to this backend without a slice step (a task's own backend)."""
        self.backend = backend

    def tool_result(self, is_error: bool) -> None:
        self.tool_error = is_error

    def guarded(self, verdicts: list[Verdict]) -> None:
        """Guardrails fired (before the call, or on its result): each is an event in the record."""
        if not verdicts:
            return
        if self.verdicts is None:
            self.verdicts = []
        self.verdicts += verdicts
        for verdict in verdicts:
            self.record.guarded(verdict.rule, verdict.action, verdict.detail)

    def finished(self, metrics: Metrics | None, virtual_server: str, responder: Responder, started: float) -> None:
        """The answer is sent (`responder` says what it was): observe it; the record takes it too."""
        record = self.record
        if record.method:  # (a record with no method was never parsed, and is not emitted)
            record.answered(responder.sent_body, virtual_server, responder.error)
        if metrics is not None:
            outcome = outcome_of(responder.status, responder.error, self.tool_error)
            metrics.request(
                self.method, virtual_server, self.tool, self.backend, outcome, time.perf_counter() - started
            )
            for verdict in self.verdicts or ():
                metrics.guardrail(virtual_server, self.tool, verdict.rule, verdict.action)

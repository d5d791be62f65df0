"""Tasks through the gateway: which backend task each client task id names.

Both task protocols: 2025-11-25's (SEP-1686: a task-augmented tools/call, tasks/get, tasks/result,
tasks/list, tasks/cancel) and the 2026-07-28 tasks extension's (SEP-2663: the server creates the task,
tasks/get inlines its outcome, tasks/update carries the client's input, tasks/cancel). A task is
relayed in its backend's protocol, or bridged: a 2026-07-28 client's task on a 2025-11-25 backend,
whose outcome and questions the gateway collects (`Bridge`) for the client's tasks/get.

A backend runs the tasks; the gateway holds one session per backend, shared by every client, so a
backend's task ids are neither unique across backends nor scoped to a client. The gateway gives each
task it relays an id of its own — random, so one client cannot guess another's — and remembers the
backend, the backend's id, and who created it on which virtual server. `tasks/get`, `tasks/result`,
`tasks/cancel` find the task only for its creator — the caller's subject, or on a public virtual
server (no subject) the session that created it; `tasks/list` lists only the caller's.

    >>> tasks = Tasks()
    >>> ref = tasks.add("/everything", "f418e1", "/virtual/research", "alice", "legacy", "s1", ttl_ms=60000)
    >>> tasks.find(ref.exposed, "/virtual/research", "alice", "legacy").backend_id
    'f418e1'
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ._mcp import Era

__all__ = ["Bridge", "Question", "TaskRef", "Tasks"]

# How long a task is remembered when its backend gave no ttl, and at most (a backend's ttl can be null:
# unlimited); past that its id is unknown here, as it would be at a backend that dropped it.
_DEFAULT_TTL_S = 3600.0
_MAX_TTL_S = 24 * 3600.0
_MAX_TASKS = 100_000


@dataclass(slots=True)
class Question:
    """A bridged task's backend asking the client something (elicitation, sampling, roots)."""

    request: dict[str, Any]  # {"method": ..., "params": ...}: an inputRequests entry
    answer: asyncio.Future[dict[str, Any]]  # {"result": ...}, set by the client's tasks/update


@dataclass(slots=True)
class Bridge:
    """A 2025-11-25 backend's task serving a 2026-07-28 client: the gateway waits on the backend's
    tasks/result (`runner`), keeps the outcome it ends with, and holds the questions the backend asks
    on the way until the client answers them."""

    task: dict[str, Any] = field(default_factory=dict)  # its fields in the 2026-07-28 shape, as last heard
    outcome: dict[str, Any] | None = None  # {"result": ...} or {"error": ...} once the task has ended
    cancelled: bool = False
    questions: dict[str, Question] = field(default_factory=dict)  # by the key the client answers with
    runner: asyncio.Task[None] | None = None


@dataclass(slots=True)
class TaskRef:
    exposed: str
    backend: str
    backend_id: str
    virtual_server: str
    subject: str
    # The client's era, which is the protocol it follows the task in.
    client_era: Era
    session: str | None  # the 2025-11-25 session that created it: where its status notifications go
    expires: float = field(default=0.0)
    bridge: Bridge | None = None  # set when the backend's task protocol is not the client's


class Tasks:
    def __init__(self) -> None:
        self._by_exposed: dict[str, TaskRef] = {}
        self._by_backend: dict[tuple[str, str], TaskRef] = {}

    def add(
        self,
        backend: str,
        backend_id: str,
        virtual_server: str,
        subject: str,
        client_era: Era,
        session: str | None = None,
        ttl_ms: object = None,
        bridge: Bridge | None = None,
    ) -> TaskRef:
        ttl_s = ttl_ms / 1000 if isinstance(ttl_ms, int | float) and ttl_ms > 0 else _DEFAULT_TTL_S
        if len(self._by_exposed) >= _MAX_TASKS:
            self.sweep()
        ref = TaskRef("swt-" + secrets.token_urlsafe(18), backend, backend_id, virtual_server, subject, client_era,
                      session, time.monotonic() + min(ttl_s, _MAX_TTL_S), bridge)  # fmt: skip
        self._by_exposed[ref.exposed] = ref
        self._by_backend[(backend, backend_id)] = ref
        return ref

    def find(
        self, exposed: object, virtual_server: str, subject: str, era: Era, session: str | None = None
    ) -> TaskRef | None:
        """The task with this id, if this caller created it on this virtual server in this era (else:
        unknown)."""
        ref = self._by_exposed.get(exposed) if isinstance(exposed, str) else None
        if ref is None or ref.client_era != era or not _owner(ref, virtual_server, subject, session):
            return None
        return ref

    def of_backend(self, backend: str, backend_id: object) -> TaskRef | None:
        return self._by_backend.get((backend, backend_id)) if isinstance(backend_id, str) else None

    def owned(self, virtual_server: str, subject: str, session: str | None = None) -> list[TaskRef]:
        """A 2025-11-25 caller's tasks (the era with tasks/list)."""
        return [r for r in self._by_exposed.values()
                if r.client_era == "legacy" and _owner(r, virtual_server, subject, session)]  # fmt: skip

    def forget(self, ref: TaskRef) -> None:
        self._by_exposed.pop(ref.exposed, None)
        self._by_backend.pop((ref.backend, ref.backend_id), None)
        runner = ref.bridge.runner if ref.bridge is not None else None
        if runner is not None and not runner.done():
            runner.cancel()

    def close(self) -> None:
        """The gateway stops: stop waiting on bridged tasks."""
        for ref in list(self._by_exposed.values()):
            self.forget(ref)

    def sweep(self) -> None:
        now = time.monotonic()
        for ref in [r for r in self._by_exposed.values() if r.expires < now]:
            self.forget(ref)


def _owner(ref: TaskRef, virtual_server: str, subject: str, session: str | None) -> bool:
    """An identified caller owns its tasks across sessions; an anonymous one (public virtual server)
    only within the 2025-11-25 session that created them. An anonymous 2026-07-28 caller has no
    session: the task's id, 144 random bits, is its claim (as at a stateless server)."""
    if ref.virtual_server != virtual_server or ref.subject != subject:
        return False
    return bool(subject) or ref.session == session

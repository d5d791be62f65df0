"""Tasks (2025-11-25, SEP-1686) through the gateway: which backend task each client task id names.

A backend runs the tasks; the gateway holds one session per backend, shared by every client, so a
backend's task ids are neither unique across backends nor scoped to a client. The gateway gives each
task it relays an id of its own — random, so one client cannot guess another's — and remembers the
backend, the backend's id, and who created it on which virtual server. `tasks/get`, `tasks/result`,
`tasks/cancel` find the task only for its creator — the caller's subject, or on a public virtual
server (no subject) the session that created it; `tasks/list` lists only the caller's.

    >>> tasks = Tasks()
    >>> ref = tasks.add("/everything", "f418e1", "/virtual/research", "alice", session="s1", ttl_ms=60000)
    >>> tasks.find(ref.exposed, "/virtual/research", "alice").backend_id
    'f418e1'
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

__all__ = ["TaskRef", "Tasks"]

# How long a task is remembered when its backend gave no ttl, and at most (a backend's ttl can be null:
# unlimited); past that its id is unknown here, as it would be at a backend that dropped it.
_DEFAULT_TTL_S = 3600.0
_MAX_TTL_S = 24 * 3600.0
_MAX_TASKS = 100_000


@dataclass(slots=True)
class TaskRef:
    exposed: str
    backend: str
    backend_id: str
    virtual_server: str
    subject: str
    session: str | None  # the 2025-11-25 session that created it: where its status notifications go
    expires: float = field(default=0.0)


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
        session: str | None = None,
        ttl_ms: object = None,
    ) -> TaskRef:
        ttl_s = ttl_ms / 1000 if isinstance(ttl_ms, int | float) and ttl_ms > 0 else _DEFAULT_TTL_S
        if len(self._by_exposed) >= _MAX_TASKS:
            self.sweep()
        ref = TaskRef("swt-" + secrets.token_urlsafe(18), backend, backend_id, virtual_server, subject, session,
                      time.monotonic() + min(ttl_s, _MAX_TTL_S))  # fmt: skip
        self._by_exposed[ref.exposed] = ref
        self._by_backend[(backend, backend_id)] = ref
        return ref

    def find(self, exposed: object, virtual_server: str, subject: str, session: str | None = None) -> TaskRef | None:
        """The task with this id, if this caller created it on this virtual server (else: unknown)."""
        ref = self._by_exposed.get(exposed) if isinstance(exposed, str) else None
        return ref if ref is not None and _owner(ref, virtual_server, subject, session) else None

    def of_backend(self, backend: str, backend_id: object) -> TaskRef | None:
        return self._by_backend.get((backend, backend_id)) if isinstance(backend_id, str) else None

    def owned(self, virtual_server: str, subject: str, session: str | None = None) -> list[TaskRef]:
        return [r for r in self._by_exposed.values() if _owner(r, virtual_server, subject, session)]

    def forget(self, ref: TaskRef) -> None:
        self._by_exposed.pop(ref.exposed, None)
        self._by_backend.pop((ref.backend, ref.backend_id), None)

    def sweep(self) -> None:
        now = time.monotonic()
        for ref in [r for r in self._by_exposed.values() if r.expires < now]:
            self.forget(ref)


def _owner(ref: TaskRef, virtual_server: str, subject: str, session: str | None) -> bool:
    """An identified caller owns its tasks across sessions; an anonymous one (public virtual server)
    only within the session that created them."""
    if ref.virtual_server != virtual_server or ref.subject != subject:
        return False
    return bool(subject) or ref.session == session

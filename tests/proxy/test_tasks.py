"""The gateway's task table (proxy/_tasks.py): ids of its own, tasks only for their creator. Pure."""

from __future__ import annotations

import time

from proxy._tasks import Tasks


def test_a_task_exists_only_for_its_creator_on_its_virtual_server() -> None:
    tasks = Tasks()
    alice = tasks.add("/everything", "b-1", "/v", "alice", "legacy", session="s1", ttl_ms=60_000)
    assert alice.exposed.startswith("swt-") and alice.exposed != "b-1"
    assert tasks.find(alice.exposed, "/v", "alice", "legacy", "another-session") is alice  # a subject: any session
    assert tasks.find(alice.exposed, "/v", "bob", "legacy") is None
    assert tasks.find(alice.exposed, "/other", "alice", "legacy") is None
    assert tasks.find("b-1", "/v", "alice", "legacy") is None  # the backend's id means nothing here
    # A task is followed in the protocol it was created in: a 2026-07-28 request does not find it.
    assert tasks.find(alice.exposed, "/v", "alice", "modern") is None
    assert tasks.of_backend("/everything", "b-1") is alice
    assert tasks.of_backend("/elsewhere", "b-1") is None


def test_anonymous_callers_own_tasks_per_session() -> None:
    tasks = Tasks()
    first = tasks.add("/b", "1", "/public", "", "legacy", session="s1")
    second = tasks.add("/b", "2", "/public", "", "legacy", session="s2")
    assert tasks.find(first.exposed, "/public", "", "legacy", "s1") is first
    assert tasks.find(first.exposed, "/public", "", "legacy", "s2") is None
    assert tasks.owned("/public", "", "s2") == [second]
    # A 2026-07-28 caller has no session: on a public server its task's id (144 random bits) is what
    # lets it follow the task; the task is still bound to its virtual server and era.
    stateless = tasks.add("/b", "3", "/public", "", "modern")
    assert tasks.find(stateless.exposed, "/public", "", "modern") is stateless
    assert tasks.find(stateless.exposed, "/public", "", "legacy", "s1") is None
    assert tasks.find(stateless.exposed, "/public", "alice", "modern") is None


def test_expired_tasks_are_forgotten() -> None:
    tasks = Tasks()
    kept = tasks.add("/b", "1", "/v", "alice", "legacy", ttl_ms=60_000)
    gone = tasks.add("/b", "2", "/v", "alice", "legacy", ttl_ms=1)
    gone.expires = time.monotonic() - 1  # its ttl has passed
    tasks.sweep()
    assert tasks.owned("/v", "alice") == [kept]
    assert tasks.of_backend("/b", "2") is None
    unlimited = tasks.add("/b", "3", "/v", "alice", "legacy", ttl_ms=None)  # no ttl: remembered, but not forever
    assert 0 < unlimited.expires - time.monotonic() <= 24 * 3600


def test_a_bridged_tasks_status_keeps_what_an_earlier_answer_said() -> None:
    """A 2025-11-25 backend's tasks/get shown in the 2026-07-28 shape: renamed fields, the gateway's
    id, `working` until the gateway holds the outcome, and nothing an earlier answer said forgotten."""
    from proxy._taskcalls import _BridgedStatus
    from proxy._tasks import Bridge

    tasks = Tasks()
    ref = tasks.add("/everything", "b-1", "/v", "alice", "modern", ttl_ms=60_000, bridge=Bridge())
    bridge = ref.bridge
    assert bridge is not None
    bridge.task = {"taskId": ref.exposed, "status": "working", "createdAt": "t0", "lastUpdatedAt": "t0", "ttlMs": 60000}
    shown = _BridgedStatus(ref, bridge)({"taskId": "b-1", "status": "completed", "lastUpdatedAt": "t1",
                                         "pollInterval": 500})  # fmt: skip
    assert shown == {"taskId": ref.exposed, "status": "working", "createdAt": "t0", "lastUpdatedAt": "t1",
                     "ttlMs": 60000, "pollIntervalMs": 500}  # fmt: skip
    cancelled = _BridgedStatus(ref, bridge)({"taskId": "b-1", "status": "cancelled"})
    assert cancelled["status"] == "cancelled" and cancelled["ttlMs"] == 60000

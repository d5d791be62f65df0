"""Tasks through a virtual server, in both client eras (the id table is `_tasks.py`).

A 2025-11-25 client (SEP-1686) asks for a task with `params.task` on tools/call, then follows it with
tasks/get, tasks/result, tasks/list, tasks/cancel; the gateway relays these to a backend that runs
2025-11-25 tasks.

A 2026-07-28 client declares the tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`) in its
capabilities; the server decides which tools/call becomes a task (a flat CreateTaskResult), and the
client follows it with tasks/get (which inlines the result, the error or the questions), tasks/update
(its answers) and tasks/cancel. The gateway relays that to a backend with the extension, and bridges
it to a 2025-11-25 backend: there it creates the task with `params.task`, waits on the backend's
tasks/result in the background, keeps the outcome, and holds the questions the backend asks (an
elicitation, a sampling) until the client's tasks/update answers them.

Every task gets an id of the gateway's own (`swt-…`): a backend's ids are neither unique across
backends nor scoped to a client, since the gateway holds one session per backend.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from ._call import Call, Shaper, client_meta_of
from ._creds import ConsentRequired, CredentialError
from ._jsonrpc import INVALID_PARAMS, Message, RequestId, encode_error, encode_result
from ._mcp import BACKEND_ERROR, META_RELATED_TASK, MISSING_CLIENT_CAPABILITY, TASKS_EXTENSION
from ._relay import credentials, forward, refusal
from ._shapes import tool_result_shaper
from ._tasks import Bridge, Question, TaskRef
from ._upstream import Backend, BackendError, BackendRpcError

logger = logging.getLogger(__name__)

__all__ = ["HANDLERS_2025", "HANDLERS_2026", "task_shaper"]

_PAGE_SIZE = 1000
_TERMINAL = frozenset({"completed", "failed", "cancelled"})
# A task's fields in the 2025-11-25 shape -> their 2026-07-28 names.
_RENAMED = {"ttl": "ttlMs", "pollInterval": "pollIntervalMs"}
_TASK_FIELDS = ("status", "statusMessage", "createdAt", "lastUpdatedAt", "ttl", "pollInterval")
_question_ids = itertools.count(1)


def declared(call: Call) -> bool:
    """Whether this 2026-07-28 request's client declared the tasks extension."""
    extensions = call.client_capabilities.get("extensions") if call.era == "modern" else None
    return isinstance(extensions, dict) and TASKS_EXTENSION in extensions


async def _missing_extension(call: Call, request_id: RequestId | None) -> None:
    call.responder.answer_status = 400  # the 2026-07-28 transport's status for -32021
    message = f"Missing required client capability: the tasks extension ({TASKS_EXTENSION})"
    data: dict[str, Any] = {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
    await call.responder.json(400, encode_error(request_id, MISSING_CLIENT_CAPABILITY, message, data))


# --- tools/call -----------------------------------------------------------------------------------


async def task_shaper(
    call: Call, msg: Message, tool: str, backend: Backend, upstream: dict[str, Any], shape: Shaper
) -> Shaper | None:
    """How a tools/call's answer may be a task: the shaper for it (`upstream` gets the task parameter
    when the backend needs one), or None when the call is refused (answered here)."""
    sliced, path = call.server.slice, backend.path
    if call.era == "legacy":
        task = msg.params.get("task")
        if task is None or not sliced.tasks:
            return shape
        if not isinstance(task, dict):
            await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "params.task must be an object"))
            return None
        upstream["task"] = task
        return TaskCreated(call, path, shape)
    # A 2026-07-28 client's `params.task` (the 2025-11-25 hint) is tolerated and ignored: the server decides.
    if path in sliced.task_backends:
        return TaskCreated(call, path, shape) if declared(call) else shape  # the backend decides
    mode = sliced.task_modes.get(tool)
    if mode is None:
        return shape
    if declared(call):
        upstream["task"] = {}
        return TaskCreated(call, path, shape, bridged=True)
    if mode == "required":
        await _missing_extension(call, msg.id)
        return None
    return shape


class TaskCreated:
    """A tools/call answer that may be a task: a CreateTaskResult gets the gateway's task id (the task
    remembered as this caller's); a tool that answered at once is shaped as any tool result."""

    marker = None

    def __init__(self, call: Call, backend: str, otherwise: Shaper, bridged: bool = False) -> None:
        self.call, self.backend, self.otherwise, self.bridged = call, backend, otherwise, bridged

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        call = self.call
        tasks = call.gateway.tasks
        path, subject = call.server.config.path, call.subject
        session = call.live.id if call.live is not None else None
        if call.era == "modern" and not self.bridged:
            task_id = result.get("taskId")
            if result.get("resultType") != "task" or not isinstance(task_id, str):
                return self.otherwise(result)
            ref = tasks.add(self.backend, task_id, path, subject, "modern", session, result.get("ttlMs"))
            return {**result, "taskId": ref.exposed}
        task = result.get("task")
        if not isinstance(task, dict) or not isinstance(task.get("taskId"), str):
            return self.otherwise(result)
        if call.era == "legacy":
            ref = tasks.add(self.backend, task["taskId"], path, subject, "legacy", session, task.get("ttl"))
            return {**result, "task": {**task, "taskId": ref.exposed}}
        ref = tasks.add(self.backend, task["taskId"], path, subject, "modern", session, task.get("ttl"), Bridge())
        bridge = ref.bridge
        assert bridge is not None
        bridge.task = _modern_task(task, ref)
        bridge.runner = asyncio.get_running_loop().create_task(_follow(call, ref), name=f"task {ref.exposed}")
        return {"resultType": "task", **bridge.task}


def _modern_task(task: dict[str, Any], ref: TaskRef, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 2025-11-25 task's fields in the 2026-07-28 shape, under the gateway's id, over what was
    `known` of it (a later tasks/get need not repeat every field)."""
    shaped: dict[str, Any] = {**(known or {}), "taskId": ref.exposed}
    for key in _TASK_FIELDS:
        if key in task:
            shaped[_RENAMED.get(key, key)] = task[key]
    shaped.setdefault("lastUpdatedAt", shaped.get("createdAt"))
    shaped.setdefault("ttlMs", None)  # required; null: the backend keeps it as long as it likes
    return shaped


# --- 2025-11-25 clients ---------------------------------------------------------------------------


async def _task_request(call: Call, msg: Message) -> None:
    """tasks/get, tasks/result, tasks/cancel: to the backend running the caller's task."""
    method = msg.method or ""
    ref, backend = _find(call, msg)
    if ref is None or backend is None:
        await _unknown(call, msg)
        return
    call.observed.routed(ref.backend)
    shape: Shaper = TaskShaper(ref, tool_result_shaper(call, backend) if method == "tasks/result" else None)
    # tasks/result waits until the task ends: as long as the task may live, not the backend's timeout.
    wait_s = max(0.0, ref.expires - time.monotonic()) if method == "tasks/result" else None
    await _forward(call, msg, backend, ref, {}, shape, wait_s)


async def _list_tasks(call: Call, msg: Message) -> None:
    """The caller's tasks only (a backend's tasks/list would show every client's): each one's status
    asked of its backend; tasks a backend no longer knows are forgotten."""
    listed = []
    tasks = call.gateway.tasks
    session = call.live.id if call.live is not None else None
    for ref in tasks.owned(call.server.config.path, call.subject, session)[:_PAGE_SIZE]:
        backend = call.gateway.catalog.backends.get(ref.backend)
        if backend is None:
            continue
        try:
            status = await backend.request("tasks/get", {"taskId": ref.backend_id}, await credentials(call, backend))
        except BackendRpcError:
            tasks.forget(ref)
            continue
        except (BackendError, CredentialError, ConsentRequired):
            continue  # its backend cannot say now; listed again when it can
        status.pop("_meta", None)
        listed.append({**status, "taskId": ref.exposed})
    await call.responder.json(200, encode_result(msg.id, {"tasks": listed}))


class TaskShaper:
    """A task's answers with the gateway's task id for the backend's: in the result, its related-task
    `_meta`, an inlined result (2026-07-28) and any error message."""

    marker = None

    def __init__(self, ref: TaskRef, otherwise: Shaper | None = None, inlined: Shaper | None = None) -> None:
        self.ref, self.otherwise, self.inlined = ref, otherwise, inlined

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref
        if result.get("taskId") == ref.backend_id:
            result = {**result, "taskId": ref.exposed}
        meta = result.get("_meta")
        related = meta.get(META_RELATED_TASK) if isinstance(meta, dict) else None
        if isinstance(related, dict) and related.get("taskId") == ref.backend_id:
            result = {**result, "_meta": {**meta, META_RELATED_TASK: {**related, "taskId": ref.exposed}}}  # type: ignore[dict-item]
        inlined = result.get("result")
        if self.inlined is not None and isinstance(inlined, dict):
            result = {**result, "result": self.inlined(inlined)}
        return self.otherwise(result) if self.otherwise is not None else result

    def error(self, message: str, data: Any) -> tuple[str, Any]:
        return _exposed_in(self.ref, message), data


# --- 2026-07-28 clients (the tasks extension) ------------------------------------------------------


async def _get(call: Call, msg: Message) -> None:
    """tasks/get: the task's status, with its result, error or questions inlined."""
    ref, backend = await _extension_task(call, msg)
    if ref is None or backend is None:
        return
    bridge = ref.bridge
    if bridge is None:
        await _forward(call, msg, backend, ref, {}, TaskShaper(ref, inlined=tool_result_shaper(call, backend)))
        return
    if bridge.cancelled or bridge.outcome is not None or bridge.questions:
        await call.responder.json(200, encode_result(msg.id, call.stamp(_detail(call, backend, ref, bridge))))
        return
    await _forward(call, msg, backend, ref, {}, _BridgedStatus(ref, bridge))


def _detail(call: Call, backend: Backend, ref: TaskRef, bridge: Bridge) -> dict[str, Any]:
    """A bridged task as tasks/get shows it, from what the gateway collected."""
    detail = dict(bridge.task)
    if bridge.cancelled:
        detail["status"] = "cancelled"
    elif bridge.outcome is not None:
        result, error = bridge.outcome.get("result"), bridge.outcome.get("error")
        if isinstance(result, dict):
            # A tool that reported an error still completed (SEP-2663: "failed" is for protocol errors).
            detail["status"], detail["result"] = "completed", tool_result_shaper(call, backend)(result)
        else:
            detail["status"], detail["error"] = "failed", _error_object(ref, error)
    else:
        detail["status"] = "input_required"
        detail["inputRequests"] = {key: q.request for key, q in bridge.questions.items()}
    return detail


class _BridgedStatus:
    """A 2025-11-25 backend's tasks/get answer in the 2026-07-28 shape. A task the backend reports
    ended stays `working` here until the gateway holds its outcome (tasks/get inlines it); one waiting
    for input, until the backend's question has reached the gateway."""

    marker = None

    def __init__(self, ref: TaskRef, bridge: Bridge) -> None:
        self.ref, self.bridge = ref, bridge

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        bridge = self.bridge
        bridge.task = _modern_task(result, self.ref, bridge.task)
        shown = dict(bridge.task)
        if shown.get("status") != "cancelled":
            shown["status"] = "working"
        return shown

    def error(self, message: str, data: Any) -> tuple[str, Any]:
        return _exposed_in(self.ref, message), data


async def _update(call: Call, msg: Message) -> None:
    """tasks/update: the client's answers to the task's questions."""
    responses = msg.params.get("inputResponses")
    if not isinstance(responses, dict):
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "params.inputResponses must be an object"))
        return
    ref, backend = await _extension_task(call, msg)
    if ref is None or backend is None:
        return
    bridge = ref.bridge
    if bridge is None:
        await _forward(call, msg, backend, ref, {"inputResponses": responses}, TaskShaper(ref))
        return
    for key, response in responses.items():
        question = bridge.questions.pop(key, None)
        if question is not None and not question.answer.done():
            question.answer.set_result({"result": response})
    await call.responder.json(200, encode_result(msg.id, call.stamp({})))


async def _cancel(call: Call, msg: Message) -> None:
    """tasks/cancel: an empty acknowledgement, also for a task that has already ended."""
    ref, backend = await _extension_task(call, msg)
    if ref is None or backend is None:
        return
    bridge = ref.bridge
    if bridge is None:
        await _forward(call, msg, backend, ref, {}, TaskShaper(ref))
        return
    if not bridge.cancelled and bridge.outcome is None:
        try:
            await backend.request("tasks/cancel", {"taskId": ref.backend_id}, await credentials(call, backend))
        except (BackendError, CredentialError, ConsentRequired) as exc:
            # The backend's task may have ended meanwhile (it refuses to cancel an ended task).
            logger.info("cancelling task %s at %s: %s", ref.exposed, ref.backend, exc)
        else:
            bridge.cancelled = True
            if bridge.runner is not None:
                bridge.runner.cancel()
    await call.responder.json(200, encode_result(msg.id, call.stamp({})))


async def _extension_task(call: Call, msg: Message) -> tuple[TaskRef | None, Backend | None]:
    """The caller's task for a tasks/* request of the extension, or (None, None) once refused."""
    if not declared(call):
        await _missing_extension(call, msg.id)
        return None, None
    ref, backend = _find(call, msg)
    if ref is None or backend is None:
        await _unknown(call, msg)
        return None, None
    call.observed.routed(ref.backend)
    return ref, backend


async def _follow(call: Call, ref: TaskRef) -> None:
    """Wait on a bridged task's tasks/result at its backend, holding the questions the backend asks on
    the way, until the task ends; keep its outcome for tasks/get."""
    bridge = ref.bridge
    backend = call.gateway.catalog.backends.get(ref.backend)
    assert bridge is not None
    capabilities = dict(call.client_capabilities)
    outcome: dict[str, Any]
    try:
        if backend is None:
            raise BackendError(ref.backend, "not configured")
        headers = await credentials(call, backend)
    except BackendError as exc:
        bridge.outcome = {"error": {"code": BACKEND_ERROR, "message": str(exc)}}
        return
    except (CredentialError, ConsentRequired) as exc:
        bridge.outcome = {"error": {"code": BACKEND_ERROR, "message": f"Backend {ref.backend}: {exc}"}}
        return
    del call  # the task may outlive its request by hours: keep nothing of the request but the above
    try:
        exchange = await backend.open("tasks/result", {"taskId": ref.backend_id}, headers)
    except BackendError as exc:
        bridge.outcome = {"error": {"code": BACKEND_ERROR, "message": str(exc)}}
        return
    exchange.extend_deadline(max(0.0, ref.expires - time.monotonic()))
    try:
        while True:
            up = await exchange.next()
            if up.kind == "result":
                outcome = {"result": _without_related_task(up.result if isinstance(up.result, dict) else {})}
                break
            if up.kind == "error":
                outcome = {"error": up.error}
                break
            if up.kind != "request" or up.id is None:
                continue  # status and progress notifications: the client polls
            method = up.method or ""
            refused = refusal(capabilities, method) if method != "ping" else None
            if method == "ping" or refused is not None:
                await exchange.answer(up.id, {"result": {}} if refused is None else {"error": refused})
                continue
            question = Question({"method": method, "params": _without_related_task(up.params)},
                                asyncio.get_running_loop().create_future())  # fmt: skip
            bridge.questions[f"input-{next(_question_ids)}"] = question
            await exchange.answer(up.id, await question.answer)
    except BackendError as exc:
        outcome = {"error": {"code": BACKEND_ERROR, "message": str(exc)}}
    finally:
        if not exchange.done:
            await exchange.close()
    bridge.outcome = outcome


def _exposed_in(ref: TaskRef, message: str) -> str:
    """A backend's message with the gateway's task id for the backend's."""
    return message.replace(ref.backend_id, ref.exposed)


def _error_object(ref: TaskRef, error: Any) -> dict[str, Any]:
    """A failed task's error as tasks/get inlines it (code, message, data), naming the gateway's id."""
    error = error if isinstance(error, dict) else {}
    shown: dict[str, Any] = {"code": error.get("code", BACKEND_ERROR),
                             "message": _exposed_in(ref, str(error.get("message", "")))}  # fmt: skip
    if "data" in error:
        shown["data"] = error["data"]
    return shown


def _without_related_task(params: dict[str, Any]) -> dict[str, Any]:
    """The 2025-11-25 related-task `_meta` key, which the 2026-07-28 shape has no use for, left out."""
    meta = params.get("_meta")
    if not isinstance(meta, dict) or META_RELATED_TASK not in meta:
        return params
    kept = {key: value for key, value in meta.items() if key != META_RELATED_TASK}
    shown = {key: value for key, value in params.items() if key != "_meta"}
    if kept:
        shown["_meta"] = kept
    return shown


# --- shared ---------------------------------------------------------------------------------------


def _find(call: Call, msg: Message) -> tuple[TaskRef | None, Backend | None]:
    session = call.live.id if call.live is not None else None
    ref = call.gateway.tasks.find(msg.params.get("taskId"), call.server.config.path, call.subject, call.era, session)
    backend = call.gateway.catalog.backends.get(ref.backend) if ref is not None else None
    return (ref, backend) if backend is not None else (None, None)


async def _unknown(call: Call, msg: Message) -> None:
    task_id = msg.params.get("taskId")
    await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, f"Unknown task: {task_id!r}"))


async def _forward(
    call: Call,
    msg: Message,
    backend: Backend,
    ref: TaskRef,
    params: dict[str, Any],
    shape: Shaper,
    wait_s: float | None = None,
) -> None:
    """One tasks/* request to the task's backend, under the backend's task id."""
    upstream: dict[str, Any] = {"taskId": ref.backend_id, **params}
    await forward(call, msg.id, backend, msg.method or "", upstream, client_meta_of(msg.params), ref.exposed, shape,
                  wait_s)  # fmt: skip


HANDLERS_2025 = {"tasks/get": _task_request, "tasks/result": _task_request, "tasks/cancel": _task_request,
                 "tasks/list": _list_tasks}  # fmt: skip
HANDLERS_2026 = {"tasks/get": _get, "tasks/update": _update, "tasks/cancel": _cancel}

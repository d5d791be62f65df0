"""MCP method handlers of a virtual server, for both client eras.

Each handler answers one JSON-RPC request through the `Responder` of its HTTP exchange. The only
one on the hot path is `call_tool`: look the exposed name up in the slice, forward to the backend
with the original name, and pass the answer through — switching to SSE only when the backend sends
something before its answer (progress, a request for the client).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from proto import pb

from ._access import View
from ._creds import ConsentRequired, CredentialError
from ._gateway import Gateway, Listener, Parked, VirtualServer
from ._identity import Identity
from ._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    Message,
    RequestId,
    encode_error,
    encode_notification,
    encode_result,
)
from ._mcp import (
    ALL_VERSIONS,
    AUTHORIZATION_REQUIRED,
    BACKEND_ERROR,
    CREDENTIALS_REQUIRED,
    HEADER_MISMATCH,
    LOG_LEVELS,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    META_RELATED_TASK,
    META_SERVER_INFO,
    META_SUBSCRIPTION_ID,
    MISSING_CLIENT_CAPABILITY,
    REQUEST_TIMEOUT,
    Era,
    HeaderMismatch,
    check_param_headers,
    encode_header_value,
    header_text,
    log_passes,
    negotiate_legacy,
)
from ._metrics import outcome_of
from ._record import (
    BACKEND,
    BACKEND_TOOL,
    HOP_END,
    HOP_ERROR,
    HOP_REQUEST,
    HOP_RESPONSE,
    SESSION,
    SLICED,
    TOOL,
    VERSION,
    Hop,
    Trace,
    add_child,
    add_hop,
    add_upstream_hop,
    new_hop,
)  # fmt: skip
from ._resources import ResourceRoute, ResourceRouter, expose_blocks
from ._responder import Responder
from ._sessions import LiveSession, Relayed, SessionState, new_session_id
from ._tasks import TaskRef
from ._upstream import (
    GATEWAY_CLIENT_CAPABILITIES,
    Backend,
    BackendError,
    BackendRpcError,
    BackendTimeout,
    BackendUnavailable,
    Exchange,
    Headers,
)

logger = logging.getLogger(__name__)

__all__ = ["Call", "handle_request", "initialize"]

_RESERVED_META = "io.modelcontextprotocol/"
_PARK_PREFIX = "sw1."
_KEEPALIVE_S = 15.0
# Which client capability a server-to-client request needs.
_NEEDS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
_progress_tokens = itertools.count(1)
# Results whose 2026-07-28 schema requires caching hints (ttlMs, cacheScope), besides the lists.
_CACHED = ("resources/read ", "prompts/get ")


class Shaper(Protocol):
    """Rewrites a backend's result for the client (its resource URIs and task ids to the slice's).
    `marker`: bytes every result needing it contains; a result arriving without them is passed as is."""

    @property
    def marker(self) -> bytes | None: ...

    def __call__(self, result: dict[str, Any], /) -> dict[str, Any]: ...


@dataclass(slots=True)
class Call:
    """One client request being answered: who asks, in which era, on which virtual server."""

    gateway: Gateway
    server: VirtualServer
    era: Era
    protocol_version: str
    responder: Responder
    session: SessionState | None = None
    live: LiveSession | None = None
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # Who is calling (None on a public virtual server), and the request's own downstream headers.
    identity: Identity | None = None
    overrides: dict[str, Headers] | None = None
    base_url: str = ""
    # The HTTP request's headers (lower-case names), for the 2026-07-28 Mcp-Param-* checks.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.identity.subject if self.identity is not None else ""

    def view(self) -> View:
        server = self.server
        return server.policy.view(self.identity, server.slice.tools, server.slice.routes)

    def stamp(self, result: dict[str, Any], cached: bool = False) -> dict[str, Any]:
        """Modern results carry `resultType` and the server's identity; `cached` ones (lists, reads) the
        caching hints the 2026-07-28 schema requires, when the backend gave none."""
        if self.era == "modern":
            result.setdefault("resultType", "complete")
            if cached:
                result.setdefault("ttlMs", self.gateway.config.tools_list_ttl_ms)
                result.setdefault("cacheScope", "private")
            meta = result.get("_meta")
            meta = dict(meta) if isinstance(meta, dict) else {}
            meta[META_SERVER_INFO] = self.server.server_info
            result["_meta"] = meta
        return result


async def handle_request(call: Call, msg: Message) -> None:
    method = msg.method
    handler = _MODERN.get(method or "") if call.era == "modern" else _LEGACY.get(method or "")
    if handler is not None and method in call.server.unserved:
        handler = None  # a capability the virtual server does not advertise
    if handler is None:
        status = 404 if call.era == "modern" else 200
        await call.responder.json(status, encode_error(msg.id, METHOD_NOT_FOUND, f"Method not found: {method}"))
        return
    await handler(call, msg)


# --- handshake and discovery ----------------------------------------------------------------------


def _consent_error(call: Call, msg: Message) -> bytes | None:
    """The handshake's answer when the caller must first authorize OAuth backends it can use."""
    routes = call.server.slice.routes
    paths = {routes[name].backend for name in call.view().names if name in routes}
    backends = [b for b in call.gateway.config.backends if b.path in paths]
    urls = call.gateway.creds.consents_needed(backends, call.identity, call.base_url)
    if not urls:
        return None
    return _consent(msg.id, ConsentRequired(urls))


def _consent(request_id: RequestId | None, exc: ConsentRequired) -> bytes:
    return encode_error(
        request_id, AUTHORIZATION_REQUIRED, "Authorization required: connect your account first", exc.data
    )


async def initialize(call: Call, msg: Message) -> None:
    """Legacy handshake: negotiate a version and open a gateway session."""
    gateway, server, responder = call.gateway, call.server, call.responder
    refusal = _consent_error(call, msg)
    if refusal is not None:
        await responder.json(200, refusal)
        return
    params = msg.params
    version = negotiate_legacy(params.get("protocolVersion"))
    capabilities = params.get("capabilities")
    client_info = params.get("clientInfo")
    state = SessionState(
        id=new_session_id(),
        virtual_server=server.config.path,
        protocol_version=version,
        client_info=client_info if isinstance(client_info, dict) else {},
        client_capabilities=capabilities if isinstance(capabilities, dict) else {},
        subject=call.subject,
    )
    await gateway.sessions.put(state)
    gateway.live[state.id] = LiveSession(state.id, server.config.path)
    if responder.trace is not None:
        responder.trace[SESSION] = state.id
        responder.trace[VERSION] = version
    result: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": server.capabilities("legacy"),
        "serverInfo": server.server_info,
    }
    if server.config.description:
        result["instructions"] = server.config.description
    responder.extra_headers.append((b"mcp-session-id", state.id.encode()))
    await responder.json(200, encode_result(msg.id, result))


async def _discover(call: Call, msg: Message) -> None:
    refusal = _consent_error(call, msg)
    if refusal is not None:
        await call.responder.json(200, refusal)
        return
    result: dict[str, Any] = {
        "supportedVersions": list(reversed(ALL_VERSIONS)),
        "capabilities": call.server.capabilities("modern"),
        "ttlMs": call.gateway.config.tools_list_ttl_ms,
        "cacheScope": "private",
    }
    if call.server.config.description:
        result["instructions"] = call.server.config.description
    await call.responder.json(200, encode_result(msg.id, call.stamp(result)))


async def _ping(call: Call, msg: Message) -> None:
    await call.responder.json(200, encode_result(msg.id, {}))


async def _set_level(call: Call, msg: Message) -> None:
    """A legacy client's log level: backends' messages below it are not relayed to this session."""
    level = msg.params.get("level")
    if level not in LOG_LEVELS:
        await call.responder.json(
            200, encode_error(msg.id, INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}; found {level!r}")
        )
        return
    if call.live is not None:
        call.live.log_level = level
    await call.responder.json(200, encode_result(msg.id, {}))


# --- tools/list -----------------------------------------------------------------------------------


_PAGE_SIZE = 1000


async def _list_tools(call: Call, msg: Message) -> None:
    view = call.view()
    sliced = call.server.slice
    await _list(call, msg, "tools", lambda cursor: sliced.encoded_page(cursor, _PAGE_SIZE, view.tools, view.names))


async def _list(call: Call, msg: Message, key: str, paginate: Callable[[str | None], tuple[Any, str | None]]) -> None:
    """Answer a `*/list` request with the page its cursor names (`paginate` raises ValueError for a bad
    cursor). For 2026-07-28 clients the list is this virtual server's view, not the backends': its
    caching hints say private, never shared across users."""
    cursor = msg.params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "cursor must be a string"))
        return
    try:
        page, next_cursor = paginate(cursor)
    except ValueError as exc:
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, str(exc)))
        return
    result: dict[str, Any] = {key: page}
    if next_cursor is not None:
        result["nextCursor"] = next_cursor
    await call.responder.json(200, encode_result(msg.id, call.stamp(result, cached=True)))


# --- prompts, resources, completion -------------------------------------------------------------


async def _page(call: Call, msg: Message, key: str, items: tuple[dict[str, Any], ...]) -> None:
    """One page of a list the caller may see (`prompts`, `resources`, `resourceTemplates`)."""
    await _list(call, msg, key, lambda cursor: call.server.slice.page(cursor, _PAGE_SIZE, items))


async def _list_prompts(call: Call, msg: Message) -> None:
    policy, identity = call.server.policy, call.identity
    prompts = call.server.slice.prompts
    if policy.prompt_scopes:
        prompts = tuple(p for p in prompts if policy.may_prompt(identity, p["name"]))
    await _page(call, msg, "prompts", prompts)


def _readable(call: Call, uri: str) -> ResourceRoute | None:
    """The route of an exposed URI this caller may read, or None (outside the slice, or not for it)."""
    route = call.server.slice.router.inbound(uri)
    if route is None or not call.server.policy.may_read(call.identity, route.mapping):
        return None
    return route


async def _list_resources(call: Call, msg: Message) -> None:
    resources = call.server.slice.resources
    if call.server.policy.resource_scopes:
        resources = tuple(r for r in resources if _readable(call, r["uri"]) is not None)
    await _page(call, msg, "resources", resources)


async def _list_templates(call: Call, msg: Message) -> None:
    sliced, policy = call.server.slice, call.server.policy
    templates = sliced.templates
    if policy.resource_scopes:
        allowed = {rule.exposed_form for rule in sliced.router.rules if policy.may_read(call.identity, rule.mapping)}
        templates = tuple(t for t in templates if any(t["uriTemplate"].startswith(form) for form in allowed))
    await _page(call, msg, "resourceTemplates", templates)


async def _get_prompt(call: Call, msg: Message) -> None:
    params = msg.params
    name = params.get("name")
    if not isinstance(name, str):
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "prompts/get needs params.name (a string)"))
        return
    route = call.server.slice.prompt_routes.get(name)
    if route is not None and not call.server.policy.may_prompt(call.identity, name):
        route = None
    if route is None:
        # Outside the slice: never forwarded.
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, f"Unknown prompt: {name}"))
        return
    state = params.get("requestState")
    client_meta = _client_meta(params)
    if call.era == "modern" and isinstance(state, str) and state.startswith(_PARK_PREFIX):
        await _resume(call, msg, f"prompts/get {name}", state, client_meta.get("progressToken"))
        return
    upstream: dict[str, Any] = {"name": route.tool_name}
    await _routed(call, msg, route.backend, "prompts/get", upstream, name, name, _prompt_shaper(call, route.backend))


async def _read_resource(call: Call, msg: Message) -> None:
    params = msg.params
    uri = params.get("uri")
    if not isinstance(uri, str):
        refusal = encode_error(msg.id, INVALID_PARAMS, "resources/read needs params.uri (a string)")
        await call.responder.json(200, refusal)
        return
    route = _readable(call, uri)
    if route is None:
        # Outside the slice: it does not exist for this client (the 2026-07-28 spec's error, SEP-2164).
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "Resource not found", {"uri": uri}))
        return
    state = params.get("requestState")
    if call.era == "modern" and isinstance(state, str) and state.startswith(_PARK_PREFIX):
        await _resume(call, msg, f"resources/read {uri}", state, _client_meta(params).get("progressToken"))
        return
    mapping = call.server.config.resource_mappings[route.mapping]
    shape = _contents_shaper(call, route)
    await _routed(call, msg, route.backend, "resources/read", {"uri": route.uri}, uri, mapping.exposed_form, shape)


async def _complete(call: Call, msg: Message) -> None:
    """`completion/complete`, routed to the backend owning the prompt or resource template it names."""
    params = msg.params
    ref = params.get("ref")
    if not isinstance(ref, dict) or not isinstance(params.get("argument"), dict):
        await call.responder.json(
            200, encode_error(msg.id, INVALID_PARAMS, "completion/complete needs params.ref and params.argument")
        )
        return
    sliced = call.server.slice
    backend_ref: dict[str, Any] | None = None
    backend = target = ""
    if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
        route = sliced.prompt_routes.get(ref["name"])
        if route is not None and call.server.policy.may_prompt(call.identity, ref["name"]):
            backend, target, backend_ref = route.backend, ref["name"], {**ref, "name": route.tool_name}
    elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
        uri = ref["uri"]
        found = sliced.router.inbound_template(uri)
        exact = _readable(call, uri) if found is None else None
        if found is not None:
            backend, target, backend_ref = found[0], uri, {**ref, "uri": found[1]}
        elif exact is not None:
            backend, target, backend_ref = exact.backend, uri, {**ref, "uri": exact.uri}
    if backend_ref is None:
        await call.responder.json(
            200, encode_error(msg.id, INVALID_PARAMS, f"Unknown reference for completion: {orjson.dumps(ref).decode()}")
        )
        return
    upstream = {key: value for key, value in params.items() if key not in ("_meta", "ref")}
    upstream["ref"] = backend_ref
    await _routed(call, msg, backend, "completion/complete", upstream, target, target)


async def _routed(
    call: Call,
    msg: Message,
    path: str,
    method: str,
    upstream: dict[str, Any],
    target: str,
    label: str,
    shape: Shaper | None = None,
) -> None:
    """Forward a prompt, resource or completion request, with the client's arguments and `_meta`.
    `label`: what /metrics names it by (bounded by the config: a mapping's exposed form, not a URI)."""
    params = msg.params
    trace = call.responder.trace
    if trace is not None:
        trace[TOOL], trace[SLICED], trace[BACKEND], trace[BACKEND_TOOL] = target, time.time_ns(), path, _label(
            method, upstream)  # fmt: skip
    call.responder.tool, call.responder.backend = label, path
    backend = call.gateway.catalog.backends.get(path)
    if backend is None:
        await call.responder.json(
            200, encode_error(msg.id, BACKEND_ERROR, f"Backend {path}: not configured", {"backend": path})
        )
        return
    for key in ("arguments", "inputResponses", "requestState") if method != "completion/complete" else ():
        if key in params and (key == "arguments" or call.era == "modern"):
            upstream[key] = params[key]
    client_meta = _client_meta(params)
    client_token = client_meta.get("progressToken")
    _pass_meta(call, upstream, client_meta, client_token)
    await _forward(call, msg.id, backend, method, upstream, client_token, target, shape)


def _client_meta(params: dict[str, Any]) -> dict[str, Any]:
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}


async def _subscribe(call: Call, msg: Message) -> None:
    """A legacy client's resources/subscribe: updates arrive on its session's GET stream."""
    uri = msg.params.get("uri")
    route = _readable(call, uri) if isinstance(uri, str) else None
    live = call.live
    if route is None or live is None:
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "Resource not found", {"uri": uri}))
        return
    message = encode_notification("notifications/resources/updated", {"uri": route.exposed})

    def deliver() -> None:
        if live.stream is not None:
            live.stream.put_nowait(message)

    error = await _watch(call, route, live.id, deliver)
    if error is not None:
        await call.responder.json(200, encode_error(msg.id, error[0], error[1], {"uri": uri}))
        return
    await call.responder.json(200, encode_result(msg.id, {}))


async def _watch(
    call: Call, route: ResourceRoute, subscriber: Any, deliver: Callable[[], None]
) -> tuple[int, str] | None:
    """Register a subscriber; subscribe at the backend when it is the URI's first. The error, or None."""
    gateway = call.gateway
    if not gateway.subscriptions.add(route.backend, route.uri, subscriber, deliver):
        return None
    backend = gateway.catalog.backends.get(route.backend)
    try:
        if backend is None:
            raise BackendUnavailable(route.backend, "not configured")
        await backend.subscribe(route.uri, await _credentials(call, backend))
    except BackendRpcError as exc:
        gateway.subscriptions.remove(route.backend, route.uri, subscriber)
        return int(exc.code) if isinstance(exc.code, int) else BACKEND_ERROR, str(exc)
    except (BackendError, CredentialError, ConsentRequired) as exc:
        gateway.subscriptions.remove(route.backend, route.uri, subscriber)
        return BACKEND_ERROR, str(exc)
    return None


async def _unsubscribe(call: Call, msg: Message) -> None:
    uri = msg.params.get("uri")
    route = _readable(call, uri) if isinstance(uri, str) else None
    if route is None or call.live is None:
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "Resource not found", {"uri": uri}))
        return
    if call.gateway.subscriptions.remove(route.backend, route.uri, call.live.id):
        backend = call.gateway.catalog.backends.get(route.backend)
        if backend is not None:
            try:
                await backend.unsubscribe(route.uri)
            except BackendError as exc:
                logger.debug("unsubscribing %s from %s failed: %s", route.backend, route.uri, exc.detail)
    await call.responder.json(200, encode_result(msg.id, {}))


# --- tasks (2025-11-25) ---------------------------------------------------------------------------


class _TaskCreated:
    """A task-augmented tools/call's answer: a CreateTaskResult gets the gateway's task id (the task
    remembered as this caller's); a tool that answered at once is shaped as any tool result."""

    marker = None

    def __init__(self, call: Call, backend: str, otherwise: Shaper) -> None:
        self.call, self.backend, self.otherwise = call, backend, otherwise

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        task = result.get("task")
        if not isinstance(task, dict) or not isinstance(task.get("taskId"), str):
            return self.otherwise(result)
        call = self.call
        session = call.live.id if call.live is not None else None
        ref = call.gateway.tasks.add(
            self.backend, task["taskId"], call.server.config.path, call.subject, session, task.get("ttl")
        )
        return {**result, "task": {**task, "taskId": ref.exposed}}


class _TaskShaper:
    """A task's answers (tasks/get, tasks/cancel, tasks/result) with the gateway's task id for the
    backend's, in the result, its related-task `_meta` and any error message."""

    marker = None

    def __init__(self, ref: TaskRef, otherwise: Shaper | None = None) -> None:
        self.ref, self.otherwise = ref, otherwise

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref
        if result.get("taskId") == ref.backend_id:
            result = {**result, "taskId": ref.exposed}
        meta = result.get("_meta")
        related = meta.get(META_RELATED_TASK) if isinstance(meta, dict) else None
        if isinstance(related, dict) and related.get("taskId") == ref.backend_id:
            result = {**result, "_meta": {**meta, META_RELATED_TASK: {**related, "taskId": ref.exposed}}}  # type: ignore[dict-item]
        return self.otherwise(result) if self.otherwise is not None else result

    def error(self, message: str, data: Any) -> tuple[str, Any]:
        return message.replace(self.ref.backend_id, self.ref.exposed), data


async def _task_request(call: Call, msg: Message) -> None:
    """tasks/get, tasks/result, tasks/cancel: to the backend running the caller's task."""
    method = msg.method or ""
    session = call.live.id if call.live is not None else None
    ref = call.gateway.tasks.find(msg.params.get("taskId"), call.server.config.path, call.subject, session)
    backend = call.gateway.catalog.backends.get(ref.backend) if ref is not None else None
    if ref is None or backend is None:
        await call.responder.json(
            200, encode_error(msg.id, INVALID_PARAMS, f"Unknown task: {msg.params.get('taskId')!r}")
        )
        return
    call.responder.backend = ref.backend
    shape: Shaper = _TaskShaper(ref, _tool_result_shaper(call, backend) if method == "tasks/result" else None)
    client_meta = _client_meta(msg.params)
    client_token = client_meta.get("progressToken")
    upstream: dict[str, Any] = {"taskId": ref.backend_id}
    _pass_meta(call, upstream, client_meta, client_token)
    # tasks/result waits until the task ends: as long as the task may live, not the backend's timeout.
    wait_s = max(0.0, ref.expires - time.monotonic()) if method == "tasks/result" else None
    await _forward(call, msg.id, backend, method, upstream, client_token, ref.exposed, shape, wait_s)


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
            status = await backend.request("tasks/get", {"taskId": ref.backend_id}, await _credentials(call, backend))
        except BackendRpcError:
            tasks.forget(ref)
            continue
        except (BackendError, CredentialError, ConsentRequired):
            continue  # its backend cannot say now; listed again when it can
        status.pop("_meta", None)
        listed.append({**status, "taskId": ref.exposed})
    await call.responder.json(200, encode_result(msg.id, {"tasks": listed}))


# --- exposed URIs in results -----------------------------------------------------------------------


def _tool_result_shaper(call: Call, backend: Backend) -> Shaper:
    """Tool results name resources by the backend's URIs; the client knows the slice's (and a link to
    a resource outside the slice is left out)."""
    return call.server.slice.links(backend.path)


def _prompt_shaper(call: Call, backend: str) -> _PromptShaper:
    return _PromptShaper(call.server.slice.router, backend)


class _PromptShaper:
    """A prompts/get answer with its messages' resource URIs as the client knows them."""

    marker = b'"resource'

    def __init__(self, router: ResourceRouter, backend: str) -> None:
        self.router, self.backend = router, backend

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        return _each(result, "messages", self._message)

    def _message(self, message: Any) -> Any:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, dict):
            return message
        blocks = expose_blocks(self.router, self.backend, [content])
        return {**message, "content": blocks[0]} if blocks else None  # None: a link outside the slice


def _each(result: dict[str, Any], key: str, shape: Callable[[Any], Any]) -> dict[str, Any]:
    """`result` with each item of its `key` list shaped (an item shaped to None is left out)."""
    items = result.get(key)
    if not isinstance(items, list):
        return result
    return {**result, key: [shaped for item in items if (shaped := shape(item)) is not None]}


def _contents_shaper(call: Call, route: ResourceRoute) -> _ContentsShaper:
    return _ContentsShaper(call.server.slice.router, route)


class _ContentsShaper:
    """A resources/read answer as the client knows it: its contents' URIs exposed, and the backend's
    URI kept out of an error (a backend's "Resource <uri> not found" names its own)."""

    marker = None

    def __init__(self, router: ResourceRouter, route: ResourceRoute) -> None:
        self.router, self.route = router, route

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        return _each(result, "contents", self._item)

    def _item(self, item: Any) -> Any:
        route = self.route
        uri = item.get("uri") if isinstance(item, dict) else None
        if not isinstance(uri, str):
            return item
        exposed = route.exposed if uri == route.uri else self.router.outbound(route.backend, uri)
        return {**item, "uri": exposed if exposed is not None else route.exposed}

    def error(self, message: str, data: Any) -> tuple[str, Any]:
        route = self.route
        message = message.replace(route.uri, route.exposed)
        if isinstance(data, dict) and data.get("uri") == route.uri:
            data = {**data, "uri": route.exposed}
        return message, data


# --- tools/call -----------------------------------------------------------------------------------


async def _call_tool(call: Call, msg: Message) -> None:
    params = msg.params
    name = params.get("name")
    if not isinstance(name, str):
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "tools/call needs params.name (a string)"))
        return
    arguments = params.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "params.arguments must be an object"))
        return
    client_meta = params.get("_meta")
    client_meta = client_meta if isinstance(client_meta, dict) else {}
    client_token = client_meta.get("progressToken")

    state = params.get("requestState")
    if call.era == "modern" and isinstance(state, str) and state.startswith(_PARK_PREFIX):
        await _resume(call, msg, f"tools/call {name}", state, client_token)
        return

    trace = call.responder.trace
    if trace is not None:
        trace[TOOL] = name
    route = call.server.slice.routes.get(name)
    if route is not None and not call.server.policy.open and name not in call.view().names:
        route = None  # a tool this caller may not use does not exist for it
    if trace is not None:
        trace[SLICED] = time.time_ns()
    if route is None:
        # Outside the slice: it does not exist for this client, and no backend hears of it.
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, f"Unknown tool: {name}"))
        return
    call.responder.tool, call.responder.backend = name, route.backend
    if trace is not None:
        trace[BACKEND], trace[BACKEND_TOOL] = route.backend, route.tool_name
    backend = call.gateway.catalog.backends.get(route.backend)
    if backend is None:
        await call.responder.json(
            200,
            encode_error(msg.id, BACKEND_ERROR, f"Backend {route.backend}: not configured", {"backend": route.backend}),
        )
        return
    upstream: dict[str, Any] = {"name": route.tool_name, "arguments": arguments if arguments is not None else {}}
    _pass_meta(call, upstream, client_meta, client_token)
    if call.era == "modern":
        # A modern backend's own MRTR round trip passes through untouched.
        for key in ("inputResponses", "requestState"):
            if key in params:
                upstream[key] = params[key]
    expected = call.server.slice.param_headers.get(name)
    param_headers = None
    if expected is not None:
        upstream_args = upstream["arguments"]
        if call.era == "modern":
            try:
                check_param_headers(expected, upstream_args, call.headers)
            except HeaderMismatch as exc:
                await call.responder.json(400, encode_error(msg.id, HEADER_MISMATCH, str(exc)))
                return
        param_headers = [
            (f"Mcp-Param-{header}", encode_header_value(header_text(upstream_args[argument])))
            for header, argument in expected
            if upstream_args.get(argument) is not None
        ]
    shape = _tool_result_shaper(call, backend)
    task = params.get("task")
    if task is not None and call.era == "legacy" and call.server.slice.tasks:
        if not isinstance(task, dict):
            await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "params.task must be an object"))
            return
        upstream["task"] = task
        shape = _TaskCreated(call, backend.path, shape)
    await _forward(call, msg.id, backend, "tools/call", upstream, client_token, name, shape, None, param_headers)


def _pass_meta(call: Call, upstream: dict[str, Any], client_meta: dict[str, Any], client_token: Any) -> None:
    """The client's `_meta` for the backend: its own keys (not the protocol's reserved ones, which the
    gateway sets for its own session), its log level, and a progress token of the gateway's."""
    meta = {k: v for k, v in client_meta.items() if not k.startswith(_RESERVED_META) and k != "progressToken"}
    if META_LOG_LEVEL in client_meta:
        meta[META_LOG_LEVEL] = client_meta[META_LOG_LEVEL]
    if client_token is not None:
        meta["progressToken"] = f"sw-{next(_progress_tokens)}"
    if meta:
        upstream["_meta"] = meta


async def _credentials(call: Call, backend: Backend) -> Headers | None:
    """This caller's own headers for the backend: its credential, then its `x-mcp-headers`."""
    config = backend.config
    if config.auth.mode == "none" and call.overrides is None:
        return None
    headers = await call.gateway.creds.for_call(config, call.identity, call.base_url)
    own = call.overrides.get(backend.path) if call.overrides is not None else None
    if own:
        names = {name.lower() for name, _ in own}
        headers = [h for h in headers or () if h[0].lower() not in names] + own
    return headers


async def _forward(
    call: Call,
    client_id: RequestId | None,
    backend: Backend,
    method: str,
    upstream: dict[str, Any],
    client_token: Any,
    target: str,
    shape: Shaper | None = None,
    wait_s: float | None = None,
    param_headers: Headers | None = None,
) -> None:
    """Forward one request to its backend with the caller's credentials, and relay the answer.
    `target`: what the request is about, as the client named it (a tool, a prompt, a URI); `wait_s`:
    how long the answer may take, when longer than the backend's timeout; `param_headers`: the
    tool's `Mcp-Param-*` headers (SEP-2243), for the backend's HTTP layer."""
    try:
        headers = await _credentials(call, backend)
        if param_headers:
            headers = [*(headers or ()), *param_headers]
    except CredentialError as exc:
        await call.responder.json(
            200, encode_error(client_id, CREDENTIALS_REQUIRED, str(exc), {"backend": exc.backend})
        )
        return
    except ConsentRequired as exc:
        await call.responder.json(200, _consent(client_id, exc))
        return
    trace = call.responder.trace
    metrics = call.gateway.metrics
    envelope = _envelope(call)
    while True:
        hop = None
        if trace is not None:
            hop = _upstream_hop(trace, method, backend.path, _label(method, upstream), upstream)
        started = time.perf_counter()
        try:
            exchange = await backend.open(method, upstream, headers, envelope)
        except BackendError as exc:
            if hop is not None:
                hop[HOP_REQUEST] = {"jsonrpc": "2.0", "method": method, "params": upstream}
                hop[HOP_END], hop[HOP_ERROR] = time.time_ns(), (BACKEND_ERROR, str(exc))
            if metrics is not None:
                metrics.upstream(backend.path, method, "error", time.perf_counter() - started)
            await call.responder.json(200, _backend_error(client_id, exc))
            return
        if hop is not None:
            hop[HOP_REQUEST] = exchange.sent
        if wait_s is not None:
            exchange.extend_deadline(wait_s)
        outcome = await _pump(call, client_id, exchange, client_token, f"{method} {target}", hop, shape)
        if metrics is not None:
            tool_error = call.responder.tool_error
            answered = outcome_of(200, outcome, tool_error) if isinstance(outcome, bytes) else "ok"  # input required
            metrics.upstream(backend.path, method, answered, time.perf_counter() - started)
        if isinstance(outcome, bytes):
            live = call.live
            if live is not None and client_id in live.cancelled:
                live.cancelled.discard(client_id)
                await call.responder.withhold()
                return
            await call.responder.json(call.responder.answer_status, outcome)
            return
        # A modern backend asked for input and this client is legacy: ask the client, then retry.
        responses = await _gather_inputs(call, exchange, outcome)
        if responses is None:
            await call.responder.json(
                200, encode_error(client_id, BACKEND_ERROR, f"Backend {backend.path}: input request was not answered")
            )
            return
        upstream = {**upstream, "inputResponses": responses}
        if "requestState" in outcome:
            upstream["requestState"] = outcome["requestState"]
        else:
            upstream.pop("requestState", None)


def _envelope(call: Call) -> dict[str, Any]:
    """What a 2026-07-28 backend is told about the client in `_meta`: the capabilities the client
    declared that the gateway can relay (so the backend never asks for input the client cannot give),
    and for a legacy client its log level (a modern backend logs only when asked; a legacy server logs
    at its discretion, so info unless the client set a level)."""
    level = None
    if call.era == "legacy":
        level = (call.live.log_level if call.live is not None else None) or "info"
    key = (level, *call.client_capabilities)
    envelope = _envelopes.get(key)
    if envelope is None:
        if len(_envelopes) > 256:
            _envelopes.clear()
        capabilities = {k: v for k, v in GATEWAY_CLIENT_CAPABILITIES.items() if k in call.client_capabilities}
        envelope = _envelopes[key] = {META_CLIENT_CAPABILITIES: capabilities}
        if level is not None:
            envelope[META_LOG_LEVEL] = level
    return envelope


# Envelopes by (log level, declared capability names): clients send the same few over and over.
_envelopes: dict[tuple[Any, ...], dict[str, Any]] = {}


def _label(method: str, upstream: dict[str, Any]) -> str:
    """What an upstream request is about, for its span: the backend's tool or prompt name, or the URI."""
    value = upstream.get("uri") if method == "resources/read" else upstream.get("name")
    if method == "completion/complete":
        ref = upstream.get("ref")
        value = (ref.get("name") or ref.get("uri")) if isinstance(ref, dict) else None
    return str(value) if value is not None else ""


def _upstream_hop(trace: Trace, method: str, backend: str, target: str, upstream: dict[str, Any]) -> Hop:
    """Record the upstream call, and pass our trace context to the backend in `_meta.traceparent`."""
    hop, context = add_upstream_hop(trace, method, backend, target, time.time_ns())
    meta = upstream.get("_meta")
    upstream["_meta"] = {**meta, "traceparent": context} if meta else {"traceparent": context}
    return hop  # its request: the bytes sent, once the exchange is open


def _finish_hop(hop: Hop | None, up: Message | None, error: tuple[int, str] | None = None) -> None:
    if hop is None:
        return
    hop[HOP_END] = time.time_ns()
    if up is not None:
        hop[HOP_RESPONSE] = up.data if up.data is not None else up.raw
        if up.kind == "error":
            hop[HOP_ERROR] = (int(up.error.get("code", BACKEND_ERROR)), str(up.error.get("message", "")))
    if error is not None:
        hop[HOP_ERROR] = error


def _child_hop(trace: Trace | None, hop: Hop | None, up: Message, direction: int) -> None:
    if trace is None or hop is None:
        return
    child = new_hop(up.method or "message", pb.SPAN_KIND_INTERNAL, direction, up.method or "", time.time_ns())
    child[HOP_REQUEST] = up.raw
    add_child(trace, hop, child)


async def _pump(
    call: Call,
    client_id: RequestId | None,
    exchange: Exchange,
    client_token: Any,
    target: str,
    hop: Hop | None = None,
    shape: Shaper | None = None,
) -> bytes | dict[str, Any]:
    """Relay what the backend sends about one request until its answer; return the encoded answer,
    or a modern backend's InputRequiredResult when a legacy client must be asked first."""
    parked = False
    live = call.live
    if live is not None and client_id is not None:
        live.in_flight[client_id] = exchange
    call.responder.watch(exchange.close)
    try:
        while True:
            try:
                up = await exchange.next()
            except BackendError as exc:
                _finish_hop(
                    hop, None, (REQUEST_TIMEOUT if isinstance(exc, BackendTimeout) else BACKEND_ERROR, str(exc))
                )
                return _backend_error(client_id, exc)
            kind = up.kind
            if kind in ("result", "error"):
                _finish_hop(hop, up)
            else:
                _child_hop(call.responder.trace, hop, up, pb.DIRECTION_BACKEND_TO_GATEWAY)
            if kind == "result":
                result = up.result if isinstance(up.result, dict) else {}
                call.responder.tool_error = result.get("isError") is True
                if call.era == "legacy":
                    if result.get("resultType") == "input_required":
                        return result
                    if "resultType" in result or "_meta" in result or "ttlMs" in result:
                        result = _legacy_view(result)
                if shape is not None:
                    data, marker = up.data, shape.marker
                    if marker is None or data is None or data.find(marker) != -1:  # a C scan, not a walk
                        result = shape(result)
                return encode_result(client_id, call.stamp(result, cached=target.startswith(_CACHED)))
            if kind == "error":
                error = up.error
                code = error.get("code", BACKEND_ERROR)
                if code == MISSING_CLIENT_CAPABILITY and call.era == "modern":
                    call.responder.answer_status = 400  # the 2026-07-28 transport's status for -32021
                message, data = str(error.get("message", "")), error.get("data")
                reshape = getattr(shape, "error", None)
                if reshape is not None:
                    message, data = reshape(message, data)
                return encode_error(client_id, code, message, data)
            if kind == "notification":
                out = _map_notification(call, up, client_token, exchange.backend)
                if out is not None:
                    await call.responder.event(out)
                elif up.method is not None and (
                    up.method.endswith("/list_changed") or up.method == "notifications/resources/updated"
                ):
                    # Backends may announce list changes on the stream of the call that caused them.
                    call.gateway.catalog.heard(exchange.backend, up)
                continue
            # A backend request for the client (elicitation, sampling, roots) in the middle of the call.
            if up.method == "ping" or up.id is None:
                if up.id is not None:
                    await exchange.answer(up.id, {"result": {}})
                continue
            refusal = _refusal(call, up.method or "")
            if refusal is not None:
                needed = _NEEDS.get(up.method or "")
                if call.era == "modern" and needed is not None:
                    # Serving this request needs a capability the client did not declare (2026-07-28: -32021).
                    call.responder.answer_status = 400
                    return encode_error(client_id, MISSING_CLIENT_CAPABILITY,
                                        f"Missing required client capability: {needed}",
                                        {"requiredCapabilities": {needed: {}}})  # fmt: skip
                await exchange.answer(up.id, {"error": refusal})
                continue
            if call.era == "legacy":
                response = await _relay(call, up.method or "", up.params, exchange)
                await exchange.answer(up.id, response)
                continue
            parked = True
            return _park(call, client_id, exchange, target, {"input-1": up}, shape)
    finally:
        if live is not None and client_id is not None:
            live.in_flight.pop(client_id, None)
        if not parked and not exchange.done:
            await exchange.close()


_MODERN_ONLY = ("resultType", "ttlMs", "cacheScope")
# The 2026-07-28 envelope's reserved `_meta` keys (2025-11-25 ones, such as related-task, stay).
_MODERN_META = frozenset({
    META_SERVER_INFO, META_PROTOCOL_VERSION, META_CLIENT_INFO, META_CLIENT_CAPABILITIES, META_LOG_LEVEL,
    META_SUBSCRIPTION_ID,
})  # fmt: skip


def _legacy_view(result: dict[str, Any]) -> dict[str, Any]:
    """A 2026-07-28 backend's result as a 2025-11-25 client may see it: without the fields and `_meta`
    keys that era does not have (the backend's serverInfo would tell the client which server is behind
    the slice)."""
    shown = {key: value for key, value in result.items() if key not in _MODERN_ONLY}
    meta = shown.get("_meta")
    if isinstance(meta, dict):
        kept = {key: value for key, value in meta.items() if key not in _MODERN_META}
        if kept:
            shown["_meta"] = kept
        else:
            del shown["_meta"]
    return shown


def _map_notification(call: Call, up: Message, client_token: Any, backend: str) -> bytes | None:
    method = up.method
    if method == "notifications/tasks/status":
        ref = call.gateway.tasks.of_backend(backend, up.params.get("taskId"))
        session = call.live.id if call.live is not None else None
        if ref is None or call.gateway.tasks.find(ref.exposed, call.server.config.path, call.subject, session) is None:
            return None  # another client's task, on the shared backend session
        return encode_notification(method, {**up.params, "taskId": ref.exposed})
    if method == "notifications/progress":
        if client_token is None:
            return None
        params = dict(up.params)
        params["progressToken"] = client_token
        return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})
    if method == "notifications/message":
        if call.era == "modern":
            # A 2026-07-28 client gets log messages only when its request asked, at its level and above.
            level = call.meta.get(META_LOG_LEVEL)
            if not isinstance(level, str) or not log_passes(up.params.get("level"), level):
                return None
        elif call.live is not None and not log_passes(up.params.get("level"), call.live.log_level):
            return None
        return orjson.dumps(up.raw)
    return None


def _refusal(call: Call, method: str) -> dict[str, Any] | None:
    needed = _NEEDS.get(method)
    if needed is None:
        return {"code": METHOD_NOT_FOUND, "message": f"Method not found: {method}"}
    if needed not in call.client_capabilities:
        return {"code": METHOD_NOT_FOUND, "message": f"The client did not declare the {needed} capability"}
    return None


def _backend_error(client_id: RequestId | None, exc: BackendError) -> bytes:
    code = REQUEST_TIMEOUT if isinstance(exc, BackendTimeout) else BACKEND_ERROR
    return encode_error(client_id, code, str(exc), {"backend": exc.backend})


# --- relaying backend requests to a legacy client ------------------------------------------------


async def _relay(call: Call, method: str, params: dict[str, Any], exchange: Exchange | None) -> dict[str, Any]:
    """Ask the legacy client on this request's SSE stream; return its answer as {"result"|"error": ...}."""
    live = call.live
    assert live is not None
    ttl = call.gateway.config.limits.input_required_ttl_s
    relay_id = live.next_relay_id()
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    live.relayed[relay_id] = Relayed(exchange, relay_id, future)  # type: ignore[arg-type]
    if exchange is not None:
        exchange.extend_deadline(ttl)
    hop = None
    trace = call.responder.trace
    if trace is not None:
        hop = add_hop(trace, new_hop(method, pb.SPAN_KIND_INTERNAL, pb.DIRECTION_GATEWAY_TO_CLIENT, method,
                                     time.time_ns()))  # fmt: skip
        hop[HOP_REQUEST] = {"jsonrpc": "2.0", "id": relay_id, "method": method, "params": params}
    try:
        await call.responder.event(orjson.dumps({"jsonrpc": "2.0", "id": relay_id, "method": method, "params": params}))
        disconnected: asyncio.Future[Any] = asyncio.ensure_future(call.responder.disconnected.wait())
        waiting: set[asyncio.Future[Any]] = {future, disconnected}
        done, _ = await asyncio.wait(waiting, timeout=ttl, return_when=asyncio.FIRST_COMPLETED)
        disconnected.cancel()
        if future in done and not future.cancelled():
            answer = future.result()
        else:
            answer = {"error": {"code": REQUEST_TIMEOUT, "message": f"The client did not answer {method}"}}
        if hop is not None:
            hop[HOP_END], hop[HOP_RESPONSE] = time.time_ns(), answer
        return answer
    finally:
        live.relayed.pop(relay_id, None)


async def _gather_inputs(call: Call, exchange: Exchange, outcome: dict[str, Any]) -> dict[str, Any] | None:
    requests = outcome.get("inputRequests")
    responses: dict[str, Any] = {}
    if not isinstance(requests, dict):
        return responses
    for key, request in requests.items():
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            continue
        method = request["method"]
        if _refusal(call, method) is not None:
            return None
        params = request.get("params")
        answer = await _relay(call, method, params if isinstance(params, dict) else {}, None)
        if "result" not in answer:
            return None
        responses[key] = answer["result"]
    return responses


async def answer_relayed(live: LiveSession, msg: Message) -> bool:
    """A legacy client's answer to a relayed request. False if nobody is waiting for it."""
    relayed = live.relayed.get(msg.id) if msg.id is not None else None
    if relayed is None or relayed.future is None or relayed.future.done():
        return False
    response = {"result": msg.result} if msg.kind == "result" else {"error": msg.error}
    relayed.future.set_result(response)
    return True


# --- multi round-trip requests for modern clients -------------------------------------------------


def _park(
    call: Call,
    client_id: RequestId | None,
    exchange: Exchange,
    target: str,
    requests: dict[str, Message],
    shape: Shaper | None = None,
) -> bytes:
    """Answer a modern client with InputRequiredResult; keep the backend call waiting for the retry."""
    ttl = call.gateway.config.limits.input_required_ttl_s
    token = _PARK_PREFIX + secrets.token_urlsafe(24)
    call.gateway.parked[token] = Parked(
        exchange=exchange,
        virtual_server=call.server.config.path,
        target=target,
        pending={key: (m.id, m.method, m.params) for key, m in requests.items()},
        shape=shape,
        expires=time.monotonic() + ttl,
        subject=call.subject,
    )
    exchange.extend_deadline(ttl)
    input_requests = {key: {"method": m.method, "params": m.params} for key, m in requests.items()}
    result = {"resultType": "input_required", "inputRequests": input_requests, "requestState": token}
    return encode_result(client_id, call.stamp(result))


async def _resume(call: Call, msg: Message, target: str, token: str, client_token: Any) -> None:
    parked = call.gateway.parked.pop(token, None)
    if (
        parked is None
        or parked.expires < time.monotonic()
        or parked.virtual_server != call.server.config.path
        or parked.subject != call.subject
    ):
        if parked is not None:
            await parked.exchange.close()
        await call.responder.json(
            200, encode_error(msg.id, INVALID_PARAMS, "requestState is unknown or expired; call the tool again")
        )
        return
    if parked.target != target:
        call.gateway.parked[token] = parked
        await call.responder.json(
            200, encode_error(msg.id, INVALID_PARAMS, f"requestState belongs to {parked.target!r}, not {target!r}")
        )
        return
    responses = msg.params.get("inputResponses")
    responses = responses if isinstance(responses, dict) else {}
    missing = {key: value for key, value in parked.pending.items() if key not in responses}
    if missing:
        # Ask again for what is still missing, as the MRTR pattern prescribes.
        call.gateway.parked[token] = parked
        input_requests = {key: {"method": method, "params": params} for key, (_, method, params) in missing.items()}
        result = {"resultType": "input_required", "inputRequests": input_requests, "requestState": token}
        await call.responder.json(200, encode_result(msg.id, call.stamp(result)))
        return
    exchange = parked.exchange
    try:
        for key, (upstream_id, _, _) in parked.pending.items():
            await exchange.answer(upstream_id, {"result": responses[key]})
    except BackendError as exc:
        await exchange.close()
        await call.responder.json(200, _backend_error(msg.id, exc))
        return
    hop = None
    trace = call.responder.trace
    if trace is not None:
        trace[BACKEND] = exchange.backend
        hop = add_hop(
            trace,
            new_hop(
                f"{target} (resumed)",
                pb.SPAN_KIND_CLIENT,
                pb.DIRECTION_GATEWAY_TO_BACKEND,
                target.split(" ", 1)[0],
                time.time_ns(),
                exchange.backend,
            ),
        )
        hop[HOP_REQUEST] = {"inputResponses": responses}
    outcome = await _pump(call, msg.id, exchange, client_token, target, hop, parked.shape)
    assert isinstance(outcome, bytes)  # modern clients get InputRequiredResults passed through
    await call.responder.json(call.responder.answer_status, outcome)


# --- subscriptions/listen -------------------------------------------------------------------------


async def _listen(call: Call, msg: Message) -> None:
    wanted = msg.params.get("notifications")
    wanted = wanted if isinstance(wanted, dict) else {}
    config = call.server.config
    served = {"toolsListChanged": bool(config.tool_mappings), "promptsListChanged": bool(config.prompt_mappings),
              "resourcesListChanged": bool(config.resource_mappings)}  # fmt: skip
    granted: dict[str, Any] = {key: True for key, ok in served.items() if ok and wanted.get(key) is True}
    listener = Listener(msg.id, granted)
    uris = wanted.get("resourceSubscriptions")
    if isinstance(uris, list) and call.server.slice.subscribe:
        watched = [uri for uri in uris if isinstance(uri, str) and await _listen_for(call, listener, uri)]
        if watched:
            granted["resourceSubscriptions"] = watched
    path = call.server.config.path
    listeners = call.gateway.listeners.setdefault(path, set())
    if granted:
        listeners.add(listener)
    responder = call.responder
    closed = asyncio.Event()

    async def hang_up() -> None:
        closed.set()

    responder.watch(hang_up)
    ack = {"notifications": granted, "_meta": {META_SUBSCRIPTION_ID: msg.id}}
    try:
        await responder.event(
            orjson.dumps({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": ack})
        )
        while not closed.is_set():
            try:
                item = await asyncio.wait_for(listener.queue.get(), _KEEPALIVE_S)
            except TimeoutError:
                await responder.comment()
                continue
            if not item:  # the gateway is shutting down: end the subscription gracefully
                final = {"resultType": "complete", "_meta": {META_SUBSCRIPTION_ID: msg.id}}
                await responder.event(encode_result(msg.id, final))
                break
            await responder.event(item)
    finally:
        listeners.discard(listener)
        await call.gateway.release(listener)
        await responder.end()


async def _listen_for(call: Call, listener: Listener, uri: str) -> bool:
    """Subscribe a listen stream to one resource's updates; False when it cannot be (not in the slice,
    or the backend refused)."""
    route = _readable(call, uri)
    if route is None:
        return False
    meta = {META_SUBSCRIPTION_ID: listener.subscription_id}
    message = encode_notification("notifications/resources/updated", {"uri": route.exposed, "_meta": meta})
    error = await _watch(call, route, listener, lambda: listener.queue.put_nowait(message))
    if error is not None:
        logger.info("subscription to %s refused: %s", uri, error[1])
    return error is None


# What both eras share: the slice's lists and the requests routed to a backend.
_ROUTED = {
    "tools/list": _list_tools,
    "tools/call": _call_tool,
    "prompts/list": _list_prompts,
    "prompts/get": _get_prompt,
    "resources/list": _list_resources,
    "resources/templates/list": _list_templates,
    "resources/read": _read_resource,
    "completion/complete": _complete,
}
_LEGACY = {
    "ping": _ping,
    "logging/setLevel": _set_level,
    "resources/subscribe": _subscribe,
    "resources/unsubscribe": _unsubscribe,
    "tasks/get": _task_request,
    "tasks/result": _task_request,
    "tasks/cancel": _task_request,
    "tasks/list": _list_tasks,
    **_ROUTED,
}
_MODERN = {"server/discover": _discover, "subscriptions/listen": _listen, **_ROUTED}

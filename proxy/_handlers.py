"""MCP method handlers of a virtual server, for both client eras.

Each handler answers one JSON-RPC request through the `Responder` of its HTTP exchange. The only
one on the hot path is `call_tool`: look the exposed name up in the slice, forward to the backend
with the original name, and pass the answer through — switching to SSE only when the backend sends
something before its answer (progress, a request for the client).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ._approval import approve
from ._call import Call, Shaper, client_meta_of, consent
from ._creds import ConsentRequired, CredentialError
from ._gateway import Listener
from ._guardrails import GuardedResult
from ._jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, Message, encode_error, encode_notification, encode_result
from ._mcp import (
    ALL_VERSIONS,
    BACKEND_ERROR,
    HEADER_MISMATCH,
    LOG_LEVELS,
    META_SUBSCRIPTION_ID,
    HeaderMismatch,
    check_param_headers,
    encode_header_value,
    header_text,
    negotiate_legacy,
)
from ._relay import PARK_PREFIX, credentials, forward, upstream_label
from ._resources import ResourceRoute
from ._resume import resume_anywhere
from ._sessions import LiveSession
from ._shapes import contents_shaper, prompt_shaper, tool_result_shaper
from ._taskcalls import HANDLERS_2025, HANDLERS_2026, task_shaper
from ._upstream import BackendError, BackendRpcError, BackendUnavailable
from .guardrails import CallContext

logger = logging.getLogger(__name__)

__all__ = ["Call", "handle_request", "initialize"]

_KEEPALIVE_S = 15.0


async def handle_request(call: Call, msg: Message) -> None:
    method = msg.method
    handler = _MODERN.get(method or "") if call.era == "modern" else _LEGACY.get(method or "")
    if handler is not None and method in call.server.unserved[call.era]:
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
    return consent(msg.id, ConsentRequired(urls))


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
    state = gateway.sessions.issue(
        server.config.path, version, capabilities if isinstance(capabilities, dict) else {}, call.subject
    )
    gateway.live[state.id] = LiveSession(state.id, server.config.path)
    call.observed.record.session_opened(state.id, version)
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
        # The session's GET stream may be held by another worker or replica: it relays the logs.
        call.gateway.bus.publish({"t": "level", "s": call.live.id, "vs": call.live.virtual_server, "level": level})
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


async def _list_resources(call: Call, msg: Message) -> None:
    resources = call.server.slice.resources
    if call.server.policy.resource_scopes:
        resources = tuple(r for r in resources if readable(call, r["uri"]) is not None)
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
    client_meta = client_meta_of(params)
    if call.era == "modern" and isinstance(state, str) and state.startswith(PARK_PREFIX):
        await resume_anywhere(call, msg, f"prompts/get {name}", state, client_meta.get("progressToken"))
        return
    upstream: dict[str, Any] = {"name": route.tool_name}
    await _routed(call, msg, route.backend, "prompts/get", upstream, name, name, prompt_shaper(call, route.backend))


async def _read_resource(call: Call, msg: Message) -> None:
    params = msg.params
    uri = params.get("uri")
    if not isinstance(uri, str):
        refusal = encode_error(msg.id, INVALID_PARAMS, "resources/read needs params.uri (a string)")
        await call.responder.json(200, refusal)
        return
    route = readable(call, uri)
    if route is None:
        # Outside the slice: it does not exist for this client (the 2026-07-28 spec's error, SEP-2164).
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "Resource not found", {"uri": uri}))
        return
    state = params.get("requestState")
    if call.era == "modern" and isinstance(state, str) and state.startswith(PARK_PREFIX):
        await resume_anywhere(call, msg, f"resources/read {uri}", state, client_meta_of(params).get("progressToken"))
        return
    mapping = call.server.config.resource_mappings[route.mapping]
    shape = contents_shaper(call, route)
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
        exact = readable(call, uri) if found is None else None
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
    call.observed.sliced(target, path, upstream_label(method, upstream), label)
    backend = call.gateway.catalog.backends.get(path)
    if backend is None:
        await call.responder.json(
            200, encode_error(msg.id, BACKEND_ERROR, f"Backend {path}: not configured", {"backend": path})
        )
        return
    for key in ("arguments", "inputResponses", "requestState") if method != "completion/complete" else ():
        if key in params and (key == "arguments" or call.era == "modern"):
            upstream[key] = params[key]
    await forward(call, msg.id, backend, method, upstream, client_meta_of(params), target, shape)


async def _subscribe(call: Call, msg: Message) -> None:
    """A legacy client's resources/subscribe: updates arrive on its session's GET stream."""
    uri = msg.params.get("uri")
    route = readable(call, uri) if isinstance(uri, str) else None
    live = call.live
    if route is None or live is None:
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "Resource not found", {"uri": uri}))
        return
    message = encode_notification("notifications/resources/updated", {"uri": route.exposed})

    def deliver() -> None:
        call.gateway.to_stream(live, message)

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
        await backend.subscribe(route.uri, await credentials(call, backend))
    except BackendRpcError as exc:
        gateway.subscriptions.remove(route.backend, route.uri, subscriber)
        return int(exc.code) if isinstance(exc.code, int) else BACKEND_ERROR, str(exc)
    except (BackendError, CredentialError, ConsentRequired) as exc:
        gateway.subscriptions.remove(route.backend, route.uri, subscriber)
        return BACKEND_ERROR, str(exc)
    return None


async def _unsubscribe(call: Call, msg: Message) -> None:
    uri = msg.params.get("uri")
    route = readable(call, uri) if isinstance(uri, str) else None
    if route is None or call.live is None:
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, "Resource not found", {"uri": uri}))
        return
    gateway, session = call.gateway, call.live.id
    if not await gateway.unwatch(route.backend, route.uri, session):
        # Subscribed through another worker or replica: that one unsubscribes.
        gateway.bus.publish({"t": "unsubscribe", "s": session, "b": route.backend, "u": route.uri})
    await call.responder.json(200, encode_result(msg.id, {}))


def readable(call: Call, uri: str) -> ResourceRoute | None:
    """The route of an exposed URI this caller may read, or None (outside the slice, or not for it)."""
    route = call.server.slice.router.inbound(uri)
    if route is None or not call.server.policy.may_read(call.identity, route.mapping):
        return None
    return route


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
    if call.era == "modern" and isinstance(state, str) and state.startswith(PARK_PREFIX):
        await resume_anywhere(call, msg, f"tools/call {name}", state, client_token)
        return

    route = call.server.tool_route(name, call.identity)
    call.observed.sliced(name, *((route.backend, route.tool_name) if route is not None else ()))
    if route is None:
        # Outside the slice: it does not exist for this client, and no backend hears of it.
        await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, f"Unknown tool: {name}"))
        return
    backend = call.gateway.catalog.backends.get(route.backend)
    if backend is None:
        await call.responder.json(
            200,
            encode_error(msg.id, BACKEND_ERROR, f"Backend {route.backend}: not configured", {"backend": route.backend}),
        )
        return
    guard = call.server.slice.guards.get(name)
    if guard is not None:
        arguments, verdicts, refused = guard.check(arguments if arguments is not None else {})
        if refused is None and guard.hooks:
            subject = call.identity.subject if call.identity is not None else ""
            context = CallContext(call.server.config.path, name, route.backend, route.tool_name, subject, call.era)
            arguments, hooked, refused = await guard.run_hooks(context, arguments)
            verdicts += hooked
        call.observed.guarded(verdicts)
        if refused is not None:  # never forwarded; the message tells the model what to change
            await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, refused.message, refused.data))
            return
        if guard.approval:
            if not await approve(call, msg, name, arguments):
                return  # refused, or a modern client asked to approve
            # The approval round trip was the gateway's: a modern backend's own starts afresh.
            params = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
    upstream: dict[str, Any] = {"name": route.tool_name, "arguments": arguments if arguments is not None else {}}
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
    shape: Shaper = tool_result_shaper(call, backend)
    if guard is not None and guard.outputs:
        shape = GuardedResult(guard, shape, call.observed.guarded)
    if call.server.slice.task_extension:  # (which a slice with 2025-11-25 task tools has too)
        tasked = await task_shaper(call, msg, name, backend, upstream, shape)
        if tasked is None:
            return  # refused
        shape = tasked
    await forward(call, msg.id, backend, "tools/call", upstream, client_meta, name, shape, None, param_headers)


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
    route = readable(call, uri)
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
    **HANDLERS_2025,
    **_ROUTED,
}
_MODERN = {"server/discover": _discover, "subscriptions/listen": _listen, **HANDLERS_2026, **_ROUTED}

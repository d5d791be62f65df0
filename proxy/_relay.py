"""Relaying one request to its backend and everything the backend sends back about it, in either era.

`forward` sends a request with the caller's credentials and the client's `_meta`, then an
`ExchangeRelay` relays what the backend sends until its answer: progress and log notifications, and
its requests for the client (elicitation, sampling, roots) — asked on a 2025-11-25 client's stream
(`_relay`), or parked as an InputRequiredResult for a 2026-07-28 client, whose retry `resume`s the
backend call (MRTR).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import Any

import orjson

from ._call import Call, Shaper, consent
from ._creds import ConsentRequired, CredentialError
from ._gateway import Parked
from ._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    ErrorAnswer,
    Message,
    RequestId,
    encode_error,
    encode_notification,
    encode_result,
)
from ._mcp import (
    BACKEND_ERROR,
    CREDENTIALS_REQUIRED,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    META_SUBSCRIPTION_ID,
    MISSING_CLIENT_CAPABILITY,
    REQUEST_TIMEOUT,
    TASKS_EXTENSION,
    log_passes,
)
from ._metrics import outcome_of
from ._sessions import Relayed
from ._upstream import GATEWAY_CLIENT_CAPABILITIES, Backend, BackendError, BackendTimeout, Exchange, Headers
from .recording._record import NULL_HOP, Hop

logger = logging.getLogger(__name__)

__all__ = [
    "PARK_PREFIX",
    "backend_error",
    "credentials",
    "forward",
    "refusal",
    "resume",
    "upstream_label",
    "upstream_meta",
]

PARK_PREFIX = "sw1."
# Which client capability a server-to-client request needs.
_NEEDS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
_progress_tokens = itertools.count(1)
# Results whose 2026-07-28 schema requires caching hints (ttlMs, cacheScope), besides the lists.
_CACHED = ("resources/read ", "prompts/get ")
_RESERVED_META = "io.modelcontextprotocol/"


def upstream_meta(client_meta: dict[str, Any], traceparent: str) -> dict[str, Any] | None:
    """The `_meta` an upstream request carries, built in this one place: the client's own keys (not
    the protocol's reserved ones, which the gateway sets for its own session: see Backend.open), its
    log level, a progress token of the gateway's when the client sent one, and the gateway's trace
    context (when recording). None when there is nothing to send."""
    meta = {k: v for k, v in client_meta.items() if not k.startswith(_RESERVED_META) and k != "progressToken"}
    if META_LOG_LEVEL in client_meta:
        meta[META_LOG_LEVEL] = client_meta[META_LOG_LEVEL]
    if client_meta.get("progressToken") is not None:
        meta["progressToken"] = f"sw-{next(_progress_tokens)}"
    if traceparent:
        meta["traceparent"] = traceparent
    return meta or None


async def credentials(call: Call, backend: Backend) -> Headers | None:
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


async def forward(
    call: Call,
    client_id: RequestId | None,
    backend: Backend,
    method: str,
    upstream: dict[str, Any],
    client_meta: dict[str, Any],
    target: str,
    shape: Shaper | None = None,
    wait_s: float | None = None,
    param_headers: Headers | None = None,
) -> None:
    """Forward one request to its backend with the caller's credentials, and relay the answer.
    `upstream`: its params as the backend takes them, but for `_meta`, which is made here from the
    client's `client_meta` (see upstream_meta); `target`: what the request is about, as the client
    named it (a tool, a prompt, a URI); `wait_s`:
    how long the answer may take, when longer than the backend's timeout; `param_headers`: the
    tool's `Mcp-Param-*` headers (SEP-2243), for the backend's HTTP layer."""
    try:
        headers = await credentials(call, backend)
        if param_headers:
            headers = [*(headers or ()), *param_headers]
    except CredentialError as exc:
        await call.responder.json(
            200, encode_error(client_id, CREDENTIALS_REQUIRED, str(exc), {"backend": exc.backend})
        )
        return
    except ConsentRequired as exc:
        await call.responder.json(200, consent(client_id, exc))
        return
    record = call.observed.record
    metrics = call.gateway.metrics
    envelope = _envelope(call)
    client_token = client_meta.get("progressToken")
    label = upstream_label(method, upstream)
    while True:
        # Each upstream request (a legacy client's retry with answers is another) is a hop of its own.
        hop, traceparent = record.upstream(method, backend.path, label)
        meta = upstream_meta(client_meta, traceparent)
        if meta is not None:
            upstream["_meta"] = meta
        started = time.perf_counter()
        try:
            exchange = await backend.open(method, upstream, headers, envelope)
        except BackendError as exc:
            hop.failed((BACKEND_ERROR, str(exc)), {"jsonrpc": "2.0", "method": method, "params": upstream})
            if metrics is not None:
                metrics.upstream(backend.path, method, "error", time.perf_counter() - started)
            await call.responder.json(200, backend_error(client_id, exc))
            return
        hop.sent(exchange.sent, exchange.upstream_id, backend.peer)
        if wait_s is not None:
            exchange.extend_deadline(wait_s)
        outcome = await ExchangeRelay(call, client_id, exchange, client_token, f"{method} {target}", hop, shape).run()
        if metrics is not None:
            error = outcome.error if type(outcome) is ErrorAnswer else None  # (a dict: input required)
            answered = outcome_of(200, error, call.observed.tool_error)
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
    declared that the gateway can relay (so the backend never asks for input the client cannot give,
    nor creates a task for a client that cannot follow it),
    and for a legacy client its log level (a modern backend logs only when asked; a legacy server logs
    at its discretion, so info unless the client set a level)."""
    level = None
    declared = call.client_capabilities
    if call.era == "legacy":
        level = (call.live.log_level if call.live is not None else None) or "info"
    extensions = declared.get("extensions") if call.era == "modern" else None
    tasks = isinstance(extensions, dict) and TASKS_EXTENSION in extensions
    key = (level, tasks, *declared)
    envelope = _envelopes.get(key)
    if envelope is None:
        if len(_envelopes) > 256:
            _envelopes.clear()
        capabilities = {k: v for k, v in GATEWAY_CLIENT_CAPABILITIES.items() if k in declared}
        if tasks:  # the gateway relays a backend's tasks (SEP-2663) to a client that follows them
            capabilities["extensions"] = {TASKS_EXTENSION: {}}
        envelope = _envelopes[key] = {META_CLIENT_CAPABILITIES: capabilities}
        if level is not None:
            envelope[META_LOG_LEVEL] = level
    return envelope


# Envelopes by (log level, declared capability names): clients send the same few over and over.
_envelopes: dict[tuple[Any, ...], dict[str, Any]] = {}


def upstream_label(method: str, upstream: dict[str, Any]) -> str:
    """What an upstream request is about, for its span: the backend's tool or prompt name, or the URI."""
    value = upstream.get("uri") if method == "resources/read" else upstream.get("name")
    if method == "completion/complete":
        ref = upstream.get("ref")
        value = (ref.get("name") or ref.get("uri")) if isinstance(ref, dict) else None
    return str(value) if value is not None else ""


def _finish_hop(hop: Hop, up: Message | None, error: tuple[int, str] | None = None) -> None:
    if up is None:
        hop.failed(error or (BACKEND_ERROR, "no answer"))
        return
    if up.kind == "error":
        error = (int(up.error.get("code", BACKEND_ERROR)), str(up.error.get("message", "")))
    hop.answered(up.data if up.data is not None else up.raw, error)


class ExchangeRelay:
    """What a backend sends about one request, relayed to the client until the backend's answer:
    progress and log notifications, and its requests for the client (asked on a 2025-11-25 client's
    stream, or parked for a 2026-07-28 client's retry). `run()` returns the encoded answer, or a
    modern backend's InputRequiredResult when a legacy client must be asked first."""

    __slots__ = ("call", "client_id", "client_token", "exchange", "hop", "parked", "shape", "target")

    def __init__(
        self,
        call: Call,
        client_id: RequestId | None,
        exchange: Exchange,
        client_token: Any,
        target: str,
        hop: Hop = NULL_HOP,
        shape: Shaper | None = None,
    ) -> None:
        self.call, self.client_id, self.exchange, self.client_token = call, client_id, exchange, client_token
        self.target, self.hop, self.shape = target, hop, shape
        self.parked = False

    async def run(self) -> bytes | dict[str, Any]:
        call, client_id, exchange = self.call, self.client_id, self.exchange
        live = call.live
        if live is not None and client_id is not None:
            live.in_flight[client_id] = exchange
        call.responder.watch(exchange.close)
        try:
            while True:
                try:
                    up = await exchange.next()
                except BackendError as exc:
                    code = REQUEST_TIMEOUT if isinstance(exc, BackendTimeout) else BACKEND_ERROR
                    _finish_hop(self.hop, None, (code, str(exc)))
                    return backend_error(client_id, exc)
                kind = up.kind
                if kind == "result":
                    return self._result(up)
                if kind == "error":
                    return self._error(up)
                call.observed.record.heard(self.hop, up.method, up.raw)
                if kind == "notification":
                    await self._notification(up)
                    continue
                answer = await self._request(up)
                if answer is not None:
                    return answer
        finally:
            if live is not None and client_id is not None:
                live.in_flight.pop(client_id, None)
            if not self.parked and not exchange.done:
                await exchange.close()

    def _result(self, up: Message) -> bytes | dict[str, Any]:
        call, shape = self.call, self.shape
        _finish_hop(self.hop, up)
        result = up.result if isinstance(up.result, dict) else {}
        call.observed.tool_result(result.get("isError") is True)
        if call.era == "legacy":
            if result.get("resultType") == "input_required":
                return result
            if "resultType" in result or "_meta" in result or "ttlMs" in result:
                result = _legacy_view(result)
        if shape is not None:
            data, marker = up.data, shape.marker
            if marker is None or data is None or data.find(marker) != -1:  # a C scan, not a walk
                result = shape(result)
        return encode_result(self.client_id, call.stamp(result, cached=self.target.startswith(_CACHED)))

    def _error(self, up: Message) -> bytes:
        _finish_hop(self.hop, up)
        error = up.error
        code = error.get("code", BACKEND_ERROR)
        if code == MISSING_CLIENT_CAPABILITY and self.call.era == "modern":
            self.call.responder.answer_status = 400  # the 2026-07-28 transport's status for -32021
        message, data = str(error.get("message", "")), error.get("data")
        reshape = getattr(self.shape, "error", None)
        if reshape is not None:
            message, data = reshape(message, data)
        return encode_error(self.client_id, code, message, data)

    async def _notification(self, up: Message) -> None:
        call, backend = self.call, self.exchange.backend
        out = _map_notification(call, up, self.client_token, backend)
        if out is not None:
            await call.responder.event(out)
        elif up.method is not None and (
            up.method.endswith("/list_changed") or up.method == "notifications/resources/updated"
        ):
            # Backends may announce list changes on the stream of the call that caused them.
            call.gateway.catalog.heard(backend, up)

    async def _request(self, up: Message) -> bytes | dict[str, Any] | None:
        """A backend request for the client (elicitation, sampling, roots) in the middle of the call:
        answered, and None (the call goes on), or the client's answer to give now (refused, parked)."""
        call, exchange = self.call, self.exchange
        if up.method == "ping" or up.id is None:
            if up.id is not None:
                await exchange.answer(up.id, {"result": {}})
            return None
        refused = refusal(call.client_capabilities, up.method or "")
        if refused is not None:
            needed = _NEEDS.get(up.method or "")
            if call.era == "modern" and needed is not None:
                # Serving this request needs a capability the client did not declare (2026-07-28: -32021).
                call.responder.answer_status = 400
                return encode_error(self.client_id, MISSING_CLIENT_CAPABILITY,
                                    f"Missing required client capability: {needed}",
                                    {"requiredCapabilities": {needed: {}}})  # fmt: skip
            await exchange.answer(up.id, {"error": refused})
            return None
        if call.era == "legacy":
            await exchange.answer(up.id, await ask_client(call, up.method or "", up.params, exchange))
            return None
        self.parked = True
        return _park(call, self.client_id, exchange, self.target, {"input-1": up}, self.shape)


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
        found = ref is not None and call.gateway.tasks.find(ref.exposed, call.server.config.path, call.subject,
                                                            call.era, session)  # fmt: skip
        if ref is None or found is None:
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


def refusal(client_capabilities: dict[str, Any], method: str) -> dict[str, Any] | None:
    """Why a backend's request for the client cannot go to it (None: it can)."""
    needed = _NEEDS.get(method)
    if needed is None:
        return {"code": METHOD_NOT_FOUND, "message": f"Method not found: {method}"}
    if needed not in client_capabilities:
        return {"code": METHOD_NOT_FOUND, "message": f"The client did not declare the {needed} capability"}
    return None


def backend_error(client_id: RequestId | None, exc: BackendError) -> bytes:
    code = REQUEST_TIMEOUT if isinstance(exc, BackendTimeout) else BACKEND_ERROR
    return encode_error(client_id, code, str(exc), {"backend": exc.backend})


# --- relaying backend requests to a legacy client ------------------------------------------------


async def ask_client(call: Call, method: str, params: dict[str, Any], exchange: Exchange | None) -> dict[str, Any]:
    """Ask the legacy client on this request's SSE stream; return its answer as {"result"|"error": ...}."""
    live = call.live
    assert live is not None
    ttl = call.gateway.config.limits.input_required_ttl_s
    relay_id = live.next_relay_id()
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    live.relayed[relay_id] = Relayed(exchange, relay_id, future, method)  # type: ignore[arg-type]
    if exchange is not None:
        exchange.extend_deadline(ttl)
    hop = call.observed.record.asked(method, {"jsonrpc": "2.0", "id": relay_id, "method": method, "params": params})
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
        hop.answered(answer)
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
        if refusal(call.client_capabilities, method) is not None:
            return None
        params = request.get("params")
        answer = await ask_client(call, method, params if isinstance(params, dict) else {}, None)
        if "result" not in answer:
            return None
        responses[key] = answer["result"]
    return responses


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
    token = PARK_PREFIX + secrets.token_urlsafe(24)
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


async def resume(call: Call, msg: Message, target: str, token: str, client_token: Any) -> None:
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
        await call.responder.json(200, backend_error(msg.id, exc))
        return
    hop = call.observed.record.resumed(target, exchange.backend, {"inputResponses": responses})
    outcome = await ExchangeRelay(call, msg.id, exchange, client_token, target, hop, parked.shape).run()
    assert isinstance(outcome, bytes)  # modern clients get InputRequiredResults passed through
    await call.responder.json(call.responder.answer_status, outcome)

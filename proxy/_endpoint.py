"""The client-facing MCP endpoint (`<virtual server path>/mcp`), both eras on one URL.

Raw ASGI for speed: read and check the HTTP request (content type, Accept, size), parse the
JSON-RPC body, decide the era — an `initialize` or an `Mcp-Session-Id` means legacy, per-request
`_meta` / a modern `MCP-Protocol-Version` means modern — apply that era's transport rules, and hand
the message to a handler. Every refusal is a JSON-RPC error body with the status the spec gives.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, NamedTuple, TypeGuard

from ._creds import parse_header_override
from ._gateway import Gateway, VirtualServer
from ._handlers import Call, handle_request, initialize
from ._identity import AuthError, Identity, bearer_token
from ._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Message,
    ProtocolError,
    encode_error,
    parse_message,
)
from ._mcp import (
    ALL_VERSIONS,
    HEADER_MISMATCH,
    LEGACY_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    PROTOCOL_VERSION_HEADER,
    SESSION_ID_HEADER,
    SESSION_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    Era,
    HeaderMismatch,
    check_modern_headers,
    era_of,
    meta_of,
)
from ._observed import Observed
from ._responder import Receive, Responder, Send
from ._sessions import LiveSession, SessionState
from ._upstream import Headers
from .recording._record import NULL_RECORD, Record

logger = logging.getLogger(__name__)

__all__ = ["McpEndpoint"]

_KEEPALIVE_S = 15.0


_accept_verdicts: dict[tuple[str, tuple[str, ...]], bool] = {}


def _accepts(accept: str, *types: str) -> bool:
    """True if the Accept header admits every one of `types` (wildcards count). Verdicts are cached:
    clients send the same few Accept values over and over."""
    key = (accept, types)
    verdict = _accept_verdicts.get(key)
    if verdict is None:
        if len(_accept_verdicts) > 256:
            _accept_verdicts.clear()
        verdict = _accept_verdicts[key] = _judge_accept(accept, types)
    return verdict


def _judge_accept(accept: str, types: tuple[str, ...]) -> bool:
    offered = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    if "*/*" in offered:
        return True
    for wanted in types:
        major = wanted.split("/", 1)[0] + "/*"
        if wanted not in offered and major not in offered:
            return False
    return True


class Caller(NamedTuple):
    """Who sent this request and what it brings for the backends."""

    identity: Identity | None
    overrides: dict[str, Headers] | None
    base_url: str

    @property
    def subject(self) -> str:
        return self.identity.subject if self.identity is not None else ""


def base_url(gateway: Gateway, scope: dict[str, Any], headers: dict[str, str]) -> str:
    """The gateway's public base URL: `auth.public_url`, else the scheme and Host of this request."""
    public = gateway.config.auth.public_url
    if public is not None:
        return public
    return f"{scope.get('scheme', 'http')}://{headers.get('host') or 'localhost'}"


def metadata_url(base: str, vs_path: str) -> str:
    """RFC 9728 protected-resource metadata of a virtual server (the well-known path is inserted)."""
    return f"{base}/.well-known/oauth-protected-resource{vs_path}/mcp"


class McpEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _identify(
        self, server: VirtualServer, base: str, headers: dict[str, str], responder: Responder
    ) -> Identity | None:
        """The caller's identity, or None after answering 401 / 403 (RFC 6750, RFC 9728)."""
        path = server.config.path
        challenge = f'Bearer resource_metadata="{metadata_url(base, path)}"'
        token = bearer_token(headers.get("authorization"))
        auth = self.gateway.auth
        audiences = server.audiences
        try:
            if token is None:
                raise AuthError("a gateway token is required (Authorization: Bearer ...)", None)
            identity = auth.cached(token) or await auth.authenticate(token, audiences)
            if identity.audiences is not None and identity.audiences.isdisjoint(audiences):
                raise AuthError(f"the token was not issued for {path} (aud)")
        except AuthError as exc:
            if exc.code is not None:
                challenge += f', error="{exc.code}", error_description="{_quote(str(exc))}"'
            responder.extra_headers.append((b"www-authenticate", challenge.encode("latin-1", "replace")))
            await responder.json(401, encode_error(None, INVALID_REQUEST, f"Unauthorized: {exc}"))
            return None
        denial = server.policy.admit(identity)
        if denial is not None:
            reason, needed = denial
            scope = f', scope="{" ".join(sorted(needed))}"' if needed else ""
            value = f'Bearer error="insufficient_scope"{scope}, resource_metadata="{metadata_url(base, path)}"'
            responder.extra_headers.append((b"www-authenticate", value.encode("latin-1", "replace")))
            await responder.json(403, encode_error(None, INVALID_REQUEST, f"Forbidden: {reason}"))
            return None
        return identity

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        vs_path = self.gateway.endpoints.get(path)
        responder = Responder(send, receive)
        emitter = self.gateway.emitter
        record = NULL_RECORD
        if emitter is not None:
            record = Record.begin(scope["headers"], None, scope.get("client"), scope.get("http_version", ""))
        if vs_path is None:
            await responder.json(404, encode_error(None, INVALID_REQUEST, f"No virtual server is served at {path}"))
            return
        server = self.gateway.servers[vs_path]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        base = base_url(self.gateway, scope, headers)
        identity = None
        if not server.policy.public:
            identity = await self._identify(server, base, headers, responder)
            if identity is None:
                return
            record.identified(identity.subject)
        overrides = None
        override = headers.get("x-mcp-headers") or headers.get("x-tfy-mcp-headers")
        if override is not None:
            try:
                overrides = parse_header_override(override, list(server.backends))
            except ValueError as exc:
                await responder.json(400, encode_error(None, INVALID_REQUEST, str(exc)))
                return
        caller = Caller(identity, overrides, base)
        method = scope["method"]
        if method == "POST":
            gateway = self.gateway
            gateway.in_flight += 1
            started = time.perf_counter()
            observed = Observed(record)
            try:
                await self._post(server, caller, headers, receive, responder, observed)
            finally:
                gateway.in_flight -= 1
                observed.finished(gateway.metrics, vs_path, responder, started)
                if emitter is not None and record.method:  # (a record with no method was never parsed)
                    emitter.emit(record)
        elif method == "GET":
            await self._get(server, caller, headers, responder)
        elif method == "DELETE":
            await self._delete(server, caller, headers, responder)
        else:
            responder.extra_headers.append((b"allow", b"GET, POST, DELETE"))
            await responder.json(405, encode_error(None, INVALID_REQUEST, f"Method {method} is not allowed here"))

    # --- POST ------------------------------------------------------------------------------------

    async def _post(
        self,
        server: VirtualServer,
        caller: Caller,
        headers: dict[str, str],
        receive: Receive,
        responder: Responder,
        observed: Observed,
    ) -> None:
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            await responder.json(
                415,
                encode_error(None, INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json"),
            )
            return
        if not _accepts(headers.get("accept", ""), "application/json", "text/event-stream"):
            await responder.json(
                406,
                encode_error(
                    None,
                    INVALID_REQUEST,
                    "Not Acceptable: Accept must list both application/json and text/event-stream",
                ),
            )
            return
        body = await self._read_body(headers, receive, responder)
        if body is None:
            return
        record = observed.record
        try:
            msg = parse_message(body)
        except ProtocolError as exc:
            record.unreadable()
            await responder.json(400, encode_error(exc.id, exc.code, exc.message))
            return
        observed.received(msg, body)
        # Rare: a C-level scan decides (find, not `in`: see _upstream/_http.py).
        if body.find(b"traceparent") != -1 or "traceparent" in headers:
            record.continue_from(headers.get("traceparent") or meta_of(msg).get("traceparent"))
        if REPLAY_OF_HEADER in headers:
            replay_of = headers[REPLAY_OF_HEADER]
            if _TRACE_ID.match(replay_of):
                record.replays(bytes.fromhex(replay_of))

        session_id = headers.get(SESSION_ID_HEADER)
        header_version = headers.get(PROTOCOL_VERSION_HEADER)
        if msg.method == "initialize" and msg.kind == "request" and session_id is None:
            if era_of(msg, header_version) == "modern":
                # 2026-07-28 removed the handshake: a request of that era gets "not found".
                await responder.json(404, encode_error(msg.id, METHOD_NOT_FOUND, "Method not found: initialize"))
                return
            record.parsed("legacy", "", "")  # the handshake names the version and the session
            await initialize(_call(self.gateway, server, "legacy", "", responder, observed, caller), msg)
            return
        if session_id is not None:
            await self._legacy(server, caller, session_id, header_version, msg, responder, observed)
            return
        if era_of(msg, header_version) == "modern":
            await self._modern(server, caller, headers, msg, responder, observed)
            return
        if header_version is not None and header_version not in ALL_VERSIONS:
            await responder.json(400, _unsupported(msg.id, header_version))
            return
        await responder.json(
            400,
            encode_error(
                msg.id,
                INVALID_REQUEST,
                "Bad Request: no Mcp-Session-Id header. Legacy clients start with initialize; "
                "2026-07-28 clients send io.modelcontextprotocol/protocolVersion in params._meta",
            ),
        )

    async def _read_body(self, headers: dict[str, str], receive: Receive, responder: Responder) -> bytes | None:
        limit = self.gateway.config.limits.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await responder.json(413, encode_error(None, INVALID_REQUEST, f"Request body larger than {limit} bytes"))
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await responder.json(
                    413, encode_error(None, INVALID_REQUEST, f"Request body larger than {limit} bytes")
                )
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _legacy(
        self,
        server: VirtualServer,
        caller: Caller,
        session_id: str,
        header_version: str | None,
        msg: Message,
        responder: Responder,
        observed: Observed,
    ) -> None:
        gateway = self.gateway
        state = gateway.sessions.get(session_id)
        if not _owned(state, server, caller):
            await responder.json(
                404, encode_error(msg.id, SESSION_NOT_FOUND, "Session not found: initialize a new session")
            )
            return
        if header_version is not None and header_version not in LEGACY_VERSIONS:
            await responder.json(400, _unsupported(msg.id, header_version))
            return
        record = observed.record
        record.parsed("legacy", state.protocol_version, session_id)
        if msg.kind != "request":
            record.in_session(session_id)
        live = gateway.live.get(session_id)
        if live is None:  # another worker or replica opened it; this process's parts start empty
            live = gateway.live[session_id] = LiveSession(session_id, state.virtual_server)
        live.last_seen = time.monotonic()
        responder.extra_headers.append((b"mcp-session-id", session_id.encode()))
        if msg.kind == "request":
            if msg.method == "initialize":
                await responder.json(400, encode_error(msg.id, INVALID_REQUEST, "This session is already initialized"))
                return
            call = _call(gateway, server, "legacy", state.protocol_version, responder, observed, caller)
            call.session, call.live, call.client_capabilities = state, live, state.client_capabilities
            await handle_request(call, msg)
        elif msg.kind == "notification":
            if msg.method == "notifications/cancelled":
                request_id = msg.params.get("requestId")
                exchange = live.cancel(request_id)
                if exchange is not None:
                    await exchange.close()
                else:  # the call may be in flight in another process
                    gateway.bus.publish({"t": "cancel", "s": session_id, "id": request_id})
            await responder.empty(202)
        else:
            response = {"result": msg.result} if msg.kind == "result" else {"error": msg.error}
            answered = live.answer(msg.id, response)
            if answered is None:  # the request may wait in another process
                gateway.bus.publish({"t": "answer", "s": session_id, "id": msg.id, "r": response})
            else:
                record.answers(answered)
            await responder.empty(202)

    async def _modern(
        self,
        server: VirtualServer,
        caller: Caller,
        headers: dict[str, str],
        msg: Message,
        responder: Responder,
        observed: Observed,
    ) -> None:
        try:
            version = check_modern_headers(msg, headers)
        except HeaderMismatch as exc:
            await responder.json(400, encode_error(msg.id, HEADER_MISMATCH, str(exc)))
            return
        if version not in MODERN_VERSIONS:
            await responder.json(400, _unsupported(msg.id, version))
            return
        if msg.kind != "request":
            # Nothing for a modern client to notify or answer: cancellation is closing the stream.
            await responder.empty(202)
            return
        meta = meta_of(msg)
        capabilities = meta.get(META_CLIENT_CAPABILITIES)
        if not isinstance(meta.get(META_PROTOCOL_VERSION), str) or not isinstance(capabilities, dict):
            # Every 2026-07-28 request says which version it speaks and what the client can do.
            missing = "params._meta" if not meta else (
                META_PROTOCOL_VERSION if not isinstance(meta.get(META_PROTOCOL_VERSION), str)
                else META_CLIENT_CAPABILITIES)  # fmt: skip
            await responder.json(400, encode_error(msg.id, INVALID_PARAMS, f"Invalid params: {missing} is required"))
            return
        # No session: the shipping helper derives the key (baggage, or clientInfo).
        observed.record.parsed("modern", version, None)
        call = _call(self.gateway, server, "modern", version, responder, observed, caller)
        call.client_capabilities = capabilities
        call.headers = headers
        call.meta = meta
        await handle_request(call, msg)

    # --- GET: the legacy session's server-initiated stream ----------------------------------------

    async def _get(self, server: VirtualServer, caller: Caller, headers: dict[str, str], responder: Responder) -> None:
        session_id = headers.get(SESSION_ID_HEADER)
        if session_id is None:
            responder.extra_headers.append((b"allow", b"POST"))
            await responder.json(
                405, encode_error(None, INVALID_REQUEST, "GET needs an Mcp-Session-Id (2026-07-28 clients: use POST)")
            )
            return
        if not _accepts(headers.get("accept", ""), "text/event-stream"):
            await responder.json(
                406, encode_error(None, INVALID_REQUEST, "Not Acceptable: Accept must list text/event-stream")
            )
            return
        state = self.gateway.sessions.get(session_id)
        if not _owned(state, server, caller):
            await responder.json(
                404, encode_error(None, SESSION_NOT_FOUND, "Session not found: initialize a new session")
            )
            return
        live = self.gateway.live.get(session_id)
        if live is None:  # opened by another worker or replica: the stream is this process's part
            live = self.gateway.live[session_id] = LiveSession(session_id, state.virtual_server)
        if live.stream is not None:
            await responder.json(
                409, encode_error(None, INVALID_REQUEST, "Conflict: this session already has a GET stream")
            )
            return
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        live.stream = queue
        closed = asyncio.Event()

        async def hang_up() -> None:
            closed.set()
            queue.put_nowait(b"")

        responder.extra_headers.append((b"mcp-session-id", session_id.encode()))
        responder.watch(hang_up)
        try:
            await responder.start_stream()
            while not closed.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                except TimeoutError:
                    await responder.comment()
                    continue
                if not item:
                    break
                await responder.event(item)
        finally:
            if live.stream is queue:
                live.stream = None
            await responder.end()

    async def _delete(
        self, server: VirtualServer, caller: Caller, headers: dict[str, str], responder: Responder
    ) -> None:
        session_id = headers.get(SESSION_ID_HEADER)
        if session_id is None:
            responder.extra_headers.append((b"allow", b"POST"))
            await responder.json(405, encode_error(None, INVALID_REQUEST, "DELETE needs an Mcp-Session-Id"))
            return
        gateway = self.gateway
        state = gateway.sessions.get(session_id)
        if not _owned(state, server, caller):
            await responder.json(404, encode_error(None, SESSION_NOT_FOUND, "Session not found"))
            return
        gateway.sessions.end(state)
        gateway.bus.publish({"t": "ended", "s": session_id, "until": state.expires_at})
        live = gateway.live.pop(session_id, None)
        if live is not None:
            await live.close()
        await gateway.release(session_id)
        await responder.empty(200)


def _owned(state: SessionState | None, server: VirtualServer, caller: Caller) -> TypeGuard[SessionState]:
    """A session this caller may use: it exists, on this virtual server, opened by this subject.
    Anything else is "not found" — another user's session id tells its presenter nothing."""
    return state is not None and state.virtual_server == server.config.path and state.subject == caller.subject


def _call(
    gateway: Gateway,
    server: VirtualServer,
    era: Era,
    version: str,
    responder: Responder,
    observed: Observed,
    caller: Caller,
) -> Call:
    return Call(
        gateway,
        server,
        era,
        version,
        responder,
        observed,
        identity=caller.identity,
        overrides=caller.overrides,
        base_url=caller.base_url,
    )


def _quote(text: str) -> str:
    """A value for a quoted-string auth-param: no quotes, backslashes or line breaks."""
    return text.replace("\\", "/").replace('"', "'").replace("\r", " ").replace("\n", " ")


# `slicewire replay --via` marks its requests with the trace they replay.
REPLAY_OF_HEADER = "x-slicewire-replay-of"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _unsupported(id: Any, requested: str) -> bytes:
    return encode_error(
        id,
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(reversed(ALL_VERSIONS)), "requested": requested},
    )

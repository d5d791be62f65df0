"""Where a replay sends its calls: through a gateway, or straight to the backends.

Both use the gateway's own MCP client (proxy._upstream), so either era, sessions, SSE answers and
server-to-client requests are handled as the gateway handles them.

- `GatewayTarget` (`--via URL`): each call goes to its virtual server on a gateway, by its exposed
  name, with one gateway token: today's slices, aliases and auth are exercised. The gateway records
  the replay as a new trace linked to the original (header `x-slicewire-replay-of`).
- `DirectTarget` (`--config slicewire.yaml`): each call goes to the backend that served it, by the
  backend's own tool name, with the credentials the config gives that backend (none, static or
  client credentials; per-user credentials belong to a user, so those calls go `--via` a gateway).
"""

from __future__ import annotations

import abc
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from proxy._config import BackendConfig, Config
from proxy._creds import Credentials
from proxy._endpoint import REPLAY_OF_HEADER
from proxy._mcp import LATEST_LEGACY
from proxy._upstream import Backend, BackendError, Exchange, Headers, StreamableHTTPBackend, create_backend
from proxy.recording import Record, SpanEmitter

from ._drift import KINDS, Definitions
from ._select import RecordedCall

__all__ = ["DirectTarget", "GatewayTarget", "Reply", "Target", "TargetError", "http_client", "live_caller"]


class TargetError(Exception):
    """The call cannot be sent to this target (the message says why); nothing was sent."""


@dataclass
class Reply:
    message: dict[str, Any]  # {"result": …} or {"error": {…}}
    duration_ns: int


class _Answers:
    """The agent's recorded answers, handed out by method in recorded order."""

    def __init__(self, answers: list[tuple[str, dict[str, Any]]]) -> None:
        self.pending = list(answers)

    def take(self, method: str) -> dict[str, Any] | None:
        for i, (recorded_method, answer) in enumerate(self.pending):
            if recorded_method == method:
                del self.pending[i]
                return answer
        return None


async def _exchange(exchange: Exchange, answers: _Answers) -> dict[str, Any]:
    """The final answer of an exchange. The backend's questions to the agent (elicitation, sampling,
    roots) get the agent's recorded answers; one the recording has no answer for is refused."""
    while True:
        msg = await exchange.next()
        if msg.kind == "result":
            return {"result": msg.result}
        if msg.kind == "error":
            return {"error": msg.error}
        if msg.kind == "request" and msg.id is not None:
            answer = answers.take(msg.method or "")
            if answer is None:
                answer = {"error": {"code": -32601, "message": f"replay: the recording has no answer to {msg.method}"}}
            await exchange.answer(msg.id, answer)


_MAX_INPUT_ROUNDS = 10


def _params(call: RecordedCall, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The request's params: a resource read names a URI; a tool or prompt call a name and arguments."""
    if call.method == "resources/read":
        return {"uri": name}
    return {"name": name, "arguments": arguments}


async def _send(
    backend: Backend,
    method: str,
    params: dict[str, Any],
    headers: Headers | None,
    answers: list[tuple[str, dict[str, Any]]],
) -> Reply:
    """Send one call; a 2026-07-28 InputRequiredResult is answered from the recording and the call
    retried, as the agent did."""
    start = time.perf_counter_ns()
    pending = _Answers(answers)
    try:
        for _ in range(_MAX_INPUT_ROUNDS):
            exchange = await backend.open(method, params, headers)
            message = await _exchange(exchange, pending)
            result = message.get("result")
            if not (isinstance(result, dict) and result.get("resultType") == "input_required"):
                break
            responses = _input_responses(result.get("inputRequests"), pending)
            if responses is None:
                break  # the recording cannot answer: the InputRequiredResult is the outcome
            params = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
            params["inputResponses"] = responses
            if "requestState" in result:
                params["requestState"] = result["requestState"]
    except BackendError as exc:
        message = {"error": {"code": -32000, "message": str(exc)}}
    return Reply(message, time.perf_counter_ns() - start)


def _input_responses(requests: Any, pending: _Answers) -> dict[str, Any] | None:
    if not isinstance(requests, dict) or not requests:
        return None
    responses = {}
    for key, request in requests.items():
        method = request.get("method") if isinstance(request, dict) else None
        answer = pending.take(method) if isinstance(method, str) else None
        if answer is None or "result" not in answer:
            return None
        responses[key] = answer["result"]
    return responses


def _kinds_by(calls: list[RecordedCall], where: Any) -> dict[str, dict[str, RecordedCall]]:
    """Where calls go (a URL, a backend) -> method -> one call of it, for the lists to ask there."""
    found: dict[str, dict[str, RecordedCall]] = {}
    for call in calls:
        found.setdefault(where(call), {}).setdefault(call.method, call)
    return found


class Target(abc.ABC):
    description: str

    async def start(self) -> None:  # noqa: B027 - optional
        """Called once before any call is sent (not for --dry-run)."""

    @abc.abstractmethod
    def check(self, call: RecordedCall) -> None:
        """Raise TargetError if `call` cannot be replayed here (before anything is sent)."""

    @abc.abstractmethod
    def recorded(self, call: RecordedCall) -> tuple[dict[str, Any] | None, int | None]:
        """The recorded answer this target's answer is compared with, and its duration."""

    @abc.abstractmethod
    def request(self, call: RecordedCall, arguments: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC request that would be sent (for --dry-run; secrets are the caller's to mask)."""

    @abc.abstractmethod
    async def definitions(self, calls: list[RecordedCall]) -> Definitions:
        """Today's definitions of what `calls` use: kind (tool, prompt, resource) -> exposed name ->
        definition (for tools, also every other tool their servers list)."""

    @abc.abstractmethod
    async def call(
        self, call: RecordedCall, arguments: dict[str, Any], answers: list[tuple[str, dict[str, Any]]]
    ) -> Reply:
        """Send the call; `answers` are the agent's recorded answers to the backend's questions."""

    @abc.abstractmethod
    async def hook_call(self, tool: str, arguments: dict[str, Any], near: RecordedCall) -> Reply:
        """Call `tool` (an exposed name on `near`'s virtual server) for a setup or teardown hook."""

    async def close(self) -> None:  # noqa: B027 - optional
        pass


_PATH_SAFE = re.compile(r"[^A-Za-z0-9_/.-]")


def http_client(
    url: str, token: str | None, timeout_s: float, name: str, version: str = "auto", session: str | None = None
) -> Backend:
    """The gateway's own MCP client for one URL, with a bearer token and the W3C baggage session."""
    config = BackendConfig(path=name, transport="streamable-http", url=url, timeout_s=timeout_s,
                           protocol_version=version)  # fmt: skip
    backend = StreamableHTTPBackend(config)
    shared: Headers = [("authorization", f"Bearer {token}")] if token else []
    if session:
        shared.append(("baggage", f"session.id={session}"))

    async def headers() -> Headers:
        return shared

    backend.shared_headers = headers
    return backend


def live_caller(url: str, token: str | None, timeout_s: float = 60.0) -> Any:
    """`slicewire mock --pass-through`: a function sending a call to `url` and returning its answer."""
    backend: Backend | None = None

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        nonlocal backend
        if backend is None:  # made in the server's event loop, on first use
            backend = http_client(url, token, timeout_s, "/pass-through")
        params = {k: v for k, v in params.items() if k != "_meta"}
        return (await _send(backend, method, params, None, [])).message

    return call


class GatewayTarget(Target):
    """Calls go to `<via><virtual server>/mcp` (or to `via` itself when it ends in /mcp)."""

    def __init__(self, via: str, token: str | None, timeout_s: float = 60.0, session: str | None = None) -> None:
        if not via.startswith(("http://", "https://")):
            raise TargetError(f"--via: expected the gateway's http(s) URL, found {via!r}")
        self.via = via.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.session = session  # OTel baggage session.id: the replay's calls form one session
        self.description = f"gateway {self.via}"
        self._backends: dict[str, Backend] = {}

    def url(self, call: RecordedCall) -> str:
        if self.via.endswith("/mcp"):
            return self.via
        return f"{self.via}{call.virtual_server or ''}/mcp"

    def _backend(self, call: RecordedCall) -> Backend:
        """A client of the call's virtual server, speaking the era the call was recorded in."""
        url = self.url(call)
        version = LATEST_LEGACY if call.era == "legacy" else "auto"
        backend = self._backends.get(f"{version} {url}")
        if backend is None:
            name = _PATH_SAFE.sub("-", call.virtual_server or "/gateway")
            backend = http_client(url, self.token, self.timeout_s, name, version, self.session)
            self._backends[f"{version} {url}"] = backend
        return backend

    def check(self, call: RecordedCall) -> None:
        if not call.virtual_server and not self.via.endswith("/mcp"):
            raise TargetError("the recording does not say which virtual server served it: pass --via …/mcp")

    def recorded(self, call: RecordedCall) -> tuple[dict[str, Any] | None, int | None]:
        return call.response, call.duration_ns

    def request(self, call: RecordedCall, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url(call), "method": call.method, "params": _params(call, call.tool, arguments)}

    async def definitions(self, calls: list[RecordedCall]) -> Definitions:
        found: Definitions = {}
        for url, kinds in _kinds_by(calls, self.url).items():
            for method, (kind, list_method, key, name, _) in KINDS.items():
                if method not in kinds:
                    continue
                try:
                    listed = await self._backend(kinds[method]).list_all(list_method, key, name)
                except BackendError as exc:
                    hint = "" if self.token else " (no gateway token: set $SLICEWIRE_TOKEN or pass --token-file FILE)"
                    raise TargetError(f"cannot list the {key} at {url}: {exc.detail}{hint}") from None
                found.setdefault(kind, {}).update({item[name]: item for item in listed})
        return found

    async def call(
        self, call: RecordedCall, arguments: dict[str, Any], answers: list[tuple[str, dict[str, Any]]]
    ) -> Reply:
        headers: Headers = [(REPLAY_OF_HEADER, call.trace_id)]
        params = _params(call, call.tool, arguments)
        return await _send(self._backend(call), call.method, params, headers, answers)

    async def hook_call(self, tool: str, arguments: dict[str, Any], near: RecordedCall) -> Reply:
        return await _send(self._backend(near), "tools/call", {"name": tool, "arguments": arguments}, None, [])

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()


class DirectTarget(Target):
    """Calls go to the backend that served them, named as in the gateway config. When the config has
    a recorder, each replayed call is recorded as a trace linked to the original (`replay_of`)."""

    def __init__(self, config: Config, session: str | None = None) -> None:
        self.config = config
        self.description = "backends directly"
        self.session = session or ""
        self._configs = {b.path: b for b in config.backends}
        self._creds = Credentials(config, None, None)
        self._backends: dict[str, Backend] = {}
        self.emitter: SpanEmitter | None = None

    async def start(self) -> None:
        if self.config.recorder.target is not None:
            self.emitter = SpanEmitter(self.config.recorder)
            await self.emitter.start()
            self._creds.on_secret = self.emitter.add_secret

    def _backend(self, path: str) -> Backend:
        backend = self._backends.get(path)
        if backend is None:
            config = self._configs[path]
            backend = self._backends[path] = create_backend(config)
            backend.shared_headers = self._creds.shared(config)
        return backend

    def check(self, call: RecordedCall) -> None:
        if not call.backend or not call.backend_tool or call.hop_response is None:
            raise TargetError(
                "the recorded call never reached a backend (the gateway answered it): replay it --via a gateway"
            )
        config = self._configs.get(call.backend)
        if config is None:
            raise TargetError(f"backend {call.backend} is not in the config")
        if config.auth.mode != "none" and self._creds.shared(config) is None:
            raise TargetError(
                f"backend {call.backend} takes per-user credentials ({config.auth.mode}): replay --via a gateway"
            )

    def recorded(self, call: RecordedCall) -> tuple[dict[str, Any] | None, int | None]:
        return call.hop_response, call.hop_duration_ns

    def request(self, call: RecordedCall, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"backend": call.backend, "method": call.method,
                "params": _params(call, call.backend_tool or "", arguments)}  # fmt: skip

    async def definitions(self, calls: list[RecordedCall]) -> Definitions:
        """The backends' definitions, shown as the slice showed them: by exposed name, with the
        mapping's description override."""
        found: Definitions = {}
        for path, kinds in _kinds_by([c for c in calls if c.backend in self._configs], lambda c: c.backend).items():
            for method, (kind, list_method, key, name, _) in KINDS.items():
                if method not in kinds:
                    continue
                try:
                    listed = {item[name]: item for item in await self._backend(path).list_all(list_method, key, name)}
                except BackendError as exc:
                    raise TargetError(f"cannot list the {key} of {path}: {exc.detail}") from None
                for call in calls:
                    if call.method == method and call.backend == path and call.backend_tool in listed:
                        shown = {**listed[call.backend_tool], name: call.tool}
                        override = self._override(call)
                        if override is not None:
                            shown["description"] = override
                        found.setdefault(kind, {})[call.tool] = shown
        return found

    def _override(self, call: RecordedCall) -> str | None:
        """The description the call's virtual server gives its tool or prompt instead of the backend's."""
        for vs in self.config.virtual_servers:
            if vs.path == call.virtual_server:
                mappings = vs.tool_mappings if call.method == "tools/call" else vs.prompt_mappings
                for mapping in mappings:
                    if mapping.exposed_name == call.tool and mapping.backend_server_path == call.backend:
                        return mapping.description_override
        return None

    async def call(
        self, call: RecordedCall, arguments: dict[str, Any], answers: list[tuple[str, dict[str, Any]]]
    ) -> Reply:
        assert call.backend is not None
        params = _params(call, call.backend_tool or "", arguments)
        if self.emitter is None:
            return await _send(self._backend(call.backend), call.method, params, None, answers)
        record = self._record(call, arguments)
        backend = self._backend(call.backend)
        hop, context = record.upstream(call.method, call.backend, call.backend_tool or "")
        hop.sent({"jsonrpc": "2.0", "method": call.method, "params": params}, None, backend.peer)
        params["_meta"] = {"traceparent": context}
        reply = await _send(backend, call.method, params, None, answers)
        error = reply.message.get("error")
        failed = (int(error.get("code", -32000)), str(error.get("message"))) if isinstance(error, dict) else None
        hop.answered({"jsonrpc": "2.0", **reply.message}, failed)
        answer = orjson.dumps({"jsonrpc": "2.0", "id": call.index, **reply.message})
        record.answered(answer, call.virtual_server or "", failed)
        self.emitter.emit(record)
        return reply

    async def hook_call(self, tool: str, arguments: dict[str, Any], near: RecordedCall) -> Reply:
        for vs in self.config.virtual_servers:
            if vs.path == near.virtual_server:
                for mapping in vs.tool_mappings:
                    if mapping.exposed_name == tool and mapping.backend_server_path in self._configs:
                        params = {"name": mapping.tool_name, "arguments": arguments}
                        return await _send(self._backend(mapping.backend_server_path), "tools/call", params, None, [])
        raise TargetError(f"{tool} is not a tool of {near.virtual_server} in the config")

    def _record(self, call: RecordedCall, arguments: dict[str, Any]) -> Record:
        """The replayed call as the flight recorder keeps it: marked as a replay of the recorded trace."""
        # The replay's calls form one session, named as a client names its own (W3C baggage).
        record = Record.begin([(b"baggage", f"session.id={self.session}".encode())] if self.session else [])
        request = {"jsonrpc": "2.0", "id": call.index, "method": call.method,
                   "params": _params(call, call.tool, arguments)}  # fmt: skip
        record.received(call.method, call.index, request)
        record.parsed(call.era or "", "", None)
        record.identified("slicewire-replay")
        record.replays(bytes.fromhex(call.trace_id))
        record.sliced(call.tool, call.backend or "", call.backend_tool or "")
        return record

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
        await self._creds.close()
        if self.emitter is not None:
            await self.emitter.close()

"""`slicewire mock`: a recorded session served as an MCP server, for agent tests with no live backends.

The mock is the gateway itself with one backend, a `CassetteBackend`, that answers from the
recording: the virtual server's tool list as the client saw it, each `tools/call` with its recorded
answer, and the prompts got and resources read in the session (listed by name and URI, answered as
recorded). So both protocol eras, sessions, `server/discover` and the error shapes are the gateway's own.

Matching: a call matches a recorded call of the same method with the same tool or prompt name (or
URI) and the same arguments (`_meta` and JSON-RPC ids never take part; a recorded `[REDACTED]`
matches any value). Identical calls are
answered in recorded order; once all are used, the last is answered again. A call that matches
nothing gets a JSON-RPC error naming the closest recorded call and the first path where they
differ — never a guess. With `strict`, calls must come in the recorded order.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from proxy._config import (
    BackendConfig,
    Config,
    ListenConfig,
    PromptMapping,
    ResourceMapping,
    ToolMapping,
    VirtualServerConfig,
)
from proxy._jsonrpc import Message, parse_object
from proxy._mcp import LATEST_MODERN
from proxy._upstream import Backend, Exchange, Headers, ServerIdentity
from proxy.recording._redact import MARKER

from ._diff import Change, Rules, diff
from ._select import RecordedCall

__all__ = ["NOT_RECORDED", "Cassette", "CassetteBackend", "mock_config"]

# JSON-RPC server error (implementation-defined range): the request is not in the recording.
NOT_RECORDED = -32011
CASSETTE_PATH = "/recording"
_EXACT = Rules(ignore_meta=True, volatile=False)


@dataclass
class _Entry:
    call: RecordedCall
    answer: dict[str, Any]  # {"result": …} or {"error": …}
    used: bool = False


def _wildcards(recorded: Any, sent: Any) -> bool:
    """Whether `sent` matches `recorded`, a recorded redaction marker matching any value."""
    if isinstance(recorded, str) and MARKER in recorded:
        if recorded == MARKER:
            return True
        pattern = ".*".join(re.escape(part) for part in recorded.split(MARKER))
        return isinstance(sent, str) and re.fullmatch(pattern, sent, re.DOTALL) is not None
    if isinstance(recorded, dict) and isinstance(sent, dict):
        return recorded.keys() == sent.keys() and all(_wildcards(recorded[k], sent[k]) for k in recorded)
    if isinstance(recorded, list) and isinstance(sent, list):
        return len(recorded) == len(sent) and all(_wildcards(r, s) for r, s in zip(recorded, sent, strict=True))
    return recorded == sent and type(recorded) is type(sent)


def _changes(recorded: Any, sent: Any) -> list[Change]:
    """Where `sent` differs from `recorded`, leaving out values a recorded marker stands for."""
    return [c for c in diff(recorded, sent, _EXACT) if not (isinstance(c.old, str) and _wildcards(c.old, c.new))]


def _jsonable(value: Any) -> Any:
    return None if repr(value) == "(absent)" else value


class Cassette:
    """The recorded calls and their answers, consumed as the agent calls."""

    def __init__(self, calls: list[RecordedCall], tools: list[dict[str, Any]], strict: bool = False) -> None:
        self.tools = tools
        self.strict = strict
        listed = {t["name"] for t in tools}
        # Calls the gateway refused (a tool outside the slice, a prompt or URI it did not serve) never
        # reached a backend: not expected here.
        self.entries = [
            _Entry(c, _answer(c))
            for c in calls
            if (c.tool in listed if c.method == "tools/call" else c.backend is not None)
            and c.response is not None
            and c.arguments is not None
        ]
        self.prompts = sorted({e.call.tool for e in self.entries if e.call.method == "prompts/get"})
        self.resources = sorted({e.call.tool for e in self.entries if e.call.method == "resources/read"})
        self.position = 0  # strict: the next expected entry

    def answer(self, tool: str, arguments: dict[str, Any], method: str = "tools/call") -> dict[str, Any]:
        """The recorded answer to `method` naming `tool` (a tool, a prompt, a URI) with `arguments`."""
        if self.strict:
            return self._next_in_order(tool, arguments, method)
        matching = [
            e for e in self.entries
            if e.call.method == method and e.call.tool == tool and _wildcards(e.call.arguments, arguments)
        ]  # fmt: skip
        if not matching:
            return self._unmatched(tool, arguments, method)
        entry = next((e for e in matching if not e.used), matching[-1])
        entry.used = True
        return entry.answer

    def _next_in_order(self, tool: str, arguments: dict[str, Any], method: str) -> dict[str, Any]:
        if self.position >= len(self.entries):
            return _error(
                f"Not in the recording: it has {len(self.entries)} calls and all were made (--strict)",
                {"sent": {"method": method, "tool": tool, "arguments": arguments}},
            )
        entry = self.entries[self.position]
        if entry.call.method == method and entry.call.tool == tool and _wildcards(entry.call.arguments, arguments):
            self.position += 1
            return entry.answer
        return self._mismatch(entry, tool, arguments, "expected next (--strict)", method)

    def _unmatched(self, tool: str, arguments: dict[str, Any], method: str) -> dict[str, Any]:
        same_tool = [e for e in self.entries if e.call.method == method and e.call.tool == tool]
        if not same_tool:
            called = sorted({e.call.tool for e in self.entries if e.call.method == method})
            return _error(
                f"Not in the recording: {method} {tool} was never made in it (recorded: {', '.join(called) or 'none'})",
                {"sent": {"method": method, "tool": tool, "arguments": arguments}},
            )
        closest = min(same_tool, key=lambda e: len(_changes(e.call.arguments, arguments)))
        return self._mismatch(closest, tool, arguments, "closest recorded call", method)

    def _mismatch(self, entry: _Entry, tool: str, arguments: dict[str, Any], what: str, method: str) -> dict[str, Any]:
        call = entry.call
        changes: list[Change] = []
        if call.method != method:
            where = f"the method: {call.method} recorded, {method} sent"
        elif call.tool != tool:
            where = f"the tool: {call.tool} recorded, {tool} sent"
        else:
            changes = _changes({"arguments": call.arguments}, {"arguments": arguments})
            first = changes[0] if changes else None
            where = (
                f"{first.path}: {_show(first.old)} recorded, {_show(first.new)} sent" if first else "nothing visible"
            )
        return _error(
            f"Not in the recording: {method} {tool}; {what} #{call.index} {call.tool} differs at {where}",
            {
                what.split(" (")[0].replace(" ", "_"): {"index": call.index, "tool": call.tool,
                                                       "arguments": call.arguments, "trace_id": call.trace_id},
                "differences": [{"path": c.path, "recorded": _jsonable(c.old), "sent": _jsonable(c.new)}
                                for c in changes],
            },
        )  # fmt: skip


def _show(value: Any) -> str:
    if repr(value) == "(absent)":
        return "(absent)"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:59] + "…"


def _error(message: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": NOT_RECORDED, "message": message, "data": data}}


def _answer(call: RecordedCall) -> dict[str, Any]:
    response = call.response or {}
    if "error" in response:
        return {"error": response["error"]}
    result = dict(response.get("result") or {})
    meta = result.get("_meta")
    if isinstance(meta, dict):  # the gateway stamps its own server info again
        meta = {k: v for k, v in meta.items() if not k.startswith("io.modelcontextprotocol/")}
        result["_meta"] = meta
        if not meta:
            del result["_meta"]
    result.pop("resultType", None)
    return {"result": result}


class CassetteBackend(Backend):
    """A backend whose answers come from a Cassette; no process, no network."""

    def __init__(self, config: BackendConfig, cassette: Cassette, server_info: dict[str, Any]) -> None:
        super().__init__(config)
        self.cassette = cassette
        self.server_info = server_info

    async def connect(self) -> ServerIdentity:
        if self.identity is None:
            capabilities: dict[str, Any] = {"tools": {}}
            if self.cassette.prompts:
                capabilities["prompts"] = {}
            if self.cassette.resources:
                capabilities["resources"] = {}
            self.identity = ServerIdentity("modern", LATEST_MODERN, self.server_info, capabilities)
            self.on_connected(self)
        return self.identity

    async def _connect_transport(self) -> None:
        pass

    async def _notify_raw(self, method: str, params: dict[str, Any] | None, era: str) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def _open_raw(
        self, method: str, params: dict[str, Any] | None, era: str, headers: Headers | None = None
    ) -> Exchange:
        params = params or {}
        upstream_id = self._ids.next()
        if method == "tools/list":
            body: dict[str, Any] = {"result": {"tools": self.cassette.tools}}
        elif method == "tools/call" or method == "prompts/get":
            arguments = params.get("arguments")
            arguments = arguments if isinstance(arguments, dict) else {}
            body = self.cassette.answer(str(params.get("name")), arguments, method)
        elif method == "resources/read":
            body = self.cassette.answer(str(params.get("uri")), {}, method)
        elif method == "prompts/list":  # the recording has the prompts' names, not their argument lists
            body = {"result": {"prompts": [{"name": name} for name in self.cassette.prompts]}}
        elif method == "resources/list":
            body = {"result": {"resources": [{"uri": uri, "name": uri} for uri in self.cassette.resources]}}
        elif method in ("resources/templates/list",):
            body = {"result": {"resourceTemplates": []}}
        elif method == "ping":
            body = {"result": {}}
        else:
            body = {"error": {"code": -32601, "message": f"Method not found: the recording does not serve {method}"}}
        message = parse_object({"jsonrpc": "2.0", "id": upstream_id, **body})

        async def source() -> AsyncIterator[Message]:
            yield message

        async def nothing(*args: Any) -> None:
            pass

        return Exchange(self.path, upstream_id, self.config.timeout_s, source(), nothing, nothing)


def mock_config(
    virtual_server: str,
    server_name: str,
    tools: list[dict[str, Any]],
    host: str,
    port: int,
    prompts: list[str] | None = None,
    resources: list[str] | None = None,
) -> Config:
    """A gateway config serving `tools`, and the recorded `prompts` and `resources` (names, URIs), from
    the cassette at `<virtual_server>/mcp`, open to all."""
    return Config(
        listen=ListenConfig(host=host, port=port),
        backends=[BackendConfig(path=CASSETTE_PATH, transport="streamable-http", url="http://recording.invalid/")],
        virtual_servers=[
            VirtualServerConfig(
                path=virtual_server,
                server_name=server_name,
                public=True,
                tool_mappings=[ToolMapping(tool_name=t["name"], backend_server_path=CASSETTE_PATH) for t in tools],
                prompt_mappings=[
                    PromptMapping(prompt_name=p, backend_server_path=CASSETTE_PATH) for p in prompts or ()
                ],
                resource_mappings=[
                    ResourceMapping(uri=uri, backend_server_path=CASSETTE_PATH) for uri in resources or ()
                ],
            )
        ],
    )

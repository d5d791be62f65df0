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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
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

from ._diff import Change, PathStep, Rules, diff
from ._select import RecordedCall

__all__ = ["NOT_RECORDED", "Cassette", "CassetteBackend", "CassetteError", "Entry", "mock_config"]

# A live server's answer to a request ({"result": …} or {"error": …}), for --pass-through.
Live = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

# JSON-RPC server error (implementation-defined range): the request is not in the recording.
NOT_RECORDED = -32011
CASSETTE_PATH = "/recording"
_EXACT = Rules(ignore_meta=True, volatile=False)


@dataclass
class Entry:
    """One recorded call a cassette can answer: what was asked and what was answered."""

    index: int  # the call's position in the recorded session
    method: str  # tools/call, prompts/get, resources/read
    name: str  # the tool or prompt name, or the URI, as the agent sent it
    arguments: dict[str, Any]
    answer: dict[str, Any]  # {"result": …} or {"error": …}
    trace_id: str = ""  # "" for an answer fetched by --pass-through
    used: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "method": self.method, "name": self.name, "arguments": self.arguments,
                "answer": self.answer, "trace_id": self.trace_id}  # fmt: skip


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


def _pruned(value: Any, rules: Rules, path: list[PathStep]) -> Any:
    """`value` without the parts at paths the rules ignore (the arguments a cassette does not match on)."""
    if isinstance(value, dict):
        return {k: _pruned(v, rules, [*path, k]) for k, v in value.items() if not rules.ignored([*path, k])}
    if isinstance(value, list):
        return [_pruned(v, rules, [*path, i]) for i, v in enumerate(value) if not rules.ignored([*path, i])]
    return value


class CassetteError(Exception):
    """A cassette file cannot be read or written; the message says which and why."""


CASSETTE_FORMAT = 1


class Cassette:
    """The recorded calls and their answers, consumed as the agent calls. `ignore`: argument paths
    (`$.request_id`, `$..timestamp`) that take no part in matching."""

    def __init__(
        self,
        entries: list[Entry],
        tools: list[dict[str, Any]],
        strict: bool = False,
        ignore: list[str] | None = None,
        about: dict[str, Any] | None = None,
    ) -> None:
        self.entries = entries
        self.tools = tools
        self.strict = strict
        self.about = about or {}  # session, virtual_server, server_info: what a cassette file keeps
        self.match_rules = Rules.default().with_ignored(ignore or [])
        self.position = 0  # strict: the next expected entry

    @classmethod
    def from_calls(
        cls, calls: list[RecordedCall], tools: list[dict[str, Any]], strict: bool = False, **kwargs: Any
    ) -> Cassette:
        listed = {t["name"] for t in tools}
        # Calls the gateway refused (a tool outside the slice, a prompt or URI it did not serve) never
        # reached a backend: not expected here.
        entries = [
            Entry(c.index, c.method, c.tool, c.arguments, _answer(c), c.trace_id)
            for c in calls
            if (c.tool in listed if c.method == "tools/call" else c.backend is not None)
            and c.response is not None
            and c.arguments is not None
        ]
        return cls(entries, tools, strict, **kwargs)

    @classmethod
    def load(cls, path: Path, strict: bool = False, ignore: list[str] | None = None) -> Cassette:
        """A cassette file (`slicewire cassette` writes them)."""
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise CassetteError(f"{path}: {exc.strerror or exc}") from None
        except orjson.JSONDecodeError as exc:
            raise CassetteError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("slicewire_cassette") != CASSETTE_FORMAT:
            raise CassetteError(f"{path}: not a slicewire cassette (format {CASSETTE_FORMAT})")
        try:
            entries = [Entry(int(c["index"]), str(c["method"]), str(c["name"]), dict(c["arguments"]),
                             dict(c["answer"]), str(c.get("trace_id", ""))) for c in data["calls"]]  # fmt: skip
            tools = [dict(t) for t in data["tools"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CassetteError(f"{path}: a call or tool is malformed ({exc})") from None
        about = {k: data.get(k) for k in ("session", "virtual_server", "server_info")}
        return cls(entries, tools, strict, ignore, about)

    def save(self, path: Path) -> None:
        """Write the cassette file (atomically: a reader never sees half of it)."""
        data = {"slicewire_cassette": CASSETTE_FORMAT, **self.about, "tools": self.tools,
                "calls": [e.as_dict() for e in self.entries]}  # fmt: skip
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            partial.replace(path)
        except OSError as exc:
            raise CassetteError(f"{path}: {exc.strerror or exc}") from None

    @property
    def prompts(self) -> list[str]:
        return sorted({e.name for e in self.entries if e.method == "prompts/get"})

    @property
    def resources(self) -> list[str]:
        return sorted({e.name for e in self.entries if e.method == "resources/read"})

    def _matches(self, entry: Entry, method: str, name: str, arguments: dict[str, Any]) -> bool:
        if entry.method != method or entry.name != name:
            return False
        if self.match_rules.ignore:
            return _wildcards(_pruned(entry.arguments, self.match_rules, []), _pruned(arguments, self.match_rules, []))
        return _wildcards(entry.arguments, arguments)

    def answer(self, tool: str, arguments: dict[str, Any], method: str = "tools/call") -> dict[str, Any]:
        """The recorded answer to `method` naming `tool` (a tool, a prompt, a URI) with `arguments`."""
        if self.strict:
            return self._next_in_order(tool, arguments, method)
        matching = [e for e in self.entries if self._matches(e, method, tool, arguments)]
        if not matching:
            return self._unmatched(tool, arguments, method)
        entry = next((e for e in matching if not e.used), matching[-1])
        entry.used = True
        return entry.answer

    def add(self, method: str, name: str, arguments: dict[str, Any], answer: dict[str, Any]) -> None:
        """An answer fetched live (--pass-through), kept as if recorded."""
        self.entries.append(Entry(len(self.entries) + 1, method, name, arguments, answer, used=True))

    def _next_in_order(self, tool: str, arguments: dict[str, Any], method: str) -> dict[str, Any]:
        if self.position >= len(self.entries):
            return _error(
                f"Not in the recording: it has {len(self.entries)} calls and all were made (--strict)",
                {"sent": {"method": method, "tool": tool, "arguments": arguments}},
            )
        entry = self.entries[self.position]
        if self._matches(entry, method, tool, arguments):
            self.position += 1
            return entry.answer
        return self._mismatch(entry, tool, arguments, "expected next (--strict)", method)

    def _unmatched(self, tool: str, arguments: dict[str, Any], method: str) -> dict[str, Any]:
        same_tool = [e for e in self.entries if e.method == method and e.name == tool]
        if not same_tool:
            called = sorted({e.name for e in self.entries if e.method == method})
            return _error(
                f"Not in the recording: {method} {tool} was never made in it (recorded: {', '.join(called) or 'none'})",
                {"sent": {"method": method, "tool": tool, "arguments": arguments}},
            )
        closest = min(same_tool, key=lambda e: len(self._differences(e, arguments)))
        return self._mismatch(closest, tool, arguments, "closest recorded call", method)

    def _differences(self, entry: Entry, arguments: dict[str, Any]) -> list[Change]:
        recorded, sent = _pruned(entry.arguments, self.match_rules, []), _pruned(arguments, self.match_rules, [])
        return _changes({"arguments": recorded}, {"arguments": sent})

    def _mismatch(self, entry: Entry, tool: str, arguments: dict[str, Any], what: str, method: str) -> dict[str, Any]:
        changes: list[Change] = []
        if entry.method != method:
            where = f"the method: {entry.method} recorded, {method} sent"
        elif entry.name != tool:
            where = f"the tool: {entry.name} recorded, {tool} sent"
        else:
            changes = self._differences(entry, arguments)
            first = changes[0] if changes else None
            where = (
                f"{first.path}: {_show(first.old)} recorded, {_show(first.new)} sent" if first else "nothing visible"
            )
        return _error(
            f"Not in the recording: {method} {tool}; {what} #{entry.index} {entry.name} differs at {where}",
            {
                what.split(" (")[0].replace(" ", "_"): {"index": entry.index, "tool": entry.name,
                                                       "arguments": entry.arguments, "trace_id": entry.trace_id},
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

    def __init__(
        self,
        config: BackendConfig,
        cassette: Cassette,
        server_info: dict[str, Any],
        live: Live | None = None,
        save_to: Path | None = None,
    ) -> None:
        super().__init__(config)
        self.cassette = cassette
        self.server_info = server_info
        self.live = live  # --pass-through: where a call not in the cassette goes
        self.save_to = save_to  # the cassette file that answers fetched live are added to

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
        elif method in ("tools/call", "prompts/get", "resources/read"):
            body = await self._answer(method, params)
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

    async def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        arguments = params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else {}
        name = str(params.get("uri" if method == "resources/read" else "name"))
        if method == "resources/read":
            arguments = {}
        body = self.cassette.answer(name, arguments, method)
        if self.live is None or (body.get("error") or {}).get("code") != NOT_RECORDED:
            return body
        body = await self.live(method, params)
        self.cassette.add(method, name, arguments, body)
        if self.save_to is not None:
            self.cassette.save(self.save_to)
        return body


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

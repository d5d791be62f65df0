"""A FastMCP server with the fixtures of the official MCP conformance suite's server scenarios.

    python -m tests.support.conformance_backend --port 9100

The suite (npm `@modelcontextprotocol/conformance`) connects to a server as a client and checks what it
answers: tools named `test_*`, resources under `test://`, prompts `test_*_prompt`, logging, completion
and the 2026-07-28 multi round-trip (input required) fixtures. `tests/test_conformance.py` runs the suite
against this server directly and through a Slicewire virtual server in front of it; every scenario that
passes directly must pass through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import fastmcp
import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Message
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.tasks import TaskConfig
from fastmcp_tasks import TasksExtension
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import TypeAdapter

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

_STATE_KEY = secrets.token_bytes(32)  # signs requestState (a tampered one is refused)

_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


_BLOCK: TypeAdapter[Any] = TypeAdapter(mcp_types.ContentBlock)


def _content(*blocks: dict[str, Any], is_error: bool = False) -> ToolResult:
    return ToolResult(content=[_BLOCK.validate_python(b) for b in blocks], is_error=is_error)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _form(message: str, properties: dict[str, Any], required: list[str]) -> mcp_types.ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": required}
    return mcp_types.ElicitRequest(params=mcp_types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _answer(ctx: Context, key: str) -> dict[str, Any] | None:
    """A client's answer to one of our input requests, as plain JSON."""
    response = (ctx.input_responses or {}).get(key)
    if response is None:
        return None
    if hasattr(response, "model_dump"):
        return response.model_dump(mode="json", by_alias=True, exclude_none=True)
    return response if isinstance(response, dict) else None


def _modern(ctx: Context) -> bool:
    """A 2026-07-28 caller: no back channel, so input is asked for in the result (MRTR)."""
    context = ctx.request_context
    return context is not None and context.protocol_version == "2026-07-28"


def build() -> FastMCP:
    # Schemas as written: the suite checks that $defs and $ref reach the client (SEP-1613).
    mcp = FastMCP("mcp-conformance-test-server", version="1.0.0", dereference_schemas=False)

    # --- tools -------------------------------------------------------------------------------------

    @mcp.tool(description="Tests simple text content response")
    def test_simple_text() -> ToolResult:
        return _content(_text("This is a simple text response for testing."))

    @mcp.tool(description="Tests image content response")
    def test_image_content() -> ToolResult:
        return _content({"type": "image", "data": PNG, "mimeType": "image/png"})

    @mcp.tool(description="Tests audio content response")
    def test_audio_content() -> ToolResult:
        return _content({"type": "audio", "data": WAV, "mimeType": "audio/wav"})

    @mcp.tool(description="Tests embedded resource content response")
    def test_embedded_resource() -> ToolResult:
        resource = {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        }
        return _content({"type": "resource", "resource": resource})

    @mcp.tool(description="Tests response with multiple content types (text, image, resource)")
    def test_multiple_content_types() -> ToolResult:
        resource = {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                    "text": json.dumps({"test": "data", "value": 123})}  # fmt: skip
        return _content(
            _text("Multiple content types test:"),
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": resource},
        )

    @mcp.tool(description="Tests tool that emits log messages during execution")
    async def test_tool_with_logging(ctx: Context) -> ToolResult:
        for step in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(step)
        return _content(_text("Tool with logging executed successfully"))

    @mcp.tool(description="Logs at info; a 2026-07-28 request that names no logLevel gets no log messages")
    async def test_logging_tool(ctx: Context) -> ToolResult:
        await ctx.info("test_logging_tool ran")
        return _content(_text("Logged one message"))

    @mcp.tool(description="Asks for a name while the call's response stream is open")
    async def test_streaming_elicitation(ctx: Context) -> Any:
        properties = {"name": {"type": "string", "description": "Your name"}}
        return await _elicit(ctx, "Elicitation completed", "What is your name?", properties, ["name"])

    @mcp.tool(description="Tests tool that reports progress notifications")
    async def test_tool_with_progress(ctx: Context) -> ToolResult:
        for step in (0, 50, 100):
            await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        return _content(_text("Progress complete"))

    @mcp.tool(description="Tests error response handling")
    def test_error_handling() -> ToolResult:
        return _content(_text("This tool intentionally returns an error for testing"), is_error=True)

    @mcp.tool(description="Tests server-initiated sampling (LLM completion request)")
    async def test_sampling(ctx: Context, prompt: str) -> Any:
        if _modern(ctx):
            answer = _answer(ctx, "sample")
            if answer is None:
                return _input_required({"sample": _sampling(prompt)})
            return _content(_text(f"LLM response: {(answer.get('content') or {}).get('text', 'No response')}"))
        request = _sampling(prompt)
        result = await ctx.session.create_message(
            request.params.messages, max_tokens=100, related_request_id=ctx.request_id
        )
        return _content(_text(f"LLM response: {getattr(result.content, 'text', None) or 'No response'}"))

    @mcp.tool(description="Tests server-initiated elicitation (user input request)")
    async def test_elicitation(ctx: Context, message: str) -> Any:
        properties = {"response": {"type": "string", "description": "User's response"}}
        return await _elicit(ctx, "User response", message, properties, ["response"])

    @mcp.tool(description="Tests elicitation with default values per SEP-1034")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> Any:
        properties = {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
                       "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        }  # fmt: skip
        return await _elicit(
            ctx, "Elicitation completed", "Please review and update the form fields with defaults", properties, []
        )

    @mcp.tool(description="Tests elicitation with enum schema improvements per SEP-1330")
    async def test_elicitation_sep1330_enums(ctx: Context) -> Any:
        titled = [{"const": f"value{i}", "title": t} for i, t in ((1, "First Option"), (2, "Second Option"),
                                                                    (3, "Third Option"))]  # fmt: skip
        choices = [{"const": f"value{i}", "title": t} for i, t in ((1, "First Choice"), (2, "Second Choice"),
                                                                     (3, "Third Choice"))]  # fmt: skip
        options = ["option1", "option2", "option3"]
        properties = {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
            "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": titled},
            "legacyEnum": {"type": "string", "description": "Select one option (legacy)",
                           "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                              "items": {"type": "string", "enum": options}},
            "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1,
                            "maxItems": 3, "items": {"anyOf": choices}},
        }  # fmt: skip
        return await _elicit(ctx, "Elicitation completed", "Please select options from the enum fields", properties, [])

    def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> ToolResult:
        return _content(
            _text(f"JSON Schema 2020-12 tool called with: {json.dumps({'name': name, 'address': address})}")
        )

    # The suite checks that $schema, $defs and additionalProperties reach the client unchanged.
    tool = Tool.from_function(
        json_schema_2020_12_tool,
        description="Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
    )
    mcp.add_tool(tool.model_copy(update={"parameters": _SCHEMA_2020_12}))

    def test_header_param(region: str) -> ToolResult:
        return _content(_text(f"region={region}"))

    # SEP-2243: the argument is mirrored into an Mcp-Param-Region header, which servers validate.
    schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
              "required": ["region"]}  # fmt: skip
    tool = Tool.from_function(test_header_param, description="Mirrors its region argument into Mcp-Param-Region")
    mcp.add_tool(tool.model_copy(update={"parameters": schema}))

    # --- 2026-07-28 multi round-trip fixtures ------------------------------------------------------

    # Each asks in the era's way (`_ask`): in a 2026-07-28 call the question goes back in an
    # InputRequiredResult and the answer comes with the retry; in a 2025-11-25 session it is a request
    # to the client during the call (a gateway in front turns those into InputRequiredResults).

    @mcp.tool(description="MRTR: asks for the caller's name with an elicitation input request")
    async def test_input_required_result_elicitation(ctx: Context) -> Any:
        ask = _form("What is your name?", {"name": {"type": "string"}}, ["name"])
        answer = await _ask(ctx, "user_name", ask)
        if answer is None:
            return _input_required({"user_name": ask})
        return _content(_text(f"Hello, {(answer.get('content') or {}).get('name', 'unknown')}!"))

    @mcp.tool(description="MRTR: asks for a sampling completion")
    async def test_input_required_result_sampling(ctx: Context) -> Any:
        ask = _sampling("What is the capital of France?")
        answer = await _ask(ctx, "sample_request", ask)
        if answer is None:
            return _input_required({"sample_request": ask})
        return _content(_text(f"Sampling result: {(answer.get('content') or {}).get('text', '')}"))

    @mcp.tool(description="MRTR: asks for the client's roots")
    async def test_input_required_result_list_roots(ctx: Context) -> Any:
        ask = mcp_types.ListRootsRequest()
        answer = await _ask(ctx, "roots_request", ask)
        if answer is None:
            return _input_required({"roots_request": ask})
        return _content(_text(f"Found {len(answer.get('roots') or [])} root(s)"))

    @mcp.tool(description="MRTR: asks for a confirmation and round-trips an opaque requestState")
    async def test_input_required_result_request_state(ctx: Context) -> Any:
        ask = _form("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        answer = await _ask(ctx, "confirm", ask)
        if answer is None or (_modern(ctx) and ctx.request_state != "round-1"):
            return _input_required({"confirm": ask}, "round-1")
        return _content(_text("state-ok: the requestState came back"))

    @mcp.tool(description="MRTR: asks for an elicitation, a sampling and the roots at once")
    async def test_input_required_result_multiple_inputs(ctx: Context) -> Any:
        asks = {
            "user_name": _form("What is your name?", {"name": {"type": "string"}}, ["name"]),
            "greeting": _sampling("Generate a greeting", max_tokens=50),
            "client_roots": mcp_types.ListRootsRequest(),
        }
        answers = [await _ask(ctx, key, ask) for key, ask in asks.items()]
        if any(answer is None for answer in answers):
            return _input_required(dict(asks), "multiple")
        return _content(_text("All three inputs received"))

    @mcp.tool(description="MRTR: two rounds of questions, the requestState evolving")
    async def test_input_required_result_multi_round(ctx: Context) -> Any:
        first = _form("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        second = _form("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
        if not _modern(ctx):
            await _ask(ctx, "step1", first)
            color = ((await _ask(ctx, "step2", second)) or {}).get("content", {}).get("color")
            return _content(_text(f"Done: favorite color {color}"))
        if ctx.request_state == "round-2" and _answer(ctx, "step2") is not None:
            color = (_answer(ctx, "step2") or {}).get("content", {}).get("color")
            return _content(_text(f"Done: favorite color {color}"))
        if ctx.request_state == "round-1" and _answer(ctx, "step1") is not None:
            return _input_required({"step2": second}, "round-2")
        return _input_required({"step1": first}, "round-1")

    @mcp.tool(description="MRTR: a signed requestState; a tampered one is refused")
    async def test_input_required_result_tampered_state(ctx: Context) -> Any:
        ask = _form("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        if not _modern(ctx):  # the requestState is the gateway's, and the gateway checks it
            await _ask(ctx, "confirm", ask)
            return _content(_text("state verified"))
        state = ctx.request_state
        if state is None:
            return _input_required({"confirm": ask}, _signed("tampered-check"))
        if state != _signed("tampered-check"):
            raise MCPError(-32602, "requestState failed its integrity check")
        return _content(_text("state verified"))

    @mcp.tool(description="MRTR: asks only for what the client declared it can answer")
    async def test_input_required_result_capabilities(ctx: Context) -> Any:
        declared = _client_capabilities(ctx)
        if ctx.input_responses:
            return _content(_text("Inputs received"))
        requests: dict[str, Any] = {}
        if "sampling" in declared:
            requests["sample"] = _sampling("What is the capital of France?")
        if "elicitation" in declared:
            requests["form"] = _form("What is your name?", {"name": {"type": "string"}}, ["name"])
        if not requests:
            return _content(_text("The client declared neither sampling nor elicitation"))
        if not _modern(ctx):
            for key, ask in requests.items():
                await _ask(ctx, key, ask)
            return _content(_text("Inputs received"))
        return _input_required(requests)

    @mcp.tool(description="Needs the sampling capability: refused (-32021) when the client did not declare it")
    def test_missing_capability(ctx: Context) -> ToolResult:
        if "sampling" not in _client_capabilities(ctx):
            needed = {"requiredCapabilities": {"sampling": {}}}
            raise MCPError(-32021, "Missing required client capability: sampling", needed)
        return _content(_text("The client declared sampling"))

    _tasks(mcp)

    # --- resources ---------------------------------------------------------------------------------

    @mcp.resource("test://static-text", name="static-text", title="Static Text Resource", mime_type="text/plain",
                  description="A static text resource for testing")  # fmt: skip
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", name="static-binary", title="Static Binary Resource", mime_type="image/png",
                  description="A static binary resource (image) for testing")  # fmt: skip
    def static_binary() -> bytes:
        return base64.b64decode(PNG)

    @mcp.resource("test://template/{id}/data", name="template", title="Resource Template", mime_type="application/json",
                  description="A resource template with parameter substitution")  # fmt: skip
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource", name="watched-resource", title="Watched Resource",
                  mime_type="text/plain", description="A resource clients can subscribe to")  # fmt: skip
    def watched() -> str:
        return "Watched resource content"

    subscribed: set[str] = set()

    async def subscribe(ctx: Any, params: mcp_types.SubscribeRequestParams) -> mcp_types.EmptyResult:
        subscribed.add(str(params.uri))
        return mcp_types.EmptyResult()

    async def unsubscribe(ctx: Any, params: mcp_types.UnsubscribeRequestParams) -> mcp_types.EmptyResult:
        subscribed.discard(str(params.uri))
        return mcp_types.EmptyResult()

    low = mcp._mcp_server
    low.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, unsubscribe)

    # --- prompts -----------------------------------------------------------------------------------

    @mcp.prompt(title="Simple Test Prompt", description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @mcp.prompt(title="Prompt With Arguments", description="A prompt with required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @mcp.prompt(title="Prompt With Embedded Resource", description="A prompt that includes an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        resource = mcp_types.TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            Message(mcp_types.EmbeddedResource(type="resource", resource=resource)),
            Message("Please process the embedded resource above."),
        ]

    @mcp.prompt(title="Prompt With Image", description="A prompt that includes image content")
    def test_prompt_with_image() -> list[Message]:
        return [
            Message(mcp_types.ImageContent(type="image", data=PNG, mime_type="image/png")),
            Message("Please analyze the image above."),
        ]

    @mcp.completion
    def complete(ref: Any, argument: mcp_types.CompletionArgument, context: Any) -> list[str]:
        if argument.name == "arg1":
            return [v for v in ("paris", "park", "parse") if v.startswith(argument.value)]
        return []

    @mcp.prompt(description="MRTR on prompts/get: asks for context before rendering")
    async def test_input_required_result_prompt(ctx: Context) -> Any:
        ask = _form("What context should the prompt use?", {"context": {"type": "string"}}, ["context"])
        answer = await _ask(ctx, "user_context", ask)
        if answer is None:
            return _input_required({"user_context": ask})
        return f"Prompt with context: {(answer.get('content') or {}).get('context', '')}"

    return mcp


class _Tasks(TasksExtension):
    """fastmcp-tasks' SEP-2663 extension (2026-07-28 callers only), with the MRTR → task composition
    the suite expects of `test_tool_with_task`: its first round asks in the result (no task yet);
    the round that brings the answer becomes a task."""

    async def intercept_tool_call(self, params: Any, context: Context, call_next: Any) -> Any:
        if params.name == "test_tool_with_task":
            answer = _answer(context, "user_name")
            if answer is None:
                return await call_next()
            # The task's own run has no inputResponses: it gets the name as an argument.
            params.arguments = {**(params.arguments or {}), "user_name": (answer.get("content") or {}).get("name")}
        return await super().intercept_tool_call(params, context, call_next)


def _tasks(mcp: FastMCP) -> None:
    """The tasks extension's fixtures (SEP-2663 scenarios of the 2026-07-28 suite)."""
    mcp.add_extension(_Tasks())

    @mcp.tool(description="Sync only: greets")
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @mcp.tool(description="A task: sleeps `seconds`, then answers", task=True)
    async def slow_compute(seconds: float = 1, label: str = "") -> str:
        await asyncio.sleep(seconds)
        return f"computed {label} after {seconds}s"

    @mcp.tool(description="A task (required) that ends in a tool error", task=TaskConfig(mode="required"))
    async def failing_job() -> str:
        await asyncio.sleep(0.5)
        raise ToolError("failing_job failed, as it always does")

    @mcp.tool(description="A task whose execution breaks (a protocol error)", task=True)
    async def protocol_error_job() -> str:
        await asyncio.sleep(0.2)
        raise MCPError(-32603, "protocol_error_job: internal failure")

    @mcp.tool(description="A task that asks for a confirmation before it deletes", task=True)
    async def confirm_delete(ctx: Context, filename: str = "file") -> Any:
        answer = _answer(ctx, "confirm")
        if answer is None:
            return _input_required({"confirm": _form(f"Delete {filename}?", {"ok": {"type": "boolean"}}, ["ok"])})
        return _content(_text(f"confirm_delete: action={answer.get('action')}"))

    @mcp.tool(description="A task that asks two questions at once", task=True)
    async def multi_input(ctx: Context) -> Any:
        asks = {key: _form(f"Your {key}?", {key: {"type": "string"}}, [key]) for key in ("first", "second")}
        answers = {key: _answer(ctx, key) for key in asks}
        missing = {key: ask for key, ask in asks.items() if answers[key] is None}
        if missing:
            return _input_required(missing)
        return _content(_text("multi_input: " + json.dumps(answers, sort_keys=True)))

    # user_name: set by _Tasks from the first round's answer (the suite calls it with no arguments).
    @mcp.tool(description="MRTR, then a task: asks for user_name, then works on it", task=TaskConfig(mode="required"))
    async def test_tool_with_task(user_name: str | None = None) -> Any:
        if user_name is None:
            return _input_required({"user_name": _form("Your name?", {"name": {"type": "string"}}, ["name"])})
        await asyncio.sleep(0.2)
        return _content(_text(f"Hello, {user_name}!"))


async def _ask(ctx: Context, key: str, request: Any) -> dict[str, Any] | None:
    """The client's answer to `request`. In a 2026-07-28 call: the retry's inputResponses[key] (None
    until then: answer with an InputRequiredResult). In a 2025-11-25 session: asked now, with a request
    to the client tied to this call."""
    if _modern(ctx):
        return _answer(ctx, key)
    result_type = {
        mcp_types.ElicitRequest: mcp_types.ElicitResult,
        mcp_types.CreateMessageRequest: mcp_types.CreateMessageResult,
        mcp_types.ListRootsRequest: mcp_types.ListRootsResult,
    }[type(request)]
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    result = await ctx.session.send_request(request, result_type, metadata=metadata)
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def _signed(state: str) -> str:
    return f"{state}.{hmac.new(_STATE_KEY, state.encode(), hashlib.sha256).hexdigest()}"


def _client_capabilities(ctx: Context) -> dict[str, Any]:
    """What the client declared: the 2026-07-28 request's _meta, else the session's initialize."""
    context = ctx.request_context
    meta = (context.meta if context is not None else None) or {}
    declared = meta.get("io.modelcontextprotocol/clientCapabilities")
    if isinstance(declared, dict):
        return declared
    params = getattr(ctx.session, "client_params", None)
    capabilities = getattr(params, "capabilities", None)
    return capabilities.model_dump(exclude_none=True) if capabilities is not None else {}


def _input_required(requests: dict[str, Any], state: str | None = None) -> mcp_types.InputRequiredResult:
    return mcp_types.InputRequiredResult(input_requests=requests, request_state=state)


def _sampling(prompt: str, max_tokens: int = 100) -> mcp_types.CreateMessageRequest:
    message = mcp_types.SamplingMessage(role="user", content=mcp_types.TextContent(type="text", text=prompt))
    params = mcp_types.CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    return mcp_types.CreateMessageRequest(params=params)


async def _elicit(ctx: Context, label: str, message: str, properties: dict[str, Any], required: list[str]) -> Any:
    """Elicit with a form: in-band (input required) for a 2026-07-28 caller, a request otherwise."""
    if _modern(ctx):
        answer = _answer(ctx, "form")
        if answer is None:
            return _input_required({"form": _form(message, properties, required)})
        action, content = answer.get("action", "accept"), answer.get("content") or {}
    else:
        schema = {"type": "object", "properties": properties, "required": required}
        result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        action, content = result.action, result.content or {}
    return _content(_text(f"{label}: action={action}, content={json.dumps(content)}"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Refuse a foreign Host or Origin on loopback (DNS rebinding), as the suite expects of a server.
    fastmcp.settings.http_host_origin_protection = "auto"
    build().run(transport="http", host="127.0.0.1", port=args.port, show_banner=False, log_level="warning")


if __name__ == "__main__":
    main()

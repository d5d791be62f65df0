"""What a real session carries through the gateway: progress, elicitation round trips, cancellation."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import mcp.types as mt
import pytest

from tests.support.gateway import RunningGateway

from .clients import fastmcp_client, sdk_session, text_of, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_progress_reaches_a_modern_client(gateway: RunningGateway) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with fastmcp_client(gateway.url("/virtual/support"), progress_handler=on_progress) as client:
        result = await client.call_tool("progress", {"steps": 3})
    assert result.data == "3 steps"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_progress_reaches_a_legacy_client_from_a_legacy_backend(gateway: RunningGateway) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with sdk_session(gateway.url("/virtual/support")) as session:
        result = await session.call_tool("long-op", {"duration": 0.3, "steps": 3}, progress_callback=on_progress)
    assert not result.is_error
    assert seen == [1, 2, 3]


async def test_elicitation_round_trip_modern_client(gateway: RunningGateway) -> None:
    """A legacy-era backend elicits mid-call; the modern client gets an InputRequiredResult and retries."""
    asked: list[str] = []

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> str:
        asked.append(message)
        return "ada"

    async with fastmcp_client(gateway.url("/virtual/support"), elicitation_handler=elicit) as client:
        result = await client.call_tool("ask", {"question": "Who are you?"})
    assert asked == ["Who are you?"]
    assert result.data == "hello ada"


async def test_elicitation_round_trip_legacy_client(gateway: RunningGateway) -> None:
    asked: list[str] = []

    async def elicit(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        asked.append(params.message)
        return mt.ElicitResult(action="accept", content={"value": "grace"})

    async with sdk_session(gateway.url("/virtual/support"), elicitation_callback=elicit) as session:
        result = await session.call_tool("ask", {"question": "Name?"})
        declined = await session.call_tool("confirm", {})  # server-everything's elicitation, answered below
    assert asked[0] == "Name?"
    assert text_of(result) == "hello grace"
    assert not declined.is_error and len(asked) == 2


async def test_elicitation_refused_when_client_lacks_the_capability(gateway: RunningGateway) -> None:
    # Raw modern request without elicitation in clientCapabilities: the backend asks anyway (a 2025-11-25
    # backend does not know), so the call ends with -32021 and the backend call is cancelled.
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {
            "name": "ask",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "ask",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(gateway.url("/virtual/support"), json=body, headers=headers)
    # Serving the call needs a capability the client did not declare: the 2026-07-28 error, HTTP 400.
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32021 and error["data"] == {"requiredCapabilities": {"elicitation": {}}}


async def _call_log(url: str) -> list[str]:
    async with fastmcp_client(url) as direct:
        return (await direct.call_tool("call_log", {})).structured_content["result"]


async def _wait_for_cancel(url: str, before: int) -> None:
    async def cancelled() -> bool:
        return "sleep-cancelled" in (await _call_log(url))[before:]

    await until(cancelled, within_s=10)


async def test_legacy_cancellation_reaches_the_backend(gateway: RunningGateway, backends: dict[str, str]) -> None:
    before = len(await _call_log(backends["alpha"]))
    async with sdk_session(gateway.url("/virtual/support")) as session:
        with anyio.move_on_after(0.5) as scope:
            await session.call_tool("sleep", {"seconds": 30})
        assert scope.cancelled_caught
        await _wait_for_cancel(backends["alpha"], before)
        # The session stays usable after a cancelled call.
        result = await session.call_tool("echo", {"text": "still here"})
    assert text_of(result) == "still here"


async def test_modern_cancellation_by_closing_the_stream(gateway: RunningGateway, backends: dict[str, str]) -> None:
    before = len(await _call_log(backends["alpha"]))
    async with fastmcp_client(gateway.url("/virtual/support")) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.call_tool("sleep", {"seconds": 30})
        assert scope.cancelled_caught
    await _wait_for_cancel(backends["alpha"], before)


async def test_sampling_round_trip_legacy_client(gateway: RunningGateway) -> None:
    """server-everything asks for an LLM completion mid-call; the legacy client answers on its stream."""
    prompts: list[str] = []

    async def sample(context: Any, params: mt.CreateMessageRequestParams) -> mt.CreateMessageResult:
        prompts.append(params.messages[0].content.text)
        return mt.CreateMessageResult(
            role="assistant",
            content=mt.TextContent(type="text", text="Paris"),
            model="test-model",
            stop_reason="endTurn",
        )

    async with sdk_session(gateway.url("/virtual/support"), sampling_callback=sample) as session:
        result = await session.call_tool("sample", {"prompt": "Capital of France?", "maxTokens": 5})
    assert prompts and "Capital of France?" in prompts[0]
    assert "Paris" in text_of(result)


async def test_sampling_round_trip_modern_client(gateway: RunningGateway) -> None:
    """The same request reaches a 2026-07-28 client as an InputRequiredResult; its retry completes the call."""
    prompts: list[str] = []

    async def sample(messages: Any, params: Any, context: Any) -> str:
        prompts.append(str(messages))
        return "Paris"

    async with fastmcp_client(gateway.url("/virtual/support"), sampling_handler=sample) as client:
        result = await client.call_tool_mcp("sample", {"prompt": "Capital of France?", "maxTokens": 5})
    assert prompts and "Capital of France?" in prompts[0]
    assert "Paris" in text_of(result)


async def test_modern_backend_input_request_passes_through_to_a_modern_client(gateway: RunningGateway) -> None:
    """A 2026-07-28 backend answers InputRequiredResult; the client's retry carries the answer back."""
    asked: list[str] = []

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> str:
        asked.append(message)
        return "zed"

    async with fastmcp_client(gateway.url("/virtual/support"), elicitation_handler=elicit) as client:
        result = await client.call_tool_mcp("guarded", {})
    assert asked == ["Name, please?"]
    assert text_of(result) == "guarded hello zed (state-1)"  # requestState made the round trip


async def test_modern_backend_input_request_reaches_a_legacy_client(gateway: RunningGateway) -> None:
    """For a 2025-11-25 client the gateway asks on the call's stream, then retries the backend call."""
    asked: list[str] = []

    async def elicit(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        asked.append(params.message)
        return mt.ElicitResult(action="accept", content={"value": "grace"})

    async with sdk_session(gateway.url("/virtual/support"), elicitation_callback=elicit) as session:
        result = await session.call_tool("guarded", {})
    assert asked == ["Name, please?"]
    assert text_of(result) == "guarded hello grace (state-1)"


async def _raw_legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    accept = {"accept": "application/json, text/event-stream"}
    response = await http.post(url, json=init, headers=accept)
    return {**accept, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}


async def test_a_legacy_client_sees_no_2026_fields_of_a_modern_backend(gateway: RunningGateway) -> None:
    url = gateway.url("/virtual/support")
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _raw_legacy_session(http, url)
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}},
        }
        raw = (await http.post(url, json=call, headers=headers)).text
    # /alpha answers in the 2026-07-28 era (resultType, its serverInfo in _meta): neither reaches this client.
    assert '"x"' in raw
    assert "resultType" not in raw and "io.modelcontextprotocol/serverInfo" not in raw and '"alpha"' not in raw


async def test_a_cancelled_request_gets_no_answer(gateway: RunningGateway, backends: dict[str, str]) -> None:
    url = gateway.url("/virtual/support")
    before = len(await _call_log(backends["alpha"]))
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _raw_legacy_session(http, url)
        call = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"seconds": 30}},
        }
        answered: list[str] = []

        async def sleeper() -> None:
            answered.append((await http.post(url, json=call, headers=headers)).text)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sleeper)
            await _wait_until_called(backends["alpha"], before)
            cancel = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 7, "reason": "user"},
            }
            assert (await http.post(url, json=cancel, headers=headers)).status_code == 202
        await _wait_for_cancel(backends["alpha"], before)
    # The POST ended without any JSON-RPC message about request 7 (the spec: SHOULD NOT respond).
    assert '"id":7' not in answered[0].replace(" ", "") and "error" not in answered[0]


async def _wait_until_called(url: str, before: int) -> None:
    async def called() -> bool:
        return "sleep" in (await _call_log(url))[before:]

    await until(called, within_s=10)

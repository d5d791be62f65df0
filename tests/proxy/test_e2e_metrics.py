"""`/metrics` on a real gateway: every request counted under the right labels, upstream calls by
outcome, live figures, deny by default."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy._jsonrpc import ErrorAnswer, encode_error, encode_result
from proxy._metrics import Metrics, outcome_of
from tests.proxy.clients import fastmcp_client
from tests.support.gateway import RunningGateway
from tests.support.procs import wait_until


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_outcomes() -> None:
    """An answer is an error when its encoder made an error of it: no guessing from the bytes."""
    long_id = "x" * 300  # past any prefix a byte scan would look at
    error = encode_error(long_id, -32602, "Unknown tool: x")
    assert isinstance(error, ErrorAnswer) and error.error == (-32602, "Unknown tool: x")
    assert outcome_of(200, error.error) == "error"
    assert not isinstance(encode_result(1, {"error": {"a": 1}}), ErrorAnswer)  # a result's own "error" key
    assert outcome_of(200, None, tool_error=True) == "tool_error" and outcome_of(200, None) == "ok"
    assert outcome_of(401, None) == "error" and outcome_of(202, None) == "ok"
    assert encode_error(1, "odd", "a backend's code").error == (0, "a backend's code")  # type: ignore[arg-type]


def test_live_figures_are_read_at_scrape_time() -> None:
    state: dict[str, Any] = {"in_flight": 2, "recorder": None, "backends": {"/a": [{"name": "x"}], "/b": None}}
    metrics = Metrics(lambda: state)
    metrics.request("tools/call", "/v", "x", "/a", "ok", 0.003)
    found = samples(metrics.render().decode())
    assert value(found, "slicewire_requests_in_flight") == 2
    assert (
        value(found, "slicewire_backend_up", backend="/a") == 1
        and value(found, "slicewire_backend_up", backend="/b") == 0
    )
    assert value(found, "slicewire_backend_tools", backend="/a") == 1
    labels = {"mcp_method_name": "tools/call", "virtual_server": "/v", "gen_ai_tool_name": "x", "backend": "/a",
              "outcome": "ok"}  # fmt: skip
    assert value(found, "mcp_server_operation_duration_seconds_count", **labels) == 1
    assert value(found, "mcp_server_operation_duration_seconds_bucket", **labels, le="0.005") == 1
    state["recorder"] = {"emitted": 9, "sent": 6, "spooled": 3, "resent": 0, "dropped": 0}
    found = samples(metrics.render().decode())
    assert value(found, "slicewire_recorder_spans_total", state="sent") == 6


async def agent(url: str) -> None:
    async with fastmcp_client(url) as client:
        for text in ("a", "b", "c"):
            await client.call_tool("echo", {"text": text})
        await client.call_tool("fail", {"message": "no"}, raise_on_error=False)
        for tool, args in (("delete_repo", {"repo": "x"}), ("sleep", {"seconds": 3})):
            with pytest.raises(Exception):  # noqa: B017 - the kind of error is asserted through /metrics
                await client.call_tool(tool, args)


@pytest.mark.e2e
def test_requests_and_upstream_calls_are_counted(backends: dict[str, str], tmp_path: Path) -> None:
    config = {
        "backends": [{"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"], "timeout_s": 0.5}],
        "virtual_servers": [{"path": "/virtual/m", "server_name": "M", "tool_mappings": [
            {"tool_name": "echo", "backend_server_path": "/alpha"},
            {"tool_name": "fail", "backend_server_path": "/alpha"},
            {"tool_name": "sleep", "backend_server_path": "/alpha"}]}],
    }  # fmt: skip
    gw = RunningGateway(config, tmp_path, name="metrics")
    try:
        assert httpx.get(f"{gw.base}/metrics", timeout=5).status_code == 401  # deny by default
        asyncio.run(agent(gw.url("/virtual/m")))
        odd = httpx.post(gw.url("/virtual/m"), json={"jsonrpc": "2.0", "id": 1, "method": "x/made-up", "params": {}},
                         headers={"accept": "application/json, text/event-stream"}, timeout=5)  # fmt: skip
        assert odd.status_code in (200, 400, 404)
        scraped = httpx.get(f"{gw.base}/metrics", headers={"authorization": f"Bearer {gw.admin_token}"}, timeout=5)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        found = samples(scraped.text)
        count = "mcp_server_operation_duration_seconds_count"
        call = {"mcp_method_name": "tools/call", "virtual_server": "/virtual/m"}
        assert value(found, count, **call, gen_ai_tool_name="echo", backend="/alpha", outcome="ok") == 3
        assert value(found, count, **call, gen_ai_tool_name="fail", backend="/alpha", outcome="tool_error") == 1
        assert value(found, count, **call, gen_ai_tool_name="sleep", backend="/alpha", outcome="error") == 1
        # Outside the slice: no tool or backend label (and no client can add label values at will).
        assert value(found, count, **call, gen_ai_tool_name="", backend="", outcome="error") == 1
        assert value(found, count, mcp_method_name="other", virtual_server="/virtual/m", gen_ai_tool_name="",
                     backend="", outcome="error") == 1  # fmt: skip
        upstream = "mcp_client_operation_duration_seconds_count"
        assert value(found, upstream, backend="/alpha", mcp_method_name="tools/call", outcome="ok") == 3
        assert value(found, upstream, backend="/alpha", mcp_method_name="tools/call", outcome="tool_error") == 1
        assert value(found, upstream, backend="/alpha", mcp_method_name="tools/call", outcome="error") == 1
        assert value(found, "slicewire_requests_in_flight") == 0
        assert value(found, "slicewire_backend_up", backend="/alpha") == 1
        # metrics.public opens it to a scraper without a token (picked up on reload).
        gw.write_config({**config, "metrics": {"public": True}})
        wait_until(lambda: httpx.get(f"{gw.base}/metrics", timeout=5).status_code == 200, 20, what="public /metrics")
    finally:
        gw.stop()

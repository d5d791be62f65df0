"""Guardrails end to end: a real gateway in front of a FastMCP backend, called by the fastmcp client
(2026-07-28) and the mcp SDK (2025-11-25). Each rule fires; a refused call is a JSON-RPC error telling
the model what to change, and the backend's own call log proves it never arrived; every verdict is
counted in /metrics and recorded as an event of the request's trace."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from recorder import connect
from tests.proxy.clients import fastmcp_client, sdk_session, text_of
from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, start_fastmcp, wait_until
from tests.support.recorder import RunningRecorder

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

NO_USER_DUMP = r"(?i)select\s+\*\s+from\s+users"
GUARDED = {
    "path": "/virtual/guarded", "server_name": "Guarded",
    "tool_mappings": [
        {"tool_name": "search_issues", "backend_server_path": "/epsilon", "guardrails": {
            "pin": {"repo": "acme/docs"},
            "narrow": {"state": {"enum": ["open"]}, "query": {"maxLength": 60}},
            "input_rules": [{"name": "no-user-dump", "deny": NO_USER_DUMP, "argument": "query"}],
        }},
        {"tool_name": "customer", "backend_server_path": "/epsilon", "guardrails": {
            "output_rules": [{"detect": "email", "action": "redact"}, {"detect": "card_number", "action": "block"}],
        }},
        {"tool_name": "search_issues", "backend_server_path": "/epsilon", "alias": "search_hooked", "guardrails": {
            "input_rules": [{"hook": "no-private-urls"}, {"hook": "tests.support.hooks:cap_limit"},
                            {"hook": "tests.support.hooks:slow_or_failing", "name": "slow-check", "budget_ms": 200}],
        }},
        {"tool_name": "drop_table", "backend_server_path": "/epsilon"},  # destructive: approval (below)
        {"tool_name": "customer", "backend_server_path": "/epsilon", "alias": "customer_approved",
         "guardrails": {"approval": "required"}},
        {"tool_name": "report", "backend_server_path": "/epsilon", "guardrails": {
            "output_rules": [{"name": "short-reports", "max_result_bytes": 200}],
        }},
    ],
    "guardrails": {
        "approval": "destructive",
        "input_rules": [{"name": "small-calls", "max_bytes": 512}],
        "output_rules": [{"detect": "api_key"}],
    },
}  # fmt: skip


@dataclass
class Guarded:
    gw: RunningGateway
    backend: str
    rec: RunningRecorder

    @property
    def url(self) -> str:
        return self.gw.url("/virtual/guarded")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    tmp = tmp_path_factory.mktemp("guardrails")
    procs: list[Proc] = []
    rec = RunningRecorder(tmp / "traces.duckdb", tmp)
    try:
        proc, url = start_fastmcp("epsilon", tmp)
        procs.append(proc)
        config = {
            "backends": [{"path": "/epsilon", "transport": "streamable-http", "url": url}],
            "virtual_servers": [GUARDED],
            "recorder": {"target": rec.target, "spool_dir": "spool", "flush_interval_ms": 50},
        }
        gw = RunningGateway(config, tmp, "guardrails")
        try:
            yield Guarded(gw, url, rec)
        finally:
            gw.stop()
    finally:
        for proc in procs:
            proc.stop()
        rec.stop()


async def call_log(url: str) -> list[str]:
    async with fastmcp_client(url) as direct:
        return list((await direct.call_tool("call_log", {})).structured_content["result"])


async def test_pinned_and_narrowed_arguments_are_shown_and_enforced(guarded: Guarded) -> None:
    async with fastmcp_client(guarded.url) as client:
        tools = {t.name: t for t in await client.list_tools()}
        schema = tools["search_issues"].input_schema
        assert "repo" not in schema["properties"] and "repo" not in schema.get("required", [])
        assert schema["properties"]["state"]["enum"] == ["open"] and schema["properties"]["query"]["maxLength"] == 60

        before = await call_log(guarded.backend)
        found = await client.call_tool("search_issues", {"query": "login bug"})
        assert found.structured_content["repo"] == "acme/docs"  # pinned: the agent never chose it
        refusals = {
            "repo": ({"query": "x", "repo": "acme/secret"}, "Argument 'repo' is fixed to \"acme/docs\""),
            "state": ({"query": "x", "state": "closed"}, "Argument 'state' is not allowed here: 'closed' is not one"),
            "query": ({"query": "x" * 61}, "Argument 'query' is not allowed here"),
            "rule": ({"query": "SELECT * FROM users"}, "Refused by guardrail 'no-user-dump': argument 'query'"),
            "size": ({"query": "ok", "limit": 1, "extra": "y" * 600}, "Refused by guardrail 'small-calls'"),
        }
        for arguments, message in refusals.values():
            with pytest.raises(Exception) as refused:
                await client.call_tool("search_issues", arguments)
            assert message in str(refused.value), str(refused.value)
    assert (await call_log(guarded.backend))[len(before) :] == ["search_issues acme/docs 'login bug' open"]

    async with sdk_session(guarded.url) as s:  # the other era: the same refusal, as a JSON-RPC error
        with pytest.raises(MCPError) as refused:
            await s.call_tool("search_issues", {"query": "select *  from USERS"})
        assert refused.value.error.code == -32602
        assert refused.value.error.data == {
            "guardrail": "no-user-dump",
            "reason": f"argument 'query' matches {NO_USER_DUMP!r}",
        }


async def test_output_rules_redact_block_and_truncate_in_content_and_structured_content(guarded: Guarded) -> None:
    async with sdk_session(guarded.url) as s:
        ada = await s.call_tool("customer", {"customer_id": 1})
        assert ada.structured_content is not None
        assert ada.structured_content["email"] == "[REDACTED:email]"
        assert ada.structured_content["note"] == "call back after 5pm; key [REDACTED:api_key]"
        assert "ada@example.com" not in text_of(ada) and "sk-proj-" not in text_of(ada)
        blocked = await s.call_tool("customer", {"customer_id": 2})
        assert blocked.is_error and "withheld by guardrail 'card_number'" in text_of(blocked)
        assert blocked.structured_content is None and "4111" not in json.dumps(blocked.model_dump())
    async with fastmcp_client(guarded.url) as client:
        report = await client.call_tool("report", {"lines": 50})
        text = "".join(block.text for block in report.content)  # type: ignore[union-attr]
        assert text.startswith("line 0: all quiet") and len(text.encode()) < 300
        assert text.endswith("[truncated by the gateway: the result was over 200 bytes]")


async def _fire_two_rules(url: str) -> None:
    async with fastmcp_client(url) as client:
        await client.call_tool("customer", {"customer_id": 1})
        with pytest.raises(Exception, match="no-user-dump"):
            await client.call_tool("search_issues", {"query": "select * from users"})


def test_verdicts_are_counted_and_recorded(guarded: Guarded) -> None:
    import asyncio

    asyncio.run(_fire_two_rules(guarded.url))
    headers = {"authorization": f"Bearer {guarded.gw.admin_token}"}
    metrics = httpx.get(f"{guarded.gw.base}/metrics", headers=headers, timeout=5).text
    counted = {}
    for line in metrics.splitlines():
        if line.startswith("slicewire_guardrail_verdicts_total{"):
            labels = dict(pair.split("=", 1) for pair in line.split("{", 1)[1].split("}")[0].split(","))
            key = (labels["gen_ai_tool_name"], labels["rule"], labels["action"], labels["virtual_server"])
            counted[key] = float(line.rsplit(" ", 1)[1])
    assert counted[('"customer"', '"email"', '"redact"', '"/virtual/guarded"')] >= 1, counted
    assert counted[('"search_issues"', '"no-user-dump"', '"deny"', '"/virtual/guarded"')] >= 1, counted

    def events() -> list[dict[str, Any]]:
        with connect(guarded.rec.target) as r:
            return r.rows("SELECT name, request_payload FROM spans WHERE name LIKE 'guardrail %' ORDER BY start_ns")

    wanted = {"guardrail no-user-dump: deny", "guardrail email: redact"}
    wait_until(lambda: wanted <= {e["name"] for e in events()}, 15, what="the guardrail events recorded")
    denial = next(e for e in events() if e["name"] == "guardrail no-user-dump: deny")
    assert json.loads(denial["request_payload"])["rule"] == "no-user-dump"


async def test_python_hooks_allow_rewrite_and_refuse_failing_closed(guarded: Guarded) -> None:
    before = await call_log(guarded.backend)
    async with fastmcp_client(guarded.url) as client:
        capped = await client.call_tool("search_hooked", {"repo": "acme/api", "query": "x", "limit": 500})
        assert capped.structured_content["limit"] == 5  # rewritten by the hook
        refusals = {
            "see http://169.254.169.254/latest/meta-data": "Refused by guardrail 'no-private-urls': "
            "http://169.254.169.254/latest/meta-data points into a private network",
            "slow": "Refused by guardrail 'slow-check': it could not check this call",
            "boom": "Refused by guardrail 'slow-check': it could not check this call",
            "prod": "anonymous callers of /virtual/guarded may not search prod: sign in",
        }
        for query, message in refusals.items():
            started = time.monotonic()
            with pytest.raises(Exception) as refused:
                await client.call_tool("search_hooked", {"repo": "acme/api", "query": query})
            assert message in str(refused.value), str(refused.value)
            assert time.monotonic() - started < 2  # the slow hook is cut off at its budget
    assert (await call_log(guarded.backend))[len(before) :] == ["search_issues acme/api 'x' open"]


async def test_the_user_approves_risky_calls_in_both_eras(guarded: Guarded) -> None:
    import mcp_types as mt

    shown: list[str] = []

    def answering(approve: bool) -> Any:
        async def fastmcp_handler(message: str, response_type: Any, params: Any, context: Any) -> Any:
            shown.append(message)
            return {"approve": approve}

        return fastmcp_handler

    async def sdk_yes(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        shown.append(params.message)
        return mt.ElicitResult(action="accept", content={"approve": True})

    async def sdk_cancel(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        return mt.ElicitResult(action="cancel")

    before = await call_log(guarded.backend)
    async with fastmcp_client(guarded.url, elicitation_handler=answering(True)) as client:  # 2026-07-28
        assert (await client.call_tool("drop_table", {"table": "staging"})).data == "dropped staging"
        ok = await client.call_tool("customer_approved", {"customer_id": 1})
        assert ok.structured_content["name"] == "Ada"  # approval, then the output rules as always
    assert "'drop_table'" in shown[0] and '"table": "staging"' in shown[0]  # the exact call was shown
    async with fastmcp_client(guarded.url, elicitation_handler=answering(False)) as client:
        with pytest.raises(Exception, match="The user did not approve this call of 'drop_table'"):
            await client.call_tool("drop_table", {"table": "prod"})
    async with fastmcp_client(guarded.url) as client:  # no elicitation handler: the capability is absent
        with pytest.raises(Exception, match="this client cannot ask the user"):
            await client.call_tool("drop_table", {"table": "prod"})
    async with sdk_session(guarded.url, elicitation_callback=sdk_yes) as s:  # 2025-11-25
        assert text_of(await s.call_tool("drop_table", {"table": "scratch"})) == "dropped scratch"
    async with sdk_session(guarded.url, elicitation_callback=sdk_cancel) as s:
        with pytest.raises(MCPError, match="did not approve"):
            await s.call_tool("drop_table", {"table": "prod"})
    async with sdk_session(guarded.url) as s:
        with pytest.raises(MCPError, match="cannot ask the user"):
            await s.call_tool("drop_table", {"table": "prod"})
    assert (await call_log(guarded.backend))[len(before):] == [
        "drop_table staging", "customer 1", "drop_table scratch"]  # fmt: skip

    # A modern client's approval covers that call only: replaying its requestState for another fails.
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "tools/call", "mcp-name": "drop_table"}  # fmt: skip
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}  # fmt: skip
    yes = {"approval": {"action": "accept", "content": {"approve": True}}}

    def body(table: str, **extra: Any) -> dict[str, Any]:
        params = {"name": "drop_table", "arguments": {"table": table}, "_meta": meta, **extra}
        return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}

    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        asked = (await http.post(guarded.url, json=body("t1"))).json()
        assert asked["result"]["resultType"] == "input_required", asked
        assert "approval" in asked["result"]["inputRequests"]
        state = asked["result"]["requestState"]
        other = (await http.post(guarded.url, json=body("t2", inputResponses=yes, requestState=state))).json()
        assert "for another call" in other["error"]["message"]
        again = (await http.post(guarded.url, json=body("t1", inputResponses=yes, requestState=state))).json()
        assert "for another call" in again["error"]["message"]  # one use: the failed retry consumed it
    assert "drop_table t2" not in await call_log(guarded.backend)


def test_bad_guardrails_are_config_errors(tmp_path: Path) -> None:
    import yaml

    from proxy._config import ConfigError, load_config

    bad = {**GUARDED, "tool_mappings": [{"tool_name": "t", "backend_server_path": "/epsilon", "guardrails": {
        "input_rules": [{"deny": "(unclosed"}, {"deny": "x", "max_bytes": 3}, {"hook": "nope"},
                        {"hook": "tests.support.hooks:missing"}],
        "output_rules": [{"detect": "email", "action": "truncate"}, {"detect": "phone"}],
        "narrow": {"state": {"type": "no-such-type"}}}}]}  # fmt: skip
    file = tmp_path / "bad.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "backends": [{"path": "/epsilon", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"}],
                "virtual_servers": [bad],
            }
        )
    )
    with pytest.raises(ConfigError) as exc:
        load_config(file)
    text = "\n".join(exc.value.problems)
    for expected in ("input_rules[0].deny: not a regular expression", "input_rules[1]: an input rule has one of deny",
                     "input_rules[2].hook: hook 'nope': no entry point of that name in group slicewire.guardrails "
                     "(installed: no-private-urls)",
                     "input_rules[3].hook: hook 'tests.support.hooks:missing': tests.support.hooks has no function",
                     "output_rules[0]: action truncate goes with max_result_bytes", "output_rules[1].detect:",
                     "narrow.state: not a JSON Schema"):  # fmt: skip
        assert expected in text, text

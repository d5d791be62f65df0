"""Replay and mock of `resources/read` and `prompts/get`: a session that reads a resource and gets a
prompt through a real gateway, recorded into a real DuckDB file, replayed by the real CLI (straight
to the backend, against an unchanged and a changed backend) and served by `slicewire mock`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp.shared.exceptions import MCPError

from recorder import connect
from tests.proxy.clients import fastmcp_client, sdk_session
from tests.support.gateway import RunningGateway
from tests.support.procs import start_fastmcp
from tests.support.recorder import record_session

from .test_e2e_replay import Recorded, mock_server, replay_cli

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def reads_config(delta_url: str, recorder: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "backends": [{"path": "/delta", "transport": "streamable-http", "url": delta_url}],
        "virtual_servers": [{
            "path": "/virtual/dbg", "server_name": "Debug", "public": True,
            "tool_mappings": [{"tool_name": "get_user", "backend_server_path": "/delta", "alias": "user"}],
            "resource_mappings": [{"backend_server_path": "/delta", "uri_template": "delta://plans/{user_id}",
                                   "expose_as": "plans://{user_id}"}],
            "prompt_mappings": [{"backend_server_path": "/delta", "prompt_name": "greet", "alias": "hello"}],
        }],
    }  # fmt: skip
    if recorder:
        config["recorder"] = {"target": recorder, "spool_dir": "spool", "flush_interval_ms": 50}
    return config


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The delta backend as recorded, and changed (another plan, another greeting)."""
    tmp = tmp_path_factory.mktemp("delta-reads")
    same, same_url = start_fastmcp("delta", tmp)
    changed, changed_url = start_fastmcp("delta", tmp, env={"DELTA_VARIANT": "changed"})
    try:
        yield same_url, changed_url
    finally:
        same.stop()
        changed.stop()


@pytest.fixture(scope="module")
def recorded(backends: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    tmp = tmp_path_factory.mktemp("recorded-reads")
    db = record_session(lambda target: reads_config(backends[0], target), _agent, tmp)
    with connect(str(db)) as r:
        sessions = r.rows("SELECT DISTINCT session_id FROM spans WHERE method = 'resources/read'")
    assert len(sessions) == 1
    return Recorded(db, sessions[0]["session_id"], backends[0], tmp)


async def _agent(gw: RunningGateway) -> None:
    async with sdk_session(gw.url("/virtual/dbg")) as s:
        plan = await s.read_resource("plans://7")
        assert json.loads(plan.contents[0].text) == {"user": "7", "plan": "pro"}  # type: ignore[union-attr]
        greeting = await s.get_prompt("hello", {"name": "ada"})
        assert "Greet ada." in str(greeting.messages[0].content)
        assert (await s.call_tool("user", {"user_id": 7})).structured_content["plan"] == "pro"


def direct(tmp: Path, url: str) -> Path:
    path = tmp / "direct.yaml"
    path.write_text(yaml.safe_dump(reads_config(url)))
    return path


def test_reads_and_prompts_replay_the_same_against_the_same_backend(recorded: Recorded, tmp_path: Path) -> None:
    code, report, err = replay_cli(recorded, "--config", str(direct(tmp_path, recorded.delta_url)), "--safe")
    assert code == 0, (err, report)
    calls = [(c["method"], c["tool"], c["outcome"]) for c in report["calls"]]
    # --safe holds back tools not marked read-only; reading and getting prompts change nothing.
    assert calls == [("resources/read", "plans://7", "same"), ("prompts/get", "hello", "same"),
                     ("tools/call", "user", "same")]  # fmt: skip


def test_a_changed_resource_and_prompt_are_reported_where_they_differ(
    recorded: Recorded, backends: tuple[str, str], tmp_path: Path
) -> None:
    code, report, err = replay_cli(recorded, "--config", str(direct(tmp_path, backends[1])))
    assert code == 1, (err, report)
    by_method = {c["method"]: c for c in report["calls"]}
    read = by_method["resources/read"]
    assert read["outcome"] == "changed"
    assert {c["path"]: (c["old"], c["new"]) for c in read["changes"]}["$.contents[0].text(json).plan"] == (
        "pro",
        "free",
    )
    prompt = by_method["prompts/get"]
    assert prompt["outcome"] == "changed" and "Greet ada warmly." in json.dumps(prompt["changes"])


async def test_the_mock_serves_the_recorded_reads_and_prompts(recorded: Recorded, tmp_path: Path) -> None:
    with mock_server(recorded, tmp_path) as url:
        async with sdk_session(url) as session:
            assert [str(r.uri) for r in (await session.list_resources()).resources] == ["plans://7"]
            assert [p.name for p in (await session.list_prompts()).prompts] == ["hello"]
            plan = await session.read_resource("plans://7")
            assert json.loads(plan.contents[0].text)["plan"] == "pro"  # type: ignore[union-attr]
            assert "Greet ada." in str((await session.get_prompt("hello", {"name": "ada"})).messages[0].content)
            with pytest.raises(MCPError) as off_script:
                await session.get_prompt("hello", {"name": "bob"})
            assert "closest recorded call #2 hello differs at $.arguments.name" in off_script.value.error.message
            with pytest.raises(MCPError) as unknown:
                await session.read_resource("plans://8")  # never read: not in the mock's slice
            assert unknown.value.error.code == -32602
        async with fastmcp_client(url) as client:  # the 2026-07-28 era too
            contents = await client.read_resource("plans://7")
            assert json.loads(contents[0].text)["plan"] == "pro"  # type: ignore[union-attr]


def test_reads_and_prompts_are_spans_named_by_the_semantic_conventions(recorded: Recorded) -> None:
    with connect(str(recorded.db)) as r:
        rows = r.rows(
            "SELECT name, kind, method, attrs->>'$.\"gen_ai.prompt.name\"' AS prompt, "
            "attrs->>'$.\"mcp.resource.uri\"' AS uri, attrs->>'$.\"gen_ai.tool.name\"' AS tool "
            "FROM spans WHERE method IN ('resources/read', 'prompts/get') AND kind IN ('SERVER', 'CLIENT') "
            "ORDER BY start_ns"
        )
    seen = {(row["kind"], row["method"]): (row["name"], row["prompt"], row["uri"], row["tool"]) for row in rows}
    # The client's request under the slice's names; the upstream hop under the backend's.
    assert seen[("SERVER", "resources/read")] == ("resources/read", None, "plans://7", None)
    assert seen[("CLIENT", "resources/read")] == ("resources/read", None, "delta://plans/7", None)
    assert seen[("SERVER", "prompts/get")] == ("prompts/get hello", "hello", None, None)
    assert seen[("CLIENT", "prompts/get")] == ("prompts/get greet", "greet", None, None)

"""`slicewire replay` end to end: a real session recorded through a real gateway into a real DuckDB
file, against a FastMCP backend and server-memory (stdio, so that state matters), then replayed by
the real CLI, straight to the backends and through a gateway."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as mt
import pytest
import yaml
from mcp.shared.exceptions import MCPError

from recorder import connect
from tests.proxy.clients import fastmcp_client, sdk_session, text_of
from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, node_server, port_open, start_fastmcp, wait_until
from tests.support.recorder import RunningRecorder, record_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PASSWORD = "open-sesame-77"  # redacted by the recorder (key "password"); must be given to replay


def slice_config(delta_url: str, memory_file: Path, recorder: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "backends": [
            {"path": "/delta", "transport": "streamable-http", "url": delta_url},
            {"path": "/memory", "transport": "stdio", "command": "node", "args": [str(node_server("server-memory"))],
             "env": {"MEMORY_FILE_PATH": str(memory_file)}},
        ],
        "virtual_servers": [
            {"path": "/virtual/dbg", "server_name": "Debug", "public": True, "tool_mappings": [
                {"tool_name": "get_user", "backend_server_path": "/delta", "alias": "user"},
                {"tool_name": "lookup", "backend_server_path": "/delta"},
                {"tool_name": "login", "backend_server_path": "/delta"},
                {"tool_name": "wipe", "backend_server_path": "/delta"},
                {"tool_name": "create_entities", "backend_server_path": "/memory"},
                {"tool_name": "add_observations", "backend_server_path": "/memory"},
                {"tool_name": "read_graph", "backend_server_path": "/memory"}]},
        ],
    }  # fmt: skip
    if recorder:
        config["recorder"] = {"target": recorder, "spool_dir": "spool", "flush_interval_ms": 50}
    return config


@dataclass
class Recorded:
    db: Path
    session: str
    delta_url: str
    workdir: Path


@pytest.fixture(scope="module")
def delta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_fastmcp("delta", tmp_path_factory.mktemp("delta"))
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def changed_delta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_fastmcp("delta", tmp_path_factory.mktemp("delta2"), env={"DELTA_VARIANT": "changed"})
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def recorded(delta: str, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """An agent's session: the tool list, reads, a login with a password, state built in server-memory
    and read back, and a destructive call."""
    tmp = tmp_path_factory.mktemp("recorded")
    db = record_session(lambda target: slice_config(delta, tmp / "memory.jsonl", target), _agent, tmp)
    with connect(str(db)) as r:
        sessions = r.rows("SELECT DISTINCT session_id FROM spans WHERE method = 'tools/call'")
    assert PASSWORD.encode() not in db.read_bytes()
    assert len(sessions) == 1
    return Recorded(db, sessions[0]["session_id"], delta, tmp)


async def _agent(gw: RunningGateway) -> None:
    async with sdk_session(gw.url("/virtual/dbg")) as s:
        await s.list_tools()
        assert (await s.call_tool("user", {"user_id": 7})).structured_content["plan"] == "pro"
        assert json.loads(text_of(await s.call_tool("lookup", {"key": "k1"}))) == {"key": "k1", "value": "K1"}
        assert text_of(await s.call_tool("login", {"user": "ada", "password": PASSWORD})) == "welcome ada"
        entity = {"name": "ada", "entityType": "person", "observations": ["likes tea"]}
        await s.call_tool("create_entities", {"entities": [entity]})
        await s.call_tool("add_observations", {"observations": [{"entityName": "ada", "contents": ["rides"]}]})
        graph = await s.call_tool("read_graph", {})
        assert "rides" in text_of(graph)
        assert text_of(await s.call_tool("wipe", {"what": "cache"})) == "wiped cache"


def replay_cli(recorded: Recorded, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    import os

    run = subprocess.run(
        [sys.executable, "-m", "proxy", "replay", recorded.session, "--source", str(recorded.db), "--json", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip
    report = json.loads(run.stdout) if run.stdout.strip() else {}
    return run.returncode, report, run.stderr


def direct_config(recorded: Recorded, tmp: Path, delta_url: str) -> Path:
    """The gateway config with a fresh server-memory file: the state the recording started from."""
    path = tmp / "direct.yaml"
    path.write_text(yaml.safe_dump(slice_config(delta_url, tmp / "fresh-memory.jsonl")))
    return path


def by_tool(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {call["tool"]: call for call in report["calls"]}


async def call_log(url: str) -> list[str]:
    async with fastmcp_client(url) as direct:
        return list((await direct.call_tool("call_log", {})).structured_content["result"])


async def test_unchanged_backends_replay_with_zero_diffs(recorded: Recorded, tmp_path: Path) -> None:
    code, report, err = replay_cli(
        recorded, "--config", str(direct_config(recorded, tmp_path, recorded.delta_url)),
        "--secret", f"password={PASSWORD}", "--allow-destructive",
    )  # fmt: skip
    assert code == 0, (err, report)
    assert [c["tool"] for c in report["calls"]] == [
        "user", "lookup", "login", "create_entities", "add_observations", "read_graph", "wipe"]  # fmt: skip
    assert {c["outcome"] for c in report["calls"]} == {"same"}
    assert all(c["now_ms"] is not None and c["recorded_ms"] is not None for c in report["calls"])
    assert report["summary"]["exit_code"] == 0


async def test_changed_backend_is_reported_at_the_call_and_path(
    recorded: Recorded, changed_delta: str, tmp_path: Path
) -> None:
    code, report, err = replay_cli(
        recorded, "--config", str(direct_config(recorded, tmp_path, changed_delta)),
        "--secret", f"password={PASSWORD}", "--allow-destructive",
    )  # fmt: skip
    assert code == 1, (err, report)
    calls = by_tool(report)
    user = calls["user"]
    assert user["outcome"] == "changed"
    paths = {c["path"]: (c["old"], c["new"]) for c in user["changes"]}
    assert paths["$.structuredContent.plan"] == ("pro", "free")
    assert not any(p.startswith("$.content[0]") for p in paths)  # the text mirrors structuredContent: once
    assert user["notes"] == ["content[0].text mirrors structuredContent: its changes are reported there once"]
    assert paths["$.structuredContent.name"] == ("ada", None) and paths["$.structuredContent.display_name"] == (
        None,
        "ada",
    )
    renamed = {c["path"]: (c["old_absent"], c["new_absent"]) for c in user["changes"]}
    assert renamed["$.structuredContent.name"] == (False, True)  # gone now
    assert renamed["$.structuredContent.display_name"] == (True, False)  # new now
    assert not any("seen_at" in p or "request" in p for p in paths)  # volatile: timestamps, UUIDs
    assert calls["lookup"]["outcome"] == "error now" and "no such key" in json.dumps(calls["lookup"]["changes"])
    assert "no such key: k1" in calls["lookup"]["reason"]  # the error's first line
    for unchanged in ("login", "create_entities", "add_observations", "read_graph", "wipe"):
        assert calls[unchanged]["outcome"] == "same", calls[unchanged]


async def test_destructive_tool_is_skipped_and_never_reaches_the_backend(recorded: Recorded, tmp_path: Path) -> None:
    before = await call_log(recorded.delta_url)
    code, report, err = replay_cli(
        recorded, "--config", str(direct_config(recorded, tmp_path, recorded.delta_url)),
        "--secret", f"password={PASSWORD}",
    )  # fmt: skip
    assert code == 3, (err, report)  # nothing differs, but not everything was replayed
    wipe = by_tool(report)["wipe"]
    assert wipe["outcome"] == "skipped" and "destructiveHint" in wipe["reason"] and wipe["now_ms"] is None
    ran = (await call_log(recorded.delta_url))[len(before) :]
    assert ran == ["get_user", "lookup", "login"]  # wipe never ran


async def test_redacted_secret_without_value_is_not_replayable_and_not_sent(recorded: Recorded, tmp_path: Path) -> None:
    before = await call_log(recorded.delta_url)
    code, report, err = replay_cli(
        recorded, "--config", str(direct_config(recorded, tmp_path, recorded.delta_url)), "--tool", "login"
    )
    assert code == 3, (err, report)
    (login,) = report["calls"]
    assert login["outcome"] == "not replayable"
    assert "$.password" in login["reason"] and "SLICEWIRE_SECRET_PASSWORD" in login["reason"]
    assert (await call_log(recorded.delta_url))[len(before) :] == []
    # From the environment, the same call replays.
    code, report, err = replay_cli(
        recorded, "--config", str(direct_config(recorded, tmp_path, recorded.delta_url)), "--tool", "login",
        env={"SLICEWIRE_SECRET_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert code == 0 and report["calls"][0]["outcome"] == "same", (err, report)


async def test_set_overrides_an_argument_and_dry_run_sends_nothing(recorded: Recorded, tmp_path: Path) -> None:
    before = await call_log(recorded.delta_url)
    config = str(direct_config(recorded, tmp_path, recorded.delta_url))
    code, report, err = replay_cli(
        recorded, "--config", config, "--dry-run", "--secret", f"password={PASSWORD}", "--set", "1:$.user_id=8"
    )
    assert code == 3, err
    assert {c["outcome"] for c in report["calls"]} == {"dry run", "skipped"}
    sent = by_tool(report)
    assert sent["user"]["request"]["params"] == {"name": "get_user", "arguments": {"user_id": 8}}
    assert sent["login"]["request"]["params"]["arguments"]["password"] == "[SECRET]"  # never printed
    assert PASSWORD not in json.dumps(report) + err
    assert (await call_log(recorded.delta_url))[len(before) :] == []
    # The debugging loop: change a value, re-run, see the difference it makes.
    code, report, err = replay_cli(recorded, "--config", config, "--tool", "user", "--set", "$.user_id=8")
    assert code == 1, err
    assert {c["path"]: c["new"] for c in report["calls"][0]["changes"]}["$.structuredContent.id"] == 8


async def test_replay_through_a_gateway_is_recorded_as_a_replay(recorded: Recorded, tmp_path: Path) -> None:
    rec = RunningRecorder(tmp_path / "replays.duckdb", tmp_path)
    gw = RunningGateway(slice_config(recorded.delta_url, tmp_path / "memory.jsonl", rec.target), tmp_path)
    try:
        code, report, err = replay_cli(
            recorded, "--via", gw.base, "--secret", f"password={PASSWORD}", "--allow-destructive"
        )
        assert code == 0, (err, json.dumps([c for c in report["calls"] if c["outcome"] != "same"]))
        assert len(report["calls"]) == 7
        wait_until(lambda: gw.status()["recorder"]["sent"] >= gw.status()["recorder"]["emitted"] > 0, 20,
                   what="spans sent")  # fmt: skip
    finally:
        gw.stop()
        rec.stop()
    originals = [c["trace_id"] for c in report["calls"]]
    with connect(str(rec.db)) as r:
        replays = r.rows("SELECT trace_id, replay_of, tool_name FROM spans WHERE kind = 'SERVER' "
                         "AND method = 'tools/call' ORDER BY start_ns")  # fmt: skip
    assert [row["replay_of"] for row in replays] == originals
    assert not {row["trace_id"] for row in replays} & set(originals)  # new traces, linked


def test_bad_input_gets_one_line_and_exit_2(recorded: Recorded, tmp_path: Path) -> None:
    cases = [
        ([], "say where to replay"),
        (["--via", "http://127.0.0.1:1", "--set", "nonsense"], "expected [CALL:]PATH=VALUE"),
        (["--via", "http://127.0.0.1:1", "--ignore", "no-dollar"], "starts with '$'"),
        (
            ["--via", "http://127.0.0.1:1", "--tool", "nope"],
            "no recorded tools/call, prompts/get or resources/read matches",
        ),
        (["--via", "http://127.0.0.1:1", "--from", "99"], "the recording has 7 calls here"),
    ]
    for args, message in cases:
        code, _, err = replay_cli(recorded, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    missing = tmp_path / "nothing.duckdb"
    run = subprocess.run([sys.executable, "-m", "proxy", "replay", "s", "--source", str(missing), "--via", "http://x"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2 and "no such trace file" in run.stderr


# --- slicewire mock ------------------------------------------------------------------------------


@contextlib.contextmanager
def mock_server(recorded: Recorded, tmp: Path, *args: str) -> Iterator[str]:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "proxy", "mock", recorded.session, "--source", str(recorded.db),
         "--listen", f"127.0.0.1:{port}", *args],
        tmp / f"mock-{port}.log",
    )  # fmt: skip
    try:
        wait_until(port_open(port), 30, what="slicewire mock")
        yield f"http://127.0.0.1:{port}/virtual/dbg/mcp"
    finally:
        proc.stop()


RECORDED_TOOLS = ["user", "lookup", "login", "wipe", "create_entities", "add_observations", "read_graph"]


async def test_mock_answers_both_eras_as_recorded_and_explains_off_script_calls(
    recorded: Recorded, tmp_path: Path
) -> None:
    with mock_server(recorded, tmp_path) as url:
        async with fastmcp_client(url) as client:  # 2026-07-28: server/discover, stateless
            assert sorted(t.name for t in await client.list_tools()) == sorted(RECORDED_TOOLS)
            assert (await client.call_tool("user", {"user_id": 7})).structured_content["plan"] == "pro"
            assert text_of(await client.call_tool("login", {"user": "ada", "password": "anything"})) == "welcome ada"
            with pytest.raises(Exception) as off_script:
                await client.call_tool("user", {"user_id": 8})
            message = str(off_script.value)
            assert "closest recorded call #1 user differs at $.arguments.user_id: 7 recorded, 8 sent" in message
        async with sdk_session(url) as session:  # 2025-11-25: initialize, Mcp-Session-Id
            listed = await session.list_tools()
            assert sorted(t.name for t in listed.tools) == sorted(RECORDED_TOOLS)
            user = next(t for t in listed.tools if t.name == "user")
            assert user.annotations is not None and user.annotations.read_only_hint is True
            # The recorded sequence, in order, gets the recorded answers.
            assert json.loads(text_of(await session.call_tool("lookup", {"key": "k1"}))) == {"key": "k1", "value": "K1"}
            entity = {"name": "ada", "entityType": "person", "observations": ["likes tea"]}
            await session.call_tool("create_entities", {"entities": [entity]})
            graph = await session.call_tool("read_graph", {})
            assert "rides" in text_of(graph)  # the state the recording had, without server-memory running
            with pytest.raises(MCPError) as never_called:
                await session.call_tool("lookup", {"key": "k2"})
            assert "closest recorded call #2 lookup differs at $.arguments.key" in str(never_called.value)


async def test_strict_mock_wants_the_recorded_order(recorded: Recorded, tmp_path: Path) -> None:
    with mock_server(recorded, tmp_path, "--strict") as url:
        async with fastmcp_client(url) as client:
            with pytest.raises(Exception) as out_of_order:
                await client.call_tool("lookup", {"key": "k1"})
            assert "expected next (--strict) #1 user differs at the tool: user recorded, lookup sent" in str(
                out_of_order.value
            )
            assert (await client.call_tool("user", {"user_id": 7})).structured_content["id"] == 7
            assert json.loads(text_of(await client.call_tool("lookup", {"key": "k1"})))["value"] == "K1"


def test_mock_bad_input_gets_one_line(recorded: Recorded) -> None:
    for args, message in [
        (["nope-session"], "no recorded tools/call, prompts/get or resources/read matches session nope-session"),
        ([recorded.session, "--listen", "nowhere"], "--listen: expected host:port"),
    ]:
        run = subprocess.run([sys.executable, "-m", "proxy", "mock", *args, "--source", str(recorded.db)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    with socket.socket() as busy:  # a port another process holds: one line, exit 1, no "listening" line first
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "proxy", "mock", recorded.session, "--source", str(recorded.db),
             "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"slicewire: cannot listen on 127.0.0.1:{port}: the address is in use "
        "(another process listens there; choose another port)"
    ]


async def test_direct_replay_is_recorded_when_the_config_has_a_recorder(recorded: Recorded, tmp_path: Path) -> None:
    rec = RunningRecorder(tmp_path / "direct-replays.duckdb", tmp_path)
    try:
        config = slice_config(recorded.delta_url, tmp_path / "fresh.jsonl", rec.target)
        config["recorder"]["spool_dir"] = str(tmp_path / "spool")
        path = tmp_path / "direct-recorded.yaml"
        path.write_text(yaml.safe_dump(config))
        code, report, err = replay_cli(recorded, "--config", str(path), "--tool", "lookup")
        assert code == 0, (err, report)
        original = report["calls"][0]["trace_id"]

        def stored() -> list[dict[str, Any]]:
            with connect(rec.target) as r:
                return r.rows("SELECT trace_id, replay_of, kind, backend, request_payload FROM spans "
                              "WHERE kind IN ('SERVER', 'CLIENT') ORDER BY kind DESC")  # fmt: skip

        wait_until(lambda: len(stored()) == 2, 20, what="the replay's spans in the recorder")
        root, hop = stored()
        assert root["kind"] == "SERVER" and hop["kind"] == "CLIENT" and hop["backend"] == "/delta"
        assert root["replay_of"] == original and root["trace_id"] != original
        assert json.loads(root["request_payload"])["params"] == {"name": "lookup", "arguments": {"key": "k1"}}
    finally:
        rec.stop()


def test_a_parquet_export_replays_like_the_trace_file(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "session.parquet"
    run = subprocess.run(
        [sys.executable, "-m", "proxy", "export", str(out), "--from", str(recorded.db), "--session", recorded.session],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0 and "spans written" in run.stderr, run.stderr
    parquet = Recorded(out, recorded.session, recorded.delta_url, recorded.workdir)
    code, report, err = replay_cli(
        parquet, "--config", str(direct_config(recorded, tmp_path, recorded.delta_url)), "--tool", "lookup"
    )
    assert code == 0 and report["calls"][0]["outcome"] == "same", (err, report)
    with connect(str(out)) as r:  # the views work over the export too
        assert r.rows("SELECT count(*) AS n FROM traces WHERE name = 'tools/call lookup'")[0]["n"] == 1
        assert r.rows("SELECT count(*) AS n FROM sessions")[0]["n"] == 1


def test_trace_safe_pace_and_rules_file(recorded: Recorded, changed_delta: str, tmp_path: Path) -> None:
    config = str(direct_config(recorded, tmp_path, changed_delta))
    with connect(str(recorded.db)) as r:
        trace = r.rows("SELECT trace_id FROM spans WHERE kind = 'SERVER' AND tool_name = 'user'")[0]["trace_id"]
    # One trace, by a prefix of its id; a rules file that excuses the changed fields.
    rules = tmp_path / "rules.yaml"
    rules.write_text("ignore: ['$..plan', '$..name', '$..display_name']\n")
    code, report, err = replay_cli(recorded, "--config", config, "--trace", trace[:10], "--rules", str(rules))
    assert code == 0 and [c["tool"] for c in report["calls"]] == ["user"], (err, report)
    code, report, err = replay_cli(recorded, "--config", config, "--trace", trace[:10])
    assert code == 1 and report["calls"][0]["outcome"] == "changed", err
    # --safe: only tools annotated readOnlyHint run (user, lookup); the rest are skipped, not sent.
    code, report, err = replay_cli(recorded, "--config", config, "--safe", "--to", "4", "--ignore", "$..plan",
                                   "--ignore", "$..name", "--ignore", "$..display_name", "--pace", "x1000",
                                   "--secret", f"password={PASSWORD}")  # fmt: skip
    outcomes = {c["tool"]: c["outcome"] for c in report["calls"]}
    assert outcomes == {"user": "same", "lookup": "error now", "login": "skipped", "create_entities": "skipped"}, err
    assert code == 1
    code, _, err = replay_cli(recorded, "--config", config, "--pace", "sometimes")
    assert code == 2 and "expected fast, recorded or xN" in err


async def test_the_agents_recorded_answers_are_given_again(delta: str, tmp_path: Path) -> None:
    """A tool that asks the agent (elicitation): the replay answers as the agent did, through the
    gateway (the question relayed on the session's stream) and straight to the backend (2026-07-28
    InputRequiredResult, retried with inputResponses)."""
    config = slice_config(delta, tmp_path / "memory.jsonl")
    config["virtual_servers"][0]["tool_mappings"].append({"tool_name": "ask", "backend_server_path": "/delta"})
    rec = RunningRecorder(tmp_path / "asked.duckdb", tmp_path)
    gw = RunningGateway({**config, "recorder": {"target": rec.target, "spool_dir": str(tmp_path / "spool"),
                                                "flush_interval_ms": 50}}, tmp_path)  # fmt: skip

    async def elicit(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        return mt.ElicitResult(action="accept", content={"value": "grace"})

    try:
        try:
            async with sdk_session(gw.url("/virtual/dbg"), elicitation_callback=elicit) as session:
                assert text_of(await session.call_tool("ask", {"question": "Name?"})) == "hello grace"
            wait_until(lambda: gw.status()["recorder"]["sent"] >= gw.status()["recorder"]["emitted"] > 0, 20,
                       what="spans sent")  # fmt: skip
        finally:
            rec.stop()  # the trace file is read below
        with connect(str(rec.db)) as r:
            session_id = r.rows("SELECT session_id FROM spans WHERE tool_name = 'ask'")[0]["session_id"]
        asked = Recorded(rec.db, session_id, delta, tmp_path)
        code, report, err = replay_cli(asked, "--via", gw.base)
        assert code == 0 and report["calls"][0]["outcome"] == "same", (err, report)
        path = tmp_path / "direct-ask.yaml"
        path.write_text(yaml.safe_dump(config))
        code, report, err = replay_cli(asked, "--config", str(path))
        assert code == 0 and report["calls"][0]["outcome"] == "same", (err, report)
    finally:
        gw.stop()

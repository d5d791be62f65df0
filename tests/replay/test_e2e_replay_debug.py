"""Replay as an engineer debugging an agent uses it: a 10-call session over two backends (FastMCP
`delta`, server-everything) recorded through a real gateway, replayed by the real CLI against the
unchanged, the redefined and the changed backend, and across protocol eras. Schema drift, learned
noise, aligned lists, one report per mirrored change, error reasons, report files, per-tool
permission and setup/teardown hooks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from recorder import connect
from tests.proxy.clients import fastmcp_client, sdk_session
from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, port_open, start_fastmcp, wait_until
from tests.support.recorder import record_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

RESET = 'call:reset {"to": 0}'  # the setup hook: the counter `bump` counts from


def ops_config(delta: str, everything: str, recorder: str | None = None, delta_version: str = "auto") -> dict[str, Any]:
    config: dict[str, Any] = {
        "backends": [
            {"path": "/delta", "transport": "streamable-http", "url": delta, "protocol_version": delta_version},
            {"path": "/everything", "transport": "streamable-http", "url": everything},
        ],
        "virtual_servers": [
            {"path": "/virtual/ops", "server_name": "Ops", "public": True, "tool_mappings": [
                {"tool_name": name, "backend_server_path": "/delta"}
                for name in ("status", "events", "reset", "bump", "wipe", "lookup")
            ] + [{"tool_name": "get_user", "backend_server_path": "/delta", "alias": "user"},
                 {"tool_name": "echo", "backend_server_path": "/everything"}]},
        ],
    }  # fmt: skip
    if recorder:
        config["recorder"] = {"target": recorder, "spool_dir": "spool", "flush_interval_ms": 50}
    return config


@dataclass
class Session:
    db: Path
    session: str
    delta: str
    everything: str


def _start(tmp_path_factory: pytest.TempPathFactory, variant: str) -> Iterator[str]:
    env = {"DELTA_VARIANT": variant} if variant else None
    proc, url = start_fastmcp("delta", tmp_path_factory.mktemp(f"delta-{variant or 'same'}"), env=env)
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def delta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _start(tmp_path_factory, "")


@pytest.fixture(scope="module")
def redefined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _start(tmp_path_factory, "redefined")


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _start(tmp_path_factory, "changed")


def _session_of(db: Path) -> str:
    with connect(str(db)) as r:
        sessions = r.rows("SELECT DISTINCT session_id FROM spans WHERE method = 'tools/call'")
    assert len(sessions) == 1
    return str(sessions[0]["session_id"])


@pytest.fixture(scope="module")
def session(delta: str, backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The agent's session, from a 2026-07-28 client (fastmcp): 10 calls over both backends."""
    tmp = tmp_path_factory.mktemp("ops")

    async def agent(gw: RunningGateway) -> None:
        async with fastmcp_client(gw.url("/virtual/ops")) as client:
            await client.list_tools()
            await client.call_tool("status", {})
            await client.call_tool("events", {"limit": 5})
            await client.call_tool("user", {"user_id": 7})
            await client.call_tool("echo", {"message": "hi"})
            assert (await client.call_tool("bump", {})).structured_content == {"result": 1}
            await client.call_tool("bump", {})
            await client.call_tool("lookup", {"key": "k1"})
            await client.call_tool("wipe", {"what": "cache"})
            await client.call_tool("status", {})
            await client.call_tool("echo", {"message": "bye"})

    db = record_session(lambda target: ops_config(delta, backends["everything"], target), agent, tmp)
    return Session(db, _session_of(db), delta, backends["everything"])


def replay(s: Session, tmp: Path, *args: str, delta: str | None = None, version: str = "auto",
           json_out: bool = True) -> tuple[int, Any, str]:  # fmt: skip
    """`slicewire replay SESSION` straight to the backends of a config pointing at `delta`."""
    config = tmp / f"ops-{version}.yaml"
    config.write_text(yaml.safe_dump(ops_config(delta or s.delta, s.everything, delta_version=version)))
    run = subprocess.run(
        [sys.executable, "-m", "proxy", "replay", s.session, "--source", str(s.db), "--config", str(config),
         *(["--json"] if json_out else []), *args],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    out: Any = run.stdout
    if json_out and run.stdout.strip():
        out = json.loads(run.stdout)
    return run.returncode, out, run.stderr


def outcomes(report: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(c["index"], c["tool"], c["outcome"]) for c in report["calls"]]


def changes_of(report: dict[str, Any], index: int) -> list[tuple[str, str]]:
    call = next(c for c in report["calls"] if c["index"] == index)
    return [(c["kind"], c["path"]) for c in call["changes"]]


async def call_log(url: str) -> list[str]:
    async with fastmcp_client(url) as direct:
        return list((await direct.call_tool("call_log", {})).structured_content["result"])


ALLOW = ("--setup", RESET, "--allow", "bump", "--allow", "wipe")


def test_the_unchanged_system_learns_its_noise_then_replays_clean(session: Session, tmp_path: Path) -> None:
    code, report, err = replay(session, tmp_path, *ALLOW)
    # Epoch times, a prefixed request id and a timestamp inside prose are recognised as noise; the
    # random load is not: it is what --learn-noise is for.
    assert code == 1, err
    assert [o for o in outcomes(report) if o[2] != "same"] == [(1, "status", "changed"), (9, "status", "changed")]
    assert changes_of(report, 1) == [("changed", "$.structuredContent.load")]
    assert report["drift"] == [] and report["summary"]["definitions_changed"] == 0

    rules = tmp_path / "noise.yaml"
    code, learned, err = replay(session, tmp_path, *ALLOW, "--learn-noise", "3", "--rules", str(rules))
    assert code == 0, err
    assert learned["learned"] == {"status": ["$.structuredContent.load"]} and learned["runs"] == 3
    assert yaml.safe_load(rules.read_text())["tools"] == {"status": {"ignore": ["$.structuredContent.load"]}}
    code, report, err = replay(session, tmp_path, *ALLOW, "--rules", str(rules))
    assert code == 0, (err, [c for c in report["calls"] if c["outcome"] != "same"])
    assert {o[2] for o in outcomes(report)} == {"same"} and len(report["calls"]) == 10


def test_redefined_tools_are_reported_before_the_calls_with_their_own_exit_code(
    session: Session, redefined: str, tmp_path: Path
) -> None:
    quiet = (*ALLOW, "--ignore", "$.structuredContent.load")
    code, report, err = replay(session, tmp_path, *quiet, delta=redefined)
    assert code == 4, err  # every answer the same, but what the session used was redefined
    assert {o[2] for o in outcomes(report)} == {"same"}
    drift = {(d["kind"], d["name"], d["status"]): [(c["kind"], c["path"]) for c in d["changes"]]
             for d in report["drift"]}  # fmt: skip
    assert drift == {
        ("tool", "status", "changed"): [("changed", "$.description")],
        ("tool", "events", "changed"): [("added", "$.inputSchema.properties.since")],
    }
    code, report, _ = replay(session, tmp_path, *quiet, "--drift", "warn", delta=redefined)
    assert code == 0 and len(report["drift"]) == 2
    code, table, _ = replay(session, tmp_path, *quiet, delta=redefined, json_out=False)
    assert code == 4
    assert table.index("Definitions changed since the recording") < table.index("Replay against")
    assert "$.inputSchema.properties.since: + " in table


async def test_a_changed_system_is_reported_once_per_change_with_reasons_and_report_files(
    session: Session, changed: str, tmp_path: Path
) -> None:
    md, page = tmp_path / "replay.md", tmp_path / "replay.html"
    quiet = (*ALLOW, "--ignore", "$.structuredContent.load", "--drift", "warn")
    code, report, err = replay(session, tmp_path, *quiet, "--report", str(md), delta=changed)
    assert code == 1, err
    # An inserted event and an inserted tag: one change each, not a cascade down the lists.
    assert changes_of(report, 2) == [
        ("added", "$.structuredContent.events[1]"), ("added", "$.structuredContent.tags[0]")]  # fmt: skip
    user = next(c for c in report["calls"] if c["tool"] == "user")
    assert [c["path"] for c in user["changes"]] == [
        "$.structuredContent.name", "$.structuredContent.plan", "$.structuredContent.display_name"]  # fmt: skip
    assert user["notes"] == ["content[0].text mirrors structuredContent: its changes are reported there once"]
    lookup = next(c for c in report["calls"] if c["tool"] == "lookup")
    assert lookup["outcome"] == "error now" and lookup["reason"].endswith("no such key: k1")

    text = md.read_text()
    assert "### #7 lookup — error now" in text and "no such key: k1" in text
    assert '`` {"id":9,"what":"refunded"} ``' in text  # the added item, in full
    code, table, _ = replay(session, tmp_path, *quiet, "--report", str(page), delta=changed, json_out=False)
    assert code == 1
    assert "no such key: k1" in table  # the reason column is not empty for an error
    assert '$.structuredContent.events[1]: + {"id":9,"what":"refunded"}' in table
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<h3>#7 lookup — error now</h3>" in html
    assert "&quot;what&quot;: &quot;refunded&quot;" in html  # indented JSON in a <pre>


async def test_destructive_tools_are_allowed_one_by_one_and_hooks_set_the_state(
    session: Session, tmp_path: Path
) -> None:
    quiet = ("--ignore", "$.structuredContent.load")
    before = await call_log(session.delta)
    code, report, err = replay(session, tmp_path, *quiet, "--allow", "bump")
    assert code == 1, err  # without a setup hook the counter goes on from where it was
    by_index = {c["index"]: c for c in report["calls"]}
    assert by_index[5]["outcome"] == "changed" and by_index[8]["outcome"] == "skipped"
    assert "destructiveHint" in by_index[8]["reason"]
    ran = (await call_log(session.delta))[len(before) :]
    assert "wipe" not in ran and ran.count("bump") == 2

    marker = tmp_path / "setup-ran"
    before = await call_log(session.delta)
    code, report, err = replay(session, tmp_path, *quiet, "--allow", "bump", "--setup", f"touch {marker}",
                               "--setup", RESET, "--teardown", 'call:reset {"to": 100}')  # fmt: skip
    assert code == 3, err  # the same answers; wipe not replayed
    assert marker.exists()
    ran = (await call_log(session.delta))[len(before) :]
    assert ran[0] == "reset" and ran[-1] == "reset" and ran.count("bump") == 2

    before = await call_log(session.delta)
    code, _, err = replay(session, tmp_path, *quiet, "--setup", "echo fixtures missing >&2; exit 3")
    assert code == 2 and err.strip().splitlines() == [
        "slicewire: --setup 'echo fixtures missing >&2; exit 3' exited with 3: fixtures missing"]  # fmt: skip
    assert await call_log(session.delta) == before  # nothing was sent
    code, _, err = replay(session, tmp_path, "--allow", "nope")
    assert code == 2 and "--allow nope: no selected call uses that tool" in err
    code, _, err = replay(session, tmp_path, "--setup", "call:reset [1]")
    assert code == 2 and "must be a JSON object" in err


def test_replays_across_eras_show_no_spurious_differences(
    session: Session, delta: str, backends: dict[str, str], tmp_path: Path
) -> None:
    quiet = (*ALLOW, "--ignore", "$.structuredContent.load")
    # Recorded from a 2026-07-28 client and backend, replayed against the backend in 2025-11-25.
    code, report, err = replay(session, tmp_path, *quiet, version="2025-11-25")
    assert code == 0, (err, [c for c in report["calls"] if c["outcome"] != "same"])

    # Recorded from a 2025-11-25 client with the backend in 2025-11-25, replayed in 2026-07-28.
    tmp = tmp_path / "legacy"
    tmp.mkdir()

    async def agent(gw: RunningGateway) -> None:
        async with sdk_session(gw.url("/virtual/ops")) as s:
            await s.list_tools()
            await s.call_tool("status", {})
            await s.call_tool("events", {"limit": 5})
            await s.call_tool("user", {"user_id": 7})
            await s.call_tool("echo", {"message": "hi"})

    db = record_session(lambda t: ops_config(delta, backends["everything"], t, delta_version="2025-11-25"), agent, tmp)
    legacy = Session(db, _session_of(db), delta, backends["everything"])
    with connect(str(db)) as r:
        eras = {row["protocol_era"] for row in r.rows("SELECT protocol_era FROM spans WHERE method = 'tools/call'")}
    assert eras == {"legacy"}
    code, report, err = replay(legacy, tmp, "--ignore", "$.structuredContent.load", version="2026-07-28")
    assert code == 0, (err, [c for c in report["calls"] if c["outcome"] != "same"])
    assert len(report["calls"]) == 4


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60)


async def test_a_cassette_file_is_served_by_the_pytest_fixture_matched_loosely_and_extended_live(
    session: Session, tmp_path: Path, slicewire_mock: Any
) -> None:
    from mcp.shared.exceptions import MCPError

    file = tmp_path / "ops.json"
    made = cli("cassette", session.session, str(file), "--source", str(session.db))
    assert made.returncode == 0, made.stderr
    data = json.loads(file.read_text())
    assert data["slicewire_cassette"] == 1 and data["virtual_server"] == "/virtual/ops" and len(data["calls"]) == 10
    recorded_status = data["calls"][0]["answer"]["result"]["structuredContent"]

    url = slicewire_mock(file)
    async with fastmcp_client(url) as client:
        assert {t.name for t in await client.list_tools()} >= {"status", "events", "user", "echo"}
        assert (await client.call_tool("status", {})).structured_content == recorded_status
        expected = "closest recorded call #2 events differs at $.arguments.limit: 5 recorded, 6 sent"
        with pytest.raises(Exception, match=re.escape(expected)):
            await client.call_tool("events", {"limit": 6})
    async with sdk_session(slicewire_mock(file, match_ignore=["$.limit"])) as s:  # the other era, looser matching
        assert (await s.call_tool("events", {"limit": 6})).structured_content["tags"] == ["vip", "eu", "annual"]
        with pytest.raises(MCPError, match="Not in the recording"):
            await s.call_tool("user", {"user_id": 8})

    # --pass-through: a call not in the cassette goes to the live server, and is kept in the file.
    port = free_port()
    proc = Proc([sys.executable, "-m", "proxy", "mock", "--cassette", str(file), "--listen", f"127.0.0.1:{port}",
                 "--pass-through", session.delta], tmp_path / "mock.log")  # fmt: skip
    try:
        wait_until(port_open(port), 30, what="the pass-through mock")
        async with fastmcp_client(f"http://127.0.0.1:{port}/virtual/ops/mcp") as client:
            live = await client.call_tool("events", {"limit": 7})
            assert live.structured_content["events"][0] == {"id": 1, "what": "created"}
    finally:
        proc.stop()
    extended = json.loads(file.read_text())["calls"]
    assert len(extended) == 11 and extended[-1]["arguments"] == {"limit": 7} and extended[-1]["trace_id"] == ""
    async with fastmcp_client(slicewire_mock(file)) as client:  # now answered from the cassette
        assert (await client.call_tool("events", {"limit": 7})).structured_content["tags"] == ["vip", "eu", "annual"]

    bad = cli("mock", "--cassette", str(file), "--pass-through", session.delta, "--strict")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "slicewire: --pass-through cannot go with --strict (a fetched call has no recorded place)")  # fmt: skip
    bad = cli("mock", "--cassette", str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "missing.json: No such file or directory" in bad.stderr
    bad = cli("cassette", session.session, str(tmp_path / "ops.yaml"), "--source", str(session.db))
    assert bad.returncode == 2 and "a cassette file is .json" in bad.stderr

"""Replay's pure parts: the diff and its rules, argument rebuilding, outcomes, safety, cassette matching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from replay import RecordedCall, Rules, RulesError, compare, diff
from replay._diff import ABSENT, generalize, parse_path, render_path
from replay._mock import NOT_RECORDED, Cassette, CassetteError
from replay._rebuild import Secrets, UsageError, parse_override, parse_secret, rebuild
from replay._run import error_line, unsafe


def call(tool: str = "get", arguments: dict[str, Any] | None = None, index: int = 1, **kw: Any) -> RecordedCall:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments or {}},
    }
    return RecordedCall(index=index, trace_id=f"{index:032x}", span_id=f"{index:016x}", session_id="s",
                        virtual_server="/v", tool=tool, backend="/b", backend_tool=tool, start_ns=index,
                        duration_ns=1, request=request, response=kw.pop("response", {"result": {"ok": index}}),
                        truncated=kw.pop("truncated", False), era="legacy", **kw)  # fmt: skip


def test_paths_parse_and_render_round_trip() -> None:
    for text in ["$.a.b", "$.a[0].b", '$["dotted.key"].x', "$.content[0].text(json).name"]:
        assert render_path(parse_path(text)) == text
    with pytest.raises(RulesError, match="starts with"):
        parse_path("a.b")
    with pytest.raises(RulesError, match="cannot read"):
        parse_path("$.a[")


def test_diff_reports_paths_and_absent_values() -> None:
    old = {"a": 1, "b": {"c": [1, 2]}, "gone": True}
    new = {"a": 2, "b": {"c": [1]}, "added": None}
    changes = {c.path: (c.old, c.new) for c in diff(old, new)}
    assert set(changes) == {"$.a", "$.b.c[1]", "$.gone", "$.added"}
    assert changes["$.a"] == (1, 2)
    assert repr(changes["$.b.c[1]"][1]) == "(absent)" and repr(changes["$.added"][0]) == "(absent)"
    assert diff(1, 1.0)  # a type change is a change
    assert not diff({"x": [1, {"y": "z"}]}, {"x": [1, {"y": "z"}]})


def test_default_rules_ignore_meta_and_volatile_values_only_in_kind() -> None:
    old = {"_meta": {"x": 1}, "at": "2026-11-21T10:00:00Z", "id": "0a1b2c3d-0000-4000-8000-000000000000", "n": "a"}
    new = {"_meta": {"x": 2}, "at": "2026-11-22T11:30:00.123+01:00", "id": "ffffffff-0000-4000-8000-000000000000",
           "n": "b"}  # fmt: skip
    assert [c.path for c in diff(old, new)] == ["$.n"]
    assert [c.path for c in diff({"at": "2026-11-21T10:00:00Z"}, {"at": "not a time"})] == ["$.at"]
    strict = Rules(ignore_meta=False, volatile=False)
    assert {c.path for c in diff(old, new, strict)} == {"$._meta.x", "$.at", "$.id", "$.n"}


def test_user_rules_wildcards_and_rules_file(tmp_path: Path) -> None:
    old = {"items": [{"id": 1, "ts": 5}, {"id": 2, "ts": 6}], "deep": {"x": {"etag": "a"}}, "keep": 1}
    new = {"items": [{"id": 1, "ts": 7}, {"id": 2, "ts": 8}], "deep": {"x": {"etag": "b"}}, "keep": 2}
    rules = Rules.default().with_ignored(["$.items[*].ts", "$..etag"])
    assert [c.path for c in diff(old, new, rules)] == ["$.keep"]
    file = tmp_path / "rules.yaml"
    file.write_text("ignore: ['$.keep', '$..etag', '$.items[*].ts']\n")
    assert diff(old, new, Rules.load(file)) == []
    file.write_text("ignor: []\n")
    with pytest.raises(RulesError, match="expected keys"):
        Rules.load(file)


def test_json_inside_text_content_is_compared_as_json() -> None:
    old = {"content": [{"type": "text", "text": '{"name": "ada", "n": 1}'}]}
    new = {"content": [{"type": "text", "text": '{"n": 1, "name": "bob"}'}]}
    assert [(c.path, c.old, c.new) for c in diff(old, new)] == [("$.content[0].text(json).name", "ada", "bob")]
    assert diff({"t": '{"a": 1}'}, {"t": '{"a":1}'}) == []  # the same JSON, spelled differently
    assert [c.path for c in diff({"t": "plain"}, {"t": "other"})] == ["$.t"]


def test_outcomes() -> None:
    rules = Rules.default()
    ok, fail = {"result": {"v": 1}}, {"result": {"isError": True, "content": []}}
    assert compare(ok, {"result": {"v": 1, "resultType": "complete"}}, rules) == ("same", [], [])
    assert compare(ok, {"result": {"v": 2}}, rules)[0] == "changed"
    assert compare(ok, fail, rules)[0] == "error now"
    assert compare(ok, {"error": {"code": -32602, "message": "bad"}}, rules)[0] == "error now"
    assert compare(fail, ok, rules)[0] == "error fixed"
    assert compare(fail, fail, rules) == ("same", [], [])


def test_noise_kinds_epochs_prefixed_ids_and_prose() -> None:
    old = {"ts": 1764750000, "ms": 1764750000123, "req": "req_8fK2x9Qa1", "msg": "built 2026-12-03T10:00:00Z by "
           "req_8fK2x9Qa1 in 12:00:01", "count": 7, "user": "user_12345678", "day": "due 2026-12-03"}  # fmt: skip
    new = {"ts": 1764753600, "ms": 1764753600999, "req": "req_Zz91kLm0q", "msg": "built 2026-12-04T11:30:00+01:00 "
           "by req_Zz91kLm0q in 12:30:59", "count": 8, "user": "user_87654321", "day": "due 2026-12-04"}  # fmt: skip
    assert [c.path for c in diff(old, new)] == ["$.count", "$.user", "$.day"]
    assert [c.path for c in diff({"r": "req_8fK2x9Qa1"}, {"r": "cus_Zz91kLm0q"})] == ["$.r"]  # another prefix
    assert [c.path for c in diff({"t": 1764750000}, {"t": 1764750000123})] == ["$.t"]  # another unit
    assert len(diff(old, new, Rules(volatile=False))) == 7


def test_lists_are_aligned_so_an_insertion_is_one_change() -> None:
    old = {"lines": ["a", "b", "c", "d"]}
    inserted = diff(old, {"lines": ["a", "x", "b", "c", "d"]})
    assert [(c.path, c.kind, c.new) for c in inserted] == [("$.lines[1]", "added", "x")]
    removed = diff(old, {"lines": ["a", "c", "d"]})
    assert [(c.path, c.kind, c.old) for c in removed] == [("$.lines[1]", "removed", "b")]
    # By id: a changed field is reported at the recorded position; a new item once; a new order once.
    old_items = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    new_items = [{"id": 3, "v": "c"}, {"id": 4, "v": "d"}, {"id": 1, "v": "A"}, {"id": 2, "v": "b"}]
    changes = {(c.path, c.kind): (c.old, c.new) for c in diff(old_items, new_items)}
    assert changes == {("$[0].v", "changed"): ("a", "A"), ("$[1]", "added"): (ABSENT, {"id": 4, "v": "d"}),
                       ("$", "reordered"): ([1, 2, 3], [3, 1, 2])}  # fmt: skip
    # Items that differ only in volatile values align with their counterparts.
    events = [{"at": f"2026-12-03T10:00:0{i}Z", "what": w} for i, w in enumerate("abc")]
    later = [{"at": f"2026-12-04T09:00:0{i}Z", "what": w} for i, w in enumerate("zabc")]
    assert [(c.path, c.kind) for c in diff(events, later)] == [("$[0]", "added")]


def test_a_text_block_mirroring_structured_content_is_reported_once() -> None:
    def result(plan: str) -> dict[str, Any]:
        data = {"name": "ada", "plan": plan}
        return {"result": {"content": [{"type": "text", "text": json.dumps(data)}], "structuredContent": data}}

    outcome, changes, notes = compare(result("pro"), result("free"), Rules.default())
    assert outcome == "changed" and [c.path for c in changes] == ["$.structuredContent.plan"]
    assert notes == ["content[0].text mirrors structuredContent: its changes are reported there once"]
    wrapped = {"result": {"content": [{"type": "text", "text": "[1, 2]"}], "structuredContent": {"result": [1, 2]}}}
    wrapped_now = {"result": {"content": [{"type": "text", "text": "[1, 3]"}], "structuredContent": {"result": [1, 3]}}}
    assert [c.path for c in compare(wrapped, wrapped_now, Rules.default())[1]] == ["$.structuredContent.result[1]"]

    def file(text: str) -> dict[str, Any]:  # server-filesystem: the text, and {"content": the text}
        return {"result": {"content": [{"type": "text", "text": text}], "structuredContent": {"content": text}}}

    assert [c.path for c in compare(file("Reset it.\n"), file("Unplug it.\n"), Rules.default())[1]] == [
        "$.structuredContent.content"]  # fmt: skip
    # A text that stops mirroring is a change of its own.
    torn = result("free")
    torn["result"]["content"][0]["text"] = "plain words"
    assert {c.path for c in compare(result("pro"), torn, Rules.default())[1]} == {
        "$.content[0].text", "$.structuredContent.plan"}  # fmt: skip


def test_rules_per_tool_and_error_lines(tmp_path: Path) -> None:
    file = tmp_path / "noise.yaml"
    file.write_text("tools:\n  get_user:\n    ignore: ['$.structuredContent.etag']\n")
    rules = Rules.load(file)
    old, new = {"structuredContent": {"etag": "a"}}, {"structuredContent": {"etag": "b"}}
    assert diff(old, new, rules.for_tool("get_user")) == []
    assert [c.path for c in diff(old, new, rules.for_tool("other"))] == ["$.structuredContent.etag"]
    file.write_text("tools:\n  get_user: ['$.x']\n")
    with pytest.raises(RulesError, match="'tools' must map"):
        Rules.load(file)
    assert generalize("$.items[3].rows[0].ts") == "$.items[*].rows[*].ts"
    text = "Error calling tool: no such key\nmore"
    failed = {"result": {"isError": True, "content": [{"type": "text", "text": text}]}}
    assert error_line(failed) == "Error calling tool: no such key"
    assert error_line({"error": {"code": -32602, "message": "bad arguments"}}) == "bad arguments"
    assert error_line({"result": {"content": []}}) == ""


def test_overrides_and_secrets() -> None:
    recorded = call("login", {"user": "ada", "password": "[REDACTED]", "auth": "Bearer [REDACTED]", "n": [1, 2]})
    secrets = Secrets({"password": "pw"}, environ={"SLICEWIRE_SECRET_AUTH": "tok"})
    rebuilt = rebuild(recorded, [parse_override("1:$.n[1]=5"), parse_override('user="bo"')], secrets)
    assert rebuilt.arguments == {"user": "bo", "password": "pw", "auth": "Bearer tok", "n": [1, 5]}
    assert not rebuilt.missing
    assert recorded.arguments is not None and recorded.arguments["password"] == "[REDACTED]"  # untouched
    missing = rebuild(recorded, [], Secrets({}, environ={})).missing
    assert [m.split(" ")[0] for m in missing] == ["$.password", "$.auth"]
    assert rebuild(recorded, [parse_override("login:$.n[9]=1")], secrets).unapplied == ["$.n[9]"]
    # Without a call, only calls that have the path are changed.
    other = rebuild(call("other", {"x": 1}), [parse_override("$.user=1")], secrets)
    assert other.arguments == {"x": 1} and not other.unapplied
    assert rebuild(call("t", {"a": 1}, truncated=True), [], secrets).arguments is None
    # The agent's recorded answers (elicitation) are filled the same way, or named as missing.
    asked = call("ask", {}, answers=[("elicitation/create", {"result": {"content": {"password": "[REDACTED]"}}})])
    assert rebuild(asked, [], secrets).answers == [("elicitation/create", {"result": {"content": {"password": "pw"}}})]
    assert (
        "the agent's answer to elicitation/create: $.result.content.password"
        in rebuild(asked, [], Secrets({}, environ={})).missing[0]
    )
    for bad in ["nonsense", "$.a[*]=1", "$.a..b=1"]:
        with pytest.raises(UsageError):
            parse_override(bad)
    assert parse_secret("$.api_key=x=y") == ("api_key", "x=y")
    with pytest.raises(UsageError):
        parse_secret("novalue")


def test_safety_hints() -> None:
    c = call("wipe")
    destructive = {"wipe": {"name": "wipe", "annotations": {"destructiveHint": True}}}
    read_only = {"wipe": {"name": "wipe", "annotations": {"readOnlyHint": True}}}
    plain = {"wipe": {"name": "wipe"}}
    assert "destructiveHint" in (unsafe(c, [destructive], False) or "")
    assert "destructiveHint" in (unsafe(c, [read_only, destructive], False) or "")  # either list says so
    assert unsafe(c, [plain], False) is None
    assert "readOnlyHint" in (unsafe(c, [plain], True) or "")
    assert unsafe(c, [read_only], True) is None
    assert "in no tool list" in (unsafe(c, [], True) or "")


def test_cassette_matching() -> None:
    calls = [
        call("get", {"id": 1}, 1, response={"result": {"v": "first"}}),
        call("get", {"id": 1}, 2, response={"result": {"v": "second"}}),
        call("login", {"password": "[REDACTED]", "note": "Bearer [REDACTED] end"}, 3),
        call("get", {"id": 2}, 4, response={"error": {"code": -32000, "message": "boom"}}),
    ]
    tools = [{"name": "get"}, {"name": "login"}]
    cassette = Cassette.from_calls(calls, tools)
    assert cassette.answer("get", {"id": 1}) == {"result": {"v": "first"}}
    assert cassette.answer("get", {"id": 1}) == {"result": {"v": "second"}}
    assert cassette.answer("get", {"id": 1}) == {"result": {"v": "second"}}  # used up: the last again
    assert cassette.answer("get", {"id": 2}) == {"error": {"code": -32000, "message": "boom"}}
    assert "result" in cassette.answer("login", {"password": "any", "note": "Bearer xyz end"})
    off = cassette.answer("login", {"password": "any", "note": "Basic xyz end"})["error"]
    assert off["code"] == NOT_RECORDED and "$.arguments.note" in off["message"]
    never = cassette.answer("nope", {})["error"]
    assert "tools/call nope was never made in it" in never["message"] and "get, login" in never["message"]
    closest = cassette.answer("get", {"id": 3})["error"]
    assert closest["data"]["closest_recorded_call"]["index"] == 1  # ties: the earliest
    assert closest["data"]["differences"] == [{"path": "$.arguments.id", "recorded": 1, "sent": 3}]
    assert "differs at $.arguments.id: 1 recorded, 3 sent" in closest["message"]

    strict = Cassette.from_calls(calls, tools, strict=True)
    assert "expected next (--strict) #1 get" in strict.answer("login", {})["error"]["message"]
    answers = [strict.answer(c.tool, dict(c.arguments or {})) for c in calls]
    assert answers == [cassette_answer(c) for c in calls]
    assert "all were made" in strict.answer("get", {"id": 1})["error"]["message"]


def test_cassette_files_and_matching_that_ignores_argument_paths(tmp_path: Path) -> None:
    calls = [call("search", {"q": "router", "request_id": "r-1", "opts": {"at": 1, "n": 5}}, 1,
                  response={"result": {"hits": 3}})]  # fmt: skip
    about = {"session": "s", "virtual_server": "/v", "server_info": {"name": "x"}}
    loose = Cassette.from_calls(calls, [{"name": "search"}], ignore=["$.request_id", "$..at"], about=about)
    assert loose.answer("search", {"q": "router", "request_id": "r-2", "opts": {"at": 9, "n": 5}}) == {
        "result": {"hits": 3}}  # fmt: skip
    off = loose.answer("search", {"q": "modem", "request_id": "r-2", "opts": {"at": 9, "n": 5}})["error"]
    assert [d["path"] for d in off["data"]["differences"]] == ["$.arguments.q"]  # ignored paths not named
    assert "error" in Cassette.from_calls(calls, [{"name": "search"}]).answer("search", {"q": "router"})

    file = tmp_path / "c.json"
    loose.add("tools/call", "search", {"q": "modem"}, {"result": {"hits": 0}})
    loose.save(file)
    again = Cassette.load(file)
    assert again.about == {"session": "s", "virtual_server": "/v", "server_info": {"name": "x"}}
    assert again.answer("search", {"q": "modem"}) == {"result": {"hits": 0}}
    assert [e.index for e in again.entries] == [1, 2] and again.tools == [{"name": "search"}]
    file.write_text('{"calls": []}')
    with pytest.raises(CassetteError, match="not a slicewire cassette"):
        Cassette.load(file)
    file.write_text("{nope")
    with pytest.raises(CassetteError, match="not JSON"):
        Cassette.load(file)


def cassette_answer(c: RecordedCall) -> dict[str, Any]:
    assert c.response is not None
    return c.response

"""Re-issue recorded calls in their recorded order and classify each new answer.

    results = await replay(calls, target, Options(...), on_result=print)

Per call, in order: rebuild the arguments (overrides, secrets), check safety, send (or, with
`dry_run`, only say what would be sent), compare the answer with the recorded one. Outcomes:

    same            the answer matches the recorded one under the diff rules
    changed         it differs; `changes` lists JSON paths with old -> new
    error now       it worked when recorded and fails now
    error fixed     it failed when recorded and works now
    not replayable  it cannot be rebuilt (redacted value missing, payload cut, no backend): not sent
    skipped         destructive (or not read-only with `safe`) and not allowed: not sent
    not run         an earlier call differed and `stop_on_diff` is set
    dry run         `dry_run`: shown, not sent
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._diff import MIRROR_NOTE, Change, Rules, diff, fold_mirrors, generalize
from ._rebuild import Override, Secrets, rebuild
from ._select import RecordedCall
from ._targets import Target, TargetError

__all__ = ["DIFFERENT", "Options", "Result", "compare", "error_line", "learn", "replay"]

DIFFERENT = ("changed", "error now", "error fixed")


@dataclass
class Options:
    pace: float | None = None  # None: as fast as possible; 1.0: recorded gaps; N: gaps / N
    stop_on_diff: bool = False
    overrides: list[Override] = field(default_factory=list)
    secrets: Secrets = field(default_factory=lambda: Secrets({}))
    allow_destructive: bool = False
    safe: bool = False  # only tools annotated readOnlyHint: true
    dry_run: bool = False
    rules: Rules = field(default_factory=Rules.default)
    allowed: frozenset[str] = frozenset()  # tools run whatever their hints say (--allow TOOL)


@dataclass
class Result:
    call: RecordedCall
    outcome: str
    changes: list[Change] = field(default_factory=list)
    reason: str = ""  # why it was not sent, or the first line of the error it answered
    notes: list[str] = field(default_factory=list)
    recorded_ns: int | None = None
    now_ns: int | None = None
    sent: dict[str, Any] | None = None  # --dry-run: the request, secrets masked

    @property
    def different(self) -> bool:
        return self.outcome in DIFFERENT

    def as_dict(self) -> dict[str, Any]:
        c = self.call
        return {
            "index": c.index, "trace_id": c.trace_id, "span_id": c.span_id, "method": c.method, "tool": c.tool,
            "backend": c.backend,
            "outcome": self.outcome, "reason": self.reason or None,
            "changes": [change.as_dict() for change in self.changes], "notes": self.notes,
            "recorded_ms": None if self.recorded_ns is None else round(self.recorded_ns / 1e6, 3),
            "now_ms": None if self.now_ns is None else round(self.now_ns / 1e6, 3),
            **({"request": self.sent} if self.sent is not None else {}),
        }  # fmt: skip


def _failed(message: dict[str, Any]) -> bool:
    if "error" in message:
        return True
    result = message.get("result")
    return isinstance(result, dict) and result.get("isError") is True


def _body(message: dict[str, Any]) -> Any:
    if "result" not in message:
        return {"error": message.get("error")}
    result = message["result"]
    if isinstance(result, dict) and result.get("resultType") == "complete":
        # 2026-07-28 results say resultType "complete"; 2025-11-25 results say nothing: same answer.
        result = {k: v for k, v in result.items() if k != "resultType"}
    return result


def compare(recorded: dict[str, Any], now: dict[str, Any], rules: Rules) -> tuple[str, list[Change], list[str]]:
    """Outcome, changes and notes between two JSON-RPC answers (ids and envelopes are not compared).
    A text block mirroring `structuredContent` on both sides is compared once, as structuredContent."""
    old, new, mirrored = fold_mirrors(_body(recorded), _body(now))
    changes = diff(old, new, rules)
    notes = [MIRROR_NOTE.format(i) for i in mirrored] if changes else []
    was, now_failed = _failed(recorded), _failed(now)
    if now_failed and not was:
        return "error now", changes, notes
    if was and not now_failed:
        return "error fixed", changes, notes
    return ("changed" if changes else "same"), changes, notes


def error_line(message: dict[str, Any]) -> str:
    """The first line of what an answer says went wrong: a JSON-RPC error's message, or the text of a
    result with `isError`; "" when it did not fail."""
    error = message.get("error")
    if isinstance(error, dict):
        text = str(error.get("message", ""))
    elif _failed(message):
        blocks = message["result"].get("content")
        texts = [b["text"] for b in blocks or [] if isinstance(b, dict) and isinstance(b.get("text"), str)]
        text = str(texts[0]) if texts else "isError: true"
    else:
        return ""
    return text.strip().split("\n", 1)[0]


def _annotations(tool: dict[str, Any] | None) -> dict[str, Any]:
    annotations = (tool or {}).get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def unsafe(call: RecordedCall, tools: list[dict[str, dict[str, Any]]], safe: bool) -> str | None:
    """Why the call must not run without --allow-destructive, or None. A tool is destructive when
    any of the tool lists (today's, the recorded one) says `destructiveHint: true` and not
    `readOnlyHint: true`; with `safe`, anything not annotated `readOnlyHint: true` is held back.
    Reading a resource or getting a prompt changes nothing: always safe."""
    if call.method != "tools/call":
        return None
    found = [listing[call.tool] for listing in tools if call.tool in listing]
    read_only = bool(found) and all(_annotations(t).get("readOnlyHint") is True for t in found)
    destructive = any(
        _annotations(t).get("destructiveHint") is True and _annotations(t).get("readOnlyHint") is not True
        for t in found
    )
    if destructive:
        return f"{call.tool} is annotated destructiveHint: true (pass --allow-destructive to run it)"
    if safe and not read_only:
        why = "is not annotated readOnlyHint: true" if found else "is in no tool list (its hints are unknown)"
        return f"{call.tool} {why} and --safe is set (pass --allow-destructive to run it)"
    return None


def _mask(value: Any, recorded: Any) -> Any:
    """The arguments with every value that replaced a redaction marker shown as the marker again."""
    if isinstance(value, dict) and isinstance(recorded, dict):
        return {k: _mask(v, recorded.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(recorded, list):
        return [_mask(v, recorded[i] if i < len(recorded) else None) for i, v in enumerate(value)]
    if isinstance(recorded, str) and "[REDACTED]" in recorded:
        return "[SECRET]"
    return value


async def replay(
    calls: list[RecordedCall],
    target: Target,
    options: Options,
    tools: list[dict[str, dict[str, Any]]],
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """Replay `calls` in order against `target`. `tools`: tool lists consulted for safety hints."""
    results: list[Result] = []
    stop = False
    t0 = time.monotonic()
    first_ns = calls[0].start_ns if calls else 0
    for call in calls:
        recorded, recorded_ns = target.recorded(call)
        result = Result(call, "", recorded_ns=recorded_ns)
        results.append(result)
        if stop:
            result.outcome, result.reason = "not run", "an earlier call differed (--stop-on-diff)"
            on_result(result)
            continue
        rebuilt = rebuild(call, options.overrides, options.secrets)
        arguments = rebuilt.arguments
        why = _not_replayable(call, target, arguments, rebuilt.missing, rebuilt.unapplied, recorded)
        if why:
            result.outcome, result.reason = "not replayable", why
        elif (danger := unsafe(call, tools, options.safe)) and not (
            options.allow_destructive or call.tool in options.allowed
        ):
            result.outcome, result.reason = "skipped", danger
        elif options.dry_run:
            assert arguments is not None
            result.outcome = "dry run"
            result.sent = target.request(call, _mask(arguments, call.arguments))
        else:
            assert arguments is not None and recorded is not None
            if options.pace:
                due = t0 + (call.start_ns - first_ns) / 1e9 / options.pace
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            reply = await target.call(call, arguments, rebuilt.answers)
            result.now_ns = reply.duration_ns
            rules = options.rules.for_tool(call.tool)
            result.outcome, result.changes, result.notes = compare(recorded, reply.message, rules)
            if result.outcome == "error fixed":
                result.reason = "recorded: " + error_line(recorded)
            elif result.outcome != "same":
                result.reason = error_line(reply.message)
            stop = options.stop_on_diff and result.different
        on_result(result)
    return results


def learn(runs: list[list[Result]]) -> tuple[dict[str, list[str]], list[str]]:
    """What varied between replays of an unchanged system: per tool, the changed paths with list
    positions generalized (`$.items[*].ts`), and warnings for calls that cannot teach anything (they
    failed, or were not sent). A list whose order varied is named in a warning, not learned: ignoring
    it would hide every change inside it."""
    learned: dict[str, set[str]] = {}
    warnings: dict[str, None] = {}
    for results in runs:
        for r in results:
            if r.outcome in ("error now", "error fixed", "not replayable", "skipped"):
                warnings[f"#{r.call.index} {r.call.tool}: {r.outcome} ({r.reason}); nothing learned from it"] = None
                continue
            for change in r.changes:
                if change.kind == "reordered":
                    warnings[f"{r.call.tool}: the order of {change.path} varies (--ignore it to accept)"] = None
                else:
                    learned.setdefault(r.call.tool, set()).add(generalize(change.path))
    return {tool: sorted(paths) for tool, paths in sorted(learned.items())}, list(warnings)


def _not_replayable(
    call: RecordedCall,
    target: Target,
    arguments: dict[str, Any] | None,
    missing: list[str],
    unapplied: list[str],
    recorded: dict[str, Any] | None,
) -> str:
    if arguments is None:
        if call.truncated:
            return "its request was cut at the recorder's payload cap (recorder.max_payload_bytes)"
        return "its request was not recorded (recorder.payloads is not 'all')"
    if missing:
        return "redacted when recorded, no value given: " + ", ".join(missing)
    if unapplied:
        return "--set could not apply: " + ", ".join(unapplied)
    try:
        target.check(call)
    except TargetError as exc:
        return str(exc)
    if recorded is None:
        return "its answer was not recorded, so there is nothing to compare with"
    return ""

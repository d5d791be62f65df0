"""The replay report: a rich table for people, JSON for machines, and the exit code."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._run import DIFFERENT, Result

__all__ = ["exit_code", "render", "summary", "to_json"]

# 0: every selected call was replayed and answered as recorded. 1: at least one answer differs.
# 3: nothing differs, but some calls were not replayed (skipped, not replayable, dry run).
EXIT_SAME, EXIT_DIFFERENT, EXIT_INCOMPLETE = 0, 1, 3

_STYLE = {
    "same": "green", "changed": "bold red", "error now": "bold red", "error fixed": "yellow",
    "not replayable": "magenta", "skipped": "cyan", "not run": "dim", "dry run": "blue",
}  # fmt: skip


def exit_code(results: list[Result]) -> int:
    if any(r.outcome in DIFFERENT for r in results):
        return EXIT_DIFFERENT
    if any(r.outcome != "same" for r in results):
        return EXIT_INCOMPLETE
    return EXIT_SAME


def summary(results: list[Result]) -> dict[str, Any]:
    counts = Counter(r.outcome for r in results)
    replayed = [r for r in results if r.now_ns is not None]
    recorded = [r.recorded_ns for r in replayed if r.recorded_ns is not None]
    now = [r.now_ns for r in replayed if r.now_ns is not None]
    return {
        "calls": len(results),
        "outcomes": dict(sorted(counts.items())),
        "recorded_ms_total": round(sum(recorded) / 1e6, 3),
        "now_ms_total": round(sum(now) / 1e6, 3),
        "exit_code": exit_code(results),
    }


def to_json(results: list[Result], target: str) -> bytes:
    return orjson.dumps(
        {"target": target, "summary": summary(results), "calls": [r.as_dict() for r in results]},
        option=orjson.OPT_INDENT_2,
    )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str | int | float | bool | None) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(ns: int | None) -> str:
    return "" if ns is None else f"{ns / 1e6:.1f}"


def _details(result: Result, max_changes: int) -> str:
    lines = []
    if result.reason:
        lines.append(escape(result.reason))
    for change in result.changes[:max_changes]:
        lines.append(f"{escape(change.path)}: {escape(_short(change.old))} → {escape(_short(change.new))}")
    if len(result.changes) > max_changes:
        lines.append(f"… {len(result.changes) - max_changes} more (--json for all)")
    if result.sent is not None:
        lines.append(escape(orjson.dumps(result.sent).decode()))
    return "\n".join(lines)


def render(results: list[Result], target: str, console: Console, max_changes: int = 5) -> None:
    table = Table(title=f"Replay against {target}", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("tool", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("rec ms", justify="right", no_wrap=True)
    table.add_column("now ms", justify="right", no_wrap=True)
    table.add_column("details", overflow="fold")
    for r in results:
        style = _STYLE.get(r.outcome, "")
        table.add_row(
            str(r.call.index), escape(r.call.tool), f"[{style}]{r.outcome}[/]", _ms(r.recorded_ns), _ms(r.now_ns),
            _details(r, max_changes),
        )  # fmt: skip
    console.print(table)
    s = summary(results)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in s["outcomes"].items())
    console.print(f"{s['calls']} call{'' if s['calls'] == 1 else 's'}: {counts}")

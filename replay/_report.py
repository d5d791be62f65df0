"""The replay report: a table for people, JSON for machines, Markdown or HTML to attach to a bug, and
the exit code. All of them are made from one dict (`report`), the JSON report's."""

from __future__ import annotations

import html
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._diff import ABSENT, Change
from ._drift import Drift
from ._run import DIFFERENT, Result

__all__ = [
    "EXIT_DRIFT", "change_line", "exit_code", "render", "report", "report_format", "stamp", "summary", "to_json",
    "write_report",
]  # fmt: skip

# 0: every selected call was replayed and answered as recorded, and nothing it used was redefined.
# 1: at least one answer differs. 3: nothing differs, but some calls were not replayed (skipped, not
# replayable, dry run). 4: the answers are the same but a definition the session used (a tool's
# schema, description, annotations; a prompt's arguments) changed (`--drift warn` turns this off).
EXIT_SAME, EXIT_DIFFERENT, EXIT_INCOMPLETE, EXIT_DRIFT = 0, 1, 3, 4

_STYLE = {
    "same": "green", "changed": "bold red", "error now": "bold red", "error fixed": "yellow",
    "not replayable": "magenta", "skipped": "cyan", "not run": "dim", "dry run": "blue",
}  # fmt: skip


def exit_code(results: list[Result], drifts: list[Drift] | None = None, drift_fails: bool = True) -> int:
    if any(r.outcome in DIFFERENT for r in results):
        return EXIT_DIFFERENT
    if drifts and drift_fails:
        return EXIT_DRIFT
    if any(r.outcome != "same" for r in results):
        return EXIT_INCOMPLETE
    return EXIT_SAME


def summary(results: list[Result], drifts: list[Drift] | None = None, drift_fails: bool = True) -> dict[str, Any]:
    counts = Counter(r.outcome for r in results)
    replayed = [r for r in results if r.now_ns is not None]
    recorded = [r.recorded_ns for r in replayed if r.recorded_ns is not None]
    now = [r.now_ns for r in replayed if r.now_ns is not None]
    return {
        "calls": len(results),
        "outcomes": dict(sorted(counts.items())),
        "definitions_changed": len(drifts or []),
        "recorded_ms_total": round(sum(recorded) / 1e6, 3),
        "now_ms_total": round(sum(now) / 1e6, 3),
        "exit_code": exit_code(results, drifts, drift_fails),
    }


def report(
    results: list[Result], target: str, drifts: list[Drift] | None = None, drift_fails: bool = True, **about: Any
) -> dict[str, Any]:
    """The whole report as plain data: what was replayed where, the definitions that drifted, each call."""
    return {
        "target": target,
        **about,
        "summary": summary(results, drifts, drift_fails),
        "drift": [d.as_dict() for d in drifts or []],
        "calls": [r.as_dict() for r in results],
    }


def to_json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


# --- the table -------------------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    return orjson.dumps(value, default=repr).decode()


def _excerpts(old: Any, new: Any, width: int) -> tuple[str, str]:
    """Both values readable at a glance: two long strings are cut around where they first differ."""
    a, b = _json_text(old), _json_text(new)
    if len(a) <= width and len(b) <= width:
        return a, b
    start = 0
    if isinstance(old, str) and isinstance(new, str):
        common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        start = max(0, common - width // 3)
    return _window(a, start, width), _window(b, start, width)


def _window(text: str, start: int, width: int) -> str:
    end = start + width
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def change_line(change: Change, width: int = 70) -> str:
    """`path: old → new`, or `path: + item` / `path: - item` / `path: order [..] → [..]`."""
    if change.kind == "added":
        return f"{change.path}: + {_excerpts(change.new, change.new, width)[0]}"
    if change.kind == "removed":
        return f"{change.path}: - {_excerpts(change.old, change.old, width)[0]}"
    old, new = _excerpts(change.old, change.new, width)
    return f"{change.path}: {'order ' if change.kind == 'reordered' else ''}{old} → {new}"


def _details(result: Result, max_changes: int) -> str:
    lines = []
    if result.reason:
        lines.append(f"[bold]{escape(result.reason)}[/]")
    for change in result.changes[:max_changes]:
        lines.append(escape(change_line(change)))
    if len(result.changes) > max_changes:
        lines.append(f"… {len(result.changes) - max_changes} more (--json or --report for all)")
    lines.extend(f"[dim]{escape(note)}[/]" for note in result.notes)
    if result.sent is not None:
        lines.append(escape(orjson.dumps(result.sent).decode()))
    return "\n".join(lines)


def _ms(ns: int | None) -> str:
    return "" if ns is None else f"{ns / 1e6:.1f}"


def render(
    results: list[Result], target: str, console: Console, drifts: list[Drift] | None = None, max_changes: int = 5
) -> None:
    if drifts:
        table = Table(title="Definitions changed since the recording", title_justify="left")
        for column in ("kind", "name", "status"):
            table.add_column(column, no_wrap=True)
        table.add_column("changes", overflow="fold")
        for d in drifts:
            lines = [escape(change_line(c)) for c in d.changes[:max_changes]]
            if len(d.changes) > max_changes:
                lines.append(f"… {len(d.changes) - max_changes} more")
            table.add_row(d.kind, escape(d.name), f"[bold red]{d.status}[/]", "\n".join(lines))
        console.print(table)
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
    s = summary(results, drifts)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in s["outcomes"].items())
    drifted = f"; {len(drifts)} definition{'' if len(drifts) == 1 else 's'} changed" if drifts else ""
    console.print(f"{s['calls']} call{'' if s['calls'] == 1 else 's'}: {counts}{drifted}")


# --- files to attach -------------------------------------------------------------------------------


def write_report(path: Path, data: dict[str, Any]) -> None:
    """The report as Markdown (.md) or HTML (.html), every change in full."""
    text = to_html(data) if path.suffix.lower() in (".html", ".htm") else to_markdown(data)
    path.write_text(text)


def report_format(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "html" if suffix in (".html", ".htm") else "markdown" if suffix in (".md", ".markdown") else None


def _value(change: dict[str, Any], side: str, indent: bool = False) -> str:
    """One side of a change in full: compact JSON (a Markdown cell), or indented (an HTML <pre>)."""
    if change[f"{side}_absent"]:
        return "(absent)"
    option = orjson.OPT_INDENT_2 if indent and isinstance(change[side], dict | list) else 0
    return orjson.dumps(change[side], option=option, default=repr).decode()


def _sections(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, call) for each call worth a section: every one that is not `same`."""
    return [(f"#{c['index']} {c['tool']} — {c['outcome']}", c) for c in data["calls"] if c["outcome"] != "same"]


def _md_cell(text: str) -> str:
    return "`` " + text.replace("\n", " ").replace("|", "\\|") + " ``" if text else ""


def to_markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    out = [f"# Replay of {data.get('session') or 'a recording'} against {data['target']}", ""]
    if data.get("generated"):
        out += [f"Replayed {data['generated']}; exit code {s['exit_code']}.", ""]
    out += [f"{s['calls']} calls: " + ", ".join(f"{n} {o}" for o, n in s["outcomes"].items()) + ".", ""]
    if data["drift"]:
        out += ["## Definitions changed since the recording", "", "| kind | name | status | path | recorded | now |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for d in data["drift"]:
            rows = d["changes"] or [None]
            for c in rows:
                cells = [c["path"], _value(c, "old"), _value(c, "new")] if c else ["", "", ""]
                out.append(f"| {d['kind']} | {_md_cell(d['name'])} | {d['status']} | "
                           + " | ".join(_md_cell(x) for x in cells) + " |")  # fmt: skip
        out.append("")
    out += ["## Calls", "", "| # | tool | outcome | rec ms | now ms | reason |", "|---:|---|---|---:|---:|---|"]
    for c in data["calls"]:
        out.append(f"| {c['index']} | {_md_cell(c['tool'])} | {c['outcome']} | {c['recorded_ms'] or ''} | "
                   f"{c['now_ms'] or ''} | {_md_cell(c['reason'] or '')} |")  # fmt: skip
    for title, c in _sections(data):
        out += ["", f"### {title}", ""]
        if c["reason"]:
            out += [f"> {c['reason']}", ""]
        if c["changes"]:
            out += ["| path | kind | recorded | now |", "|---|---|---|---|"]
            for change in c["changes"]:
                out.append(f"| {_md_cell(change['path'])} | {change['kind']} | {_md_cell(_value(change, 'old'))} | "
                           f"{_md_cell(_value(change, 'new'))} |")  # fmt: skip
            out.append("")
        for note in c["notes"]:
            out += [f"_{note}_", ""]
        out.append(f"Trace `{c['trace_id']}` (`slicewire show {c['trace_id']}`).")
    return "\n".join(out) + "\n"


_CSS = ("body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
        "pre{margin:0;white-space:pre-wrap;max-width:60em}.bad{color:#b00;font-weight:bold}")  # fmt: skip


def to_html(data: dict[str, Any]) -> str:
    e = html.escape
    s = data["summary"]
    title = f"Replay of {data.get('session') or 'a recording'} against {data['target']}"
    out = [f"<!doctype html><meta charset=utf-8><title>{e(title)}</title><style>{_CSS}</style>", f"<h1>{e(title)}</h1>"]
    if data.get("generated"):
        out.append(f"<p>Replayed {e(data['generated'])}; exit code {s['exit_code']}.</p>")
    out.append("<p>" + e(f"{s['calls']} calls: " + ", ".join(f"{n} {o}" for o, n in s["outcomes"].items())) + "</p>")

    def pre(text: str) -> str:
        return f"<pre>{e(text)}</pre>"

    if data["drift"]:
        out.append("<h2>Definitions changed since the recording</h2><table><tr><th>kind<th>name<th>status<th>path"
                   "<th>recorded<th>now")  # fmt: skip
        for d in data["drift"]:
            for c in d["changes"] or [None]:
                cells = [pre(c["path"]), pre(_value(c, "old", True)), pre(_value(c, "new", True))] if c else [""] * 3
                out.append(f"<tr><td>{d['kind']}<td>{e(d['name'])}<td class=bad>{d['status']}<td>" + "<td>".join(cells))
        out.append("</table>")
    out.append("<h2>Calls</h2><table><tr><th>#<th>tool<th>outcome<th>rec ms<th>now ms<th>reason")
    for c in data["calls"]:
        bad = " class=bad" if c["outcome"] in DIFFERENT else ""
        out.append(f"<tr><td>{c['index']}<td>{e(c['tool'])}<td{bad}>{e(c['outcome'])}<td>{c['recorded_ms'] or ''}"
                   f"<td>{c['now_ms'] or ''}<td>{e(c['reason'] or '')}")  # fmt: skip
    out.append("</table>")
    for title_text, c in _sections(data):
        out.append(f"<h3>{e(title_text)}</h3>")
        if c["reason"]:
            out.append(f"<p class=bad>{e(c['reason'])}</p>")
        if c["changes"]:
            out.append("<table><tr><th>path<th>kind<th>recorded<th>now")
            for change in c["changes"]:
                out.append(f"<tr><td>{pre(change['path'])}<td>{change['kind']}<td>{pre(_value(change, 'old', True))}"
                           f"<td>{pre(_value(change, 'new', True))}")  # fmt: skip
            out.append("</table>")
        out += [f"<p><i>{e(note)}</i></p>" for note in c["notes"]]
        out.append(f"<p>Trace <code>{e(c['trace_id'])}</code></p>")
    return "\n".join(out) + "\n"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

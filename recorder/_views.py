"""What `slicewire traces | show | session` print: queries over a recording, and rich renderings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._client import Recording, session_is, sql_literal


def console() -> Console:
    """A console as wide as the terminal, or wide enough for trace ids when output is piped."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=200)


__all__ = [
    "TraceFilter",
    "console",
    "list_traces",
    "render_traces",
    "render_waterfall",
    "session_rows",
    "waterfall_rows",
]

_BAR_WIDTH = 40


@dataclass
class TraceFilter:
    virtual_server: str | None = None
    tool: str | None = None
    backend: str | None = None
    subject: str | None = None
    session: str | None = None
    errors_only: bool = False
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 50


def list_traces(rec: Recording, f: TraceFilter) -> list[dict[str, Any]]:
    where = []
    if f.virtual_server:
        where.append(f"virtual_server = {sql_literal(f.virtual_server)}")
    if f.tool:
        where.append(f"tool_name = {sql_literal(f.tool)}")
    if f.backend:
        where.append(f"list_contains(string_split(coalesce(backends, ''), ','), {sql_literal(f.backend)})")
    if f.subject:
        where.append(f"subject = {sql_literal(f.subject)}")
    if f.session:
        where.append(session_is(f.session))
    if f.errors_only:
        where.append("errors > 0")
    if f.since_ns is not None:
        where.append(f"start_ns >= {int(f.since_ns)}")
    if f.until_ns is not None:
        where.append(f"start_ns < {int(f.until_ns)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return rec.rows(
        "SELECT trace_id, name, session_id, virtual_server, tool_name, backends, start_ns, duration_ns, spans, errors "
        f"FROM traces {clause} ORDER BY start_ns DESC LIMIT {int(f.limit)}"
    )


def waterfall_rows(rec: Recording, trace_id: str) -> list[dict[str, Any]]:
    return rec.rows(
        "SELECT span_id, parent_span_id, name, kind, direction, backend, status, error_code, error_message, "
        "depth, offset_ns, duration_ns, self_ns, start_ns, attrs, request_payload, response_payload, payload_truncated "
        f"FROM waterfall WHERE trace_id = {sql_literal(trace_id)} ORDER BY start_ns, depth"
    )


def session_rows(rec: Recording, session_id: str) -> dict[str, Any]:
    summary = rec.rows(f"SELECT * FROM sessions WHERE {session_is(session_id)}")
    traces = list_traces(rec, TraceFilter(session=session_id, limit=10_000))
    return {"session": summary[0] if summary else None, "traces": list(reversed(traces))}


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def render_traces(rows: list[dict[str, Any]], console: Console, title: str = "Traces") -> None:
    from datetime import UTC, datetime

    table = Table(title=title, title_justify="left")
    table.add_column("trace id", no_wrap=True)
    table.add_column("when (UTC)", no_wrap=True)
    for column in ("request", "session", "virtual server", "backends", "ms", "spans", "errors"):
        table.add_column(column, overflow="fold")
    for row in rows:
        when = datetime.fromtimestamp(row["start_ns"] / 1e9, UTC).strftime("%m-%d %H:%M:%S.%f")[:-3]
        table.add_row(
            row["trace_id"],
            when,
            Text(row["name"] or "-"),
            Text(row["session_id"] or "-"),
            Text(row["virtual_server"] or "-"),
            Text(row["backends"] or "-"),
            _ms(row["duration_ns"]),
            str(row["spans"]),
            Text(str(row["errors"]), style="red" if row["errors"] else ""),
        )
    console.print(table)


def render_waterfall(rows: list[dict[str, Any]], console: Console, payloads: bool = False) -> None:
    """One row per span, indented by depth, with a bar to scale of the trace's duration."""
    if not rows:
        console.print("no spans")
        return
    total = max(r["offset_ns"] + r["duration_ns"] for r in rows) or 1
    table = Table(title=f"Trace: {len(rows)} spans, {_ms(total)} ms", title_justify="left")
    table.add_column("span")
    table.add_column("kind")
    table.add_column("timeline", no_wrap=True)
    table.add_column("ms", justify="right")
    table.add_column("self ms", justify="right")
    table.add_column("status")
    for row in rows:
        start = int(row["offset_ns"] / total * _BAR_WIDTH)
        width = max(1, round(row["duration_ns"] / total * _BAR_WIDTH))
        bar = Text(
            " " * start + "█" * min(width, _BAR_WIDTH - start), style="red" if row["status"] == "ERROR" else "cyan"
        )
        label = "  " * int(row["depth"]) + row["name"]
        if row["backend"]:
            label += f" [{row['backend']}]"
        status = (
            row["status"]
            if row["status"] != "ERROR"
            else f"ERROR {row['error_code'] or ''} {row['error_message'] or ''}"
        )
        table.add_row(
            Text(label),
            row["kind"],
            bar,
            _ms(row["duration_ns"]),
            _ms(row["self_ns"]),
            Text(status.strip(), style="red" if row["status"] == "ERROR" else "green"),
        )
    console.print(table)
    if payloads:
        for row in rows:
            if not (row["request_payload"] or row["response_payload"]):
                continue
            console.rule(Text(f"{row['name']} ({row['span_id']})"))
            for label in ("request_payload", "response_payload"):
                if row[label]:
                    console.print(
                        f"[bold]{label.split('_')[0]}[/bold]" + (" (truncated)" if row["payload_truncated"] else "")
                    )
                    console.print_json(row[label]) if _is_json(row[label]) else console.print(row[label])


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True

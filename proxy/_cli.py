"""`slicewire` command line. Each command turns flags into one library call.

slicewire serve --config slicewire.yaml
slicewire check --config slicewire.yaml --json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ._config import Config, ConfigError, load_config

__all__ = ["app", "main"]

app = typer.Typer(
    name="slicewire",
    help="Slicewire: an MCP gateway serving virtual MCP servers sliced from many backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to slicewire.yaml.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"slicewire: {message}", err=True)
    return typer.Exit(code)


def _load(config: Path) -> Config:
    try:
        return load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"slicewire: {problem}", err=True)
        raise typer.Exit(1) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def serve(
    config: ConfigOption,
    host: Annotated[str | None, typer.Option(help="Override listen.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override listen.port.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    reload: Annotated[bool, typer.Option("--reload/--no-reload", help="Apply config edits without a restart.")] = True,
) -> None:
    """Serve the virtual servers of a configuration."""
    _logging(log_level)
    cfg = _load(config)
    listen = cfg.listen.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    cfg = cfg.model_copy(update={"listen": listen})
    from ._serve import run

    try:
        run(cfg, str(config), reload)
    except OSError as exc:
        raise _fail(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}") from None


@app.command()
def check(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for backends to answer discovery.")] = 30.0,
) -> None:
    """Validate a configuration, discover the live backends, and show what each virtual server exposes."""
    logging.basicConfig(level=logging.CRITICAL)
    cfg = _load(config)
    report = asyncio.run(_check(cfg, timeout))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
    raise typer.Exit(0 if report["ok"] else 1)


async def _check(cfg: Config, wait_s: float) -> dict[str, Any]:
    from ._gateway import Gateway

    gateway = Gateway(cfg)
    await gateway.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gateway.catalog.ready_event.wait(), wait_s)
        status = gateway.status()
        servers = []
        for vs in cfg.virtual_servers:
            served = gateway.servers.get(vs.path)
            tools = []
            if served is not None:
                listed = {t["name"] for t in served.slice.tools}
                for route in served.slice.routes.values():
                    if route.exposed in listed:
                        tools.append({"name": route.exposed, "backend": route.backend, "tool": route.tool_name})
            servers.append(
                {
                    "path": vs.path,
                    "endpoint": f"{vs.path}/mcp",
                    "name": vs.server_name,
                    "enabled": vs.is_enabled,
                    "tools": tools,
                    "problems": list(served.slice.problems) if served else [],
                }
            )
        backends = status["backends"]
        ok = all(b["discovered"] for b in backends.values()) and not any(s["problems"] for s in servers)
        return {"ok": ok, "backends": backends, "virtual_servers": servers}
    finally:
        await gateway.close()


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    backends = Table(title="Backends", title_justify="left")
    for column in ("path", "transport", "status", "protocol", "server", "tools"):
        backends.add_column(column)
    for path, b in report["backends"].items():
        if b["discovered"]:
            state = "[green]ok[/green]"
        else:
            state = f"[red]down[/red]: {b['error'] or 'no answer'}"
        server = b["server"] or {}
        backends.add_row(
            path,
            b["transport"],
            state,
            b["protocol_version"] or "-",
            f"{server.get('name', '-')} {server.get('version', '')}".strip(),
            str(b["tools"]),
        )
    console.print(backends)
    for vs in report["virtual_servers"]:
        table = Table(title=f"{vs['endpoint']}  ({vs['name']})", title_justify="left")
        table.add_column("exposed tool")
        table.add_column("backend")
        table.add_column("backend tool")
        for tool in vs["tools"]:
            table.add_row(tool["name"], tool["backend"], tool["tool"])
        if not vs["enabled"]:
            table.caption = "disabled (is_enabled: false)"
        console.print(table)
        for problem in vs["problems"]:
            console.print(f"  [yellow]problem[/yellow]: {problem}", soft_wrap=True)
    console.print("[green]OK[/green]" if report["ok"] else "[red]problems found[/red]")


def main() -> None:
    app()

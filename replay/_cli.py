"""`slicewire replay` and `slicewire mock`: flags in, one library call out, a precise line on bad input."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

DEFAULT_RECORDER = "127.0.0.1:7320"
SourceOption = Annotated[
    str,
    typer.Option("--source", "-s", help="A live recorder's host:port, or a trace file (.duckdb/.parquet)."),
]
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"slicewire: {message}", err=True)
    return typer.Exit(code)


def _pace(value: str) -> float | None:
    """fast -> None, recorded -> 1.0, x4 / 4x -> 4.0."""
    if value == "fast":
        return None
    if value == "recorded":
        return 1.0
    match = re.fullmatch(r"x?(\d+(?:\.\d+)?)x?", value)
    if match and float(match.group(1)) > 0:
        return float(match.group(1))
    raise typer.BadParameter(f"expected fast, recorded or xN (e.g. x4), found {value!r}", param_hint="--pace")


def _token(token_file: Path | None) -> str | None:
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise _fail(f"--token-file {token_file}: {exc.strerror or exc}") from None
    return os.environ.get("SLICEWIRE_TOKEN") or None


def replay(
    session: Annotated[str | None, typer.Argument(help="The session to replay (see `slicewire traces`).")] = None,
    source: SourceOption = DEFAULT_RECORDER,
    trace: Annotated[str | None, typer.Option(help="Replay one trace (id or unique prefix).")] = None,
    tool: Annotated[str | None, typer.Option(help="Only calls of this (exposed) tool.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="First call: position, trace or span id.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last call (inclusive): position, trace or span id.")] = None,
    errors_only: Annotated[bool, typer.Option("--errors-only", help="Only calls that failed when recorded.")] = False,
    via: Annotated[str | None, typer.Option(help="Replay through this gateway (its base URL).")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="Gateway token for --via (default: $SLICEWIRE_TOKEN).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Replay straight to the backends of this gateway config.")
    ] = None,
    pace: Annotated[str, typer.Option(help="fast, recorded (original gaps) or xN (N times faster).")] = "fast",
    stop_on_diff: Annotated[bool, typer.Option("--stop-on-diff", help="Stop at the first difference.")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="[CALL:]PATH=VALUE: override an argument (repeatable).")
    ] = None,
    secret: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE for a redacted argument (or $SLICEWIRE_SECRET_NAME).")
    ] = None,
    allow_destructive: Annotated[
        bool, typer.Option("--allow-destructive", help="Also run tools annotated destructiveHint: true.")
    ] = False,
    safe: Annotated[bool, typer.Option("--safe", help="Only run tools annotated readOnlyHint: true.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")] = False,
    ignore: Annotated[list[str] | None, typer.Option(help="A JSON path not to compare (repeatable).")] = None,
    rules: Annotated[Path | None, typer.Option(help="Diff rules file (YAML/JSON: ignore, volatile).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report on stdout.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 60.0,
) -> None:
    """Re-issue a recorded session's tool calls and report every difference.

    Exit code: 0 every call answered as recorded, 1 an answer differs, 3 nothing differs but some
    calls were not replayed (skipped, not replayable, dry run), 2 bad input.
    """
    from proxy._config import ConfigError, load_config
    from recorder import RecorderUnavailable, RecordingError, connect

    from ._diff import Rules, RulesError
    from ._rebuild import Secrets, UsageError, parse_override, parse_secret
    from ._select import Selection, SelectionError, recorded_tools, select
    from ._targets import DirectTarget, GatewayTarget, Target, TargetError

    if (via is None) == (config is None):
        raise _fail("say where to replay: --via GATEWAY_URL (through a gateway) or --config FILE (to the backends)")
    try:
        overrides = [parse_override(s) for s in set_ or []]
        secrets = Secrets(dict(parse_secret(s) for s in secret or []))
        diff_rules = Rules.load(rules) if rules is not None else Rules.default()
        diff_rules = diff_rules.with_ignored(ignore or [])
    except (UsageError, RulesError) as exc:
        raise _fail(str(exc)) from None
    selection = Selection(session, trace, tool, start, end, errors_only)
    try:
        with connect(source) as rec:
            calls = select(rec, selection)
            recorded = recorded_tools(rec, calls)
    except RecorderUnavailable as exc:
        raise _fail(exc.advice("--source")) from None
    except (RecordingError, SelectionError) as exc:
        raise _fail(str(exc)) from None

    # The replay's calls form one session of their own (unique per run), linked call by call to the originals.
    replay_session = f"replay-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    target: Target
    if via is not None:
        try:
            target = GatewayTarget(via, _token(token_file), timeout, session=replay_session)
        except TargetError as exc:
            raise _fail(str(exc)) from None
    else:
        assert config is not None
        try:
            gateway_config = load_config(config)
        except ConfigError as exc:
            raise _fail("; ".join(exc.problems)) from None
        target = DirectTarget(gateway_config, session=replay_session)

    from rich.console import Console

    from ._report import exit_code, render, to_json
    from ._run import Options

    options = Options(_pace(pace), stop_on_diff, overrides, secrets, allow_destructive, safe, dry_run, diff_rules)
    try:
        results = asyncio.run(_replay(calls, target, options, recorded))
    except TargetError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; no report", 130) from None
    if as_json:
        sys.stdout.buffer.write(to_json(results, target.description) + b"\n")
    else:
        render(results, target.description, Console() if sys.stdout.isatty() else Console(width=160))
    raise typer.Exit(exit_code(results))


async def _replay(calls: list[Any], target: Any, options: Any, recorded: dict[str, Any]) -> list[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ._run import replay

    progress = Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
        disable=not sys.stderr.isatty(),
    )  # fmt: skip
    try:
        if not options.dry_run:
            await target.start()
        tools = [recorded] if options.dry_run else [await target.tools(calls), recorded]
        with progress:
            task = progress.add_task("replay", total=len(calls), last="")

            def advance(result: Any) -> None:
                progress.update(task, advance=1, last=f"#{result.call.index} {result.call.tool}: {result.outcome}")

            return await replay(calls, target, options, tools, advance)
    finally:
        await target.close()


def mock(
    session: Annotated[str, typer.Argument(help="The recorded session to serve (see `slicewire traces`).")],
    source: SourceOption = DEFAULT_RECORDER,
    listen: Annotated[str, typer.Option(help="host:port to serve on.")] = "127.0.0.1:7330",
    strict: Annotated[bool, typer.Option("--strict", help="Calls must come in the recorded order.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Serve a recorded session as an MCP server (both protocol eras): its tool list as recorded, and
    each tool call answered as recorded. A call not in the recording gets a JSON-RPC error naming
    the closest recorded call and where it differs."""
    import logging

    from proxy._serve import ListenError, run
    from recorder import RecorderUnavailable, RecordingError, connect

    from ._mock import Cassette, CassetteBackend, mock_config
    from ._select import Selection, SelectionError, recorded_server_info, recorded_tools, select

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(f"--listen: expected host:port, found {listen!r}")
    try:
        with connect(source) as rec:
            calls = select(rec, Selection(session=session))
            listed = recorded_tools(rec, calls)
            server_info = recorded_server_info(rec, calls)
    except RecorderUnavailable as exc:
        raise _fail(exc.advice("--source")) from None
    except (RecordingError, SelectionError) as exc:
        raise _fail(str(exc)) from None
    tools = list(listed.values())
    for call in calls:  # called but never listed (no tools/list in the recording): name only, any arguments
        if call.method == "tools/call" and call.tool not in listed and call.backend:
            listed[call.tool] = {"name": call.tool, "inputSchema": {"type": "object"}}
            tools.append(listed[call.tool])
    virtual_server = calls[0].virtual_server or "/mock"
    name = str(server_info.get("name") or f"mock of {virtual_server}")
    cassette = Cassette(calls, tools, strict)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")  # fmt: skip

    def listening() -> None:
        typer.echo(
            f"slicewire: mock listening on http://{host}:{port}{virtual_server}/mcp: session {session}, "
            f"{len(cassette.entries)} recorded calls, {len(tools)} tools, {len(cassette.prompts)} prompts, "
            f"{len(cassette.resources)} resources{' (strict order)' if strict else ''}",
            err=True,
        )

    config = mock_config(virtual_server, name, tools, host, int(port), cassette.prompts, cassette.resources)
    try:
        run(config, None, False, lambda c: CassetteBackend(c, cassette, server_info), on_listening=listening)
    except ListenError as exc:
        raise _fail(str(exc), 1) from None


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(mock)

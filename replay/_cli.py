"""`slicewire replay` and `slicewire mock`: flags in, one library call out, a precise line on bad input."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
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
        bool, typer.Option("--allow-destructive", help="Also run every tool annotated destructiveHint: true.")
    ] = False,
    allow: Annotated[list[str] | None, typer.Option(help="Run this tool whatever its hints say (repeatable).")] = None,
    safe: Annotated[bool, typer.Option("--safe", help="Only run tools annotated readOnlyHint: true.")] = False,
    setup: Annotated[
        list[str] | None, typer.Option(help="Before the replay: a shell command, or call:TOOL {json} (repeatable).")
    ] = None,
    teardown: Annotated[
        list[str] | None, typer.Option(help="After the replay, even a failed one: the same forms (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")] = False,
    ignore: Annotated[list[str] | None, typer.Option(help="A JSON path not to compare (repeatable).")] = None,
    rules: Annotated[
        Path | None, typer.Option(help="Diff rules file (YAML/JSON: ignore, tools, volatile); --learn-noise writes it.")
    ] = None,
    learn_noise: Annotated[
        int | None, typer.Option("--learn-noise", help="Replay N times against the unchanged system; save what varies.")
    ] = None,
    drift_mode: Annotated[
        str, typer.Option("--drift", help="fail (exit 4 when a used definition changed) or warn.")
    ] = "fail",
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Also write the report to FILE (.md or .html).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report on stdout.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer (and each hook).")] = 60.0,
) -> None:
    """Re-issue a recorded session's tool calls and report every difference.

    Exit code: 0 every call answered as recorded, 1 an answer differs, 4 the answers are the same but
    a tool, prompt or resource the session used was redefined (--drift fail), 3 nothing differs but
    some calls were not replayed (skipped, not replayable, dry run), 2 bad input or a failed setup.
    """
    from proxy._config import ConfigError, load_config
    from recorder import RecorderUnavailable, RecordingError, connect

    from ._diff import Rules, RulesError
    from ._hooks import parse_hook
    from ._rebuild import Secrets, UsageError, parse_override, parse_secret
    from ._report import report_format
    from ._select import Selection, SelectionError, recorded_definitions, select
    from ._targets import DirectTarget, GatewayTarget, Target, TargetError

    if (via is None) == (config is None):
        raise _fail("say where to replay: --via GATEWAY_URL (through a gateway) or --config FILE (to the backends)")
    if drift_mode not in ("fail", "warn"):
        raise _fail(f"--drift: expected fail or warn, found {drift_mode!r}")
    if report_file is not None and report_format(report_file) is None:
        raise _fail(f"--report {report_file}: name a .md or .html file")
    if learn_noise is not None:
        if learn_noise < 1:
            raise _fail("--learn-noise: replay at least once (N >= 1)")
        if rules is None:
            raise _fail("--learn-noise needs --rules FILE: the learned rules are saved there for later replays")
        if dry_run or stop_on_diff:
            raise _fail("--learn-noise replays every call: it cannot go with --dry-run or --stop-on-diff")
    try:
        overrides = [parse_override(s) for s in set_ or []]
        secrets = Secrets(dict(parse_secret(s) for s in secret or []))
        learning_fresh = learn_noise is not None and rules is not None and not rules.exists()
        diff_rules = Rules.load(rules) if rules is not None and not learning_fresh else Rules.default()
        diff_rules = diff_rules.with_ignored(ignore or [])
        hooks = ([parse_hook(h, "--setup") for h in setup or []], [parse_hook(h, "--teardown") for h in teardown or []])
    except (UsageError, RulesError) as exc:
        raise _fail(str(exc)) from None
    selection = Selection(session, trace, tool, start, end, errors_only)
    try:
        with connect(source) as rec:
            calls = select(rec, selection)
            definitions = recorded_definitions(rec, calls)
    except RecorderUnavailable as exc:
        raise _fail(exc.advice("--source")) from None
    except (RecordingError, SelectionError) as exc:
        raise _fail(str(exc)) from None
    unknown = sorted(set(allow or []) - {c.tool for c in calls})
    if unknown:
        used = ", ".join(sorted({c.tool for c in calls}))
        raise _fail(f"--allow {unknown[0]}: no selected call uses that tool (they use {used})")

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

    from ._hooks import HookError
    from ._report import exit_code, render, report, stamp, to_json, write_report
    from ._run import Options

    options = Options(_pace(pace), stop_on_diff, overrides, secrets, allow_destructive, safe, dry_run, diff_rules,
                      frozenset(allow or []))  # fmt: skip
    runs = learn_noise or 1
    try:
        outcome = asyncio.run(_replay(calls, target, options, definitions, hooks, runs, timeout))
    except (TargetError, HookError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; no report", 130) from None
    if outcome.teardown_error:
        typer.echo(f"slicewire: {outcome.teardown_error}", err=True)
    if learn_noise is not None:
        assert rules is not None
        _save_noise(outcome.runs, rules, as_json)
        return
    results, drifts = outcome.runs[-1], outcome.drifts
    drift_fails = drift_mode == "fail"
    if as_json or report_file is not None:
        data = report(results, target.description, drifts, drift_fails, session=session or trace, generated=stamp())
        if report_file is not None:
            try:
                write_report(report_file, data)
            except OSError as exc:
                raise _fail(f"--report {report_file}: {exc.strerror or exc}") from None
        if as_json:
            sys.stdout.buffer.write(to_json(data) + b"\n")
    if not as_json:
        render(results, target.description, Console() if sys.stdout.isatty() else Console(width=160), drifts)
    raise typer.Exit(exit_code(results, drifts, drift_fails))


def _save_noise(runs: list[Any], rules: Path, as_json: bool) -> None:
    from ._diff import RulesError, save_learned
    from ._run import learn

    learned, warnings = learn(runs)
    try:
        save_learned(rules, learned)
    except RulesError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.buffer.write(orjson.dumps({"runs": len(runs), "rules": str(rules), "learned": learned,
                                              "warnings": warnings}, option=orjson.OPT_INDENT_2) + b"\n")  # fmt: skip
        return
    paths = sum(len(p) for p in learned.values())
    typer.echo(f"{len(runs)} replays: {paths} varying path{'' if paths == 1 else 's'} in {len(learned)} tools, "
               f"saved to {rules}")  # fmt: skip
    for tool_name, tool_paths in learned.items():
        typer.echo(f"  {tool_name}: {', '.join(tool_paths)}")
    for warning in warnings:
        typer.echo(f"slicewire: warning: {warning}", err=True)


@dataclass
class _Outcome:
    runs: list[Any]  # each replay's results
    drifts: list[Any]
    teardown_error: str = ""


async def _replay(
    calls: list[Any], target: Any, options: Any, definitions: dict[str, Any], hooks: tuple[list[Any], list[Any]],
    runs: int, hook_timeout_s: float,
) -> _Outcome:  # fmt: skip
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ._drift import drift
    from ._hooks import HookError, run_hooks
    from ._run import replay

    progress = Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
        disable=not sys.stderr.isatty(),
    )  # fmt: skip
    setup, teardown = hooks
    outcome = _Outcome([], [])
    try:
        recorded_tools = definitions.get("tool", {})
        if options.dry_run:
            tools = [recorded_tools]
        else:
            await target.start()
            today = await target.definitions(calls)
            outcome.drifts = drift(definitions, today, calls)
            tools = [today.get("tool", {}), recorded_tools]
        for _ in range(runs):
            if not options.dry_run and calls:
                await run_hooks(setup, target, calls[0], hook_timeout_s)
            try:
                with progress:
                    task = progress.add_task("replay", total=len(calls), last="")

                    def advance(result: Any, task: Any = task) -> None:
                        last = f"#{result.call.index} {result.call.tool}: {result.outcome}"
                        progress.update(task, advance=1, last=last)

                    outcome.runs.append(await replay(calls, target, options, tools, advance))
            finally:
                if not options.dry_run and calls:
                    try:
                        await run_hooks(teardown, target, calls[0], hook_timeout_s)
                    except HookError as exc:
                        outcome.teardown_error = str(exc)
        return outcome
    finally:
        await target.close()


def _session_cassette(session: str | None, source: str, strict: bool, ignore: list[str]) -> Any:
    """A cassette of a recorded session (from a recorder, a trace file or a Parquet export). With no
    session named, a file holding exactly one session serves that one."""
    from recorder import RecorderUnavailable, RecordingError, connect

    from ._mock import Cassette
    from ._select import REPLAYED, Selection, SelectionError, recorded_server_info, recorded_tools, select

    try:
        with connect(source) as rec:
            if session is None:
                methods = ", ".join(f"'{m}'" for m in REPLAYED)
                rows = rec.rows(f"SELECT DISTINCT session_id FROM spans WHERE method IN ({methods}) "
                                "AND session_id IS NOT NULL AND replay_of IS NULL ORDER BY 1")  # fmt: skip
                if len(rows) != 1:
                    found = ", ".join(str(r["session_id"]) for r in rows[:5]) or "none"
                    raise _fail(f"{source} holds {len(rows)} sessions ({found}): name the one to serve")
                session = str(rows[0]["session_id"])
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
    about = {"session": session, "virtual_server": calls[0].virtual_server or "/mock", "server_info": server_info}
    return Cassette.from_calls(calls, tools, strict, ignore=ignore, about=about)


def mock(
    session: Annotated[
        str | None, typer.Argument(help="The recorded session to serve (see `slicewire traces`).")
    ] = None,
    source: SourceOption = DEFAULT_RECORDER,
    cassette_file: Annotated[
        Path | None, typer.Option("--cassette", help="Serve this cassette: a .json cassette or a .parquet export.")
    ] = None,
    listen: Annotated[str, typer.Option(help="host:port to serve on.")] = "127.0.0.1:7330",
    strict: Annotated[bool, typer.Option("--strict", help="Calls must come in the recorded order.")] = False,
    match_ignore: Annotated[
        list[str] | None, typer.Option(help="An argument path not to match on, e.g. $.request_id (repeatable).")
    ] = None,
    pass_through: Annotated[
        str | None,
        typer.Option(help="An MCP URL for calls not in the cassette; their answers are added to the --cassette file."),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="Bearer token for --pass-through (default: $SLICEWIRE_TOKEN).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Serve a recorded session, or a cassette file, as an MCP server (both protocol eras): its tool
    list as recorded, and each call answered as recorded. A call not in the recording gets a JSON-RPC
    error naming the closest recorded call and where it differs (or, with --pass-through, the live
    server's answer, which is added to the cassette)."""
    import logging

    from proxy._serve import ListenError, run

    from ._diff import RulesError, parse_path
    from ._mock import Cassette, CassetteBackend, CassetteError, mock_config

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(f"--listen: expected host:port, found {listen!r}")
    if session is None and cassette_file is None and source == DEFAULT_RECORDER:
        raise _fail("say what to serve: a SESSION (from --source) or --cassette FILE")
    json_cassette = cassette_file is not None and cassette_file.suffix.lower() == ".json"
    if json_cassette and session is not None:
        raise _fail(f"--cassette {cassette_file} is one session already: name no SESSION with it")
    if pass_through is not None:
        if not json_cassette:
            raise _fail("--pass-through adds answers to a cassette file: serve --cassette FILE.json "
                        "(`slicewire cassette SESSION FILE.json` writes one)")  # fmt: skip
        if strict:
            raise _fail("--pass-through cannot go with --strict (a fetched call has no recorded place)")
        if not pass_through.startswith(("http://", "https://")):
            raise _fail(f"--pass-through: expected an http(s) MCP URL, found {pass_through!r}")
    ignore = match_ignore or []
    try:
        for path in ignore:
            parse_path(path)
    except RulesError as exc:
        raise _fail(f"--match-ignore: {exc}") from None
    cassette: Cassette
    if json_cassette:
        assert cassette_file is not None
        try:
            cassette = Cassette.load(cassette_file, strict, ignore)
        except CassetteError as exc:
            raise _fail(str(exc)) from None
    elif cassette_file is not None:
        if cassette_file.suffix.lower() not in (".parquet", ".duckdb"):
            raise _fail(f"--cassette {cassette_file}: expected a .json cassette, or a .parquet/.duckdb recording")
        if not cassette_file.exists():
            raise _fail(f"--cassette {cassette_file}: no such file")
        cassette = _session_cassette(session, str(cassette_file), strict, ignore)
    else:
        cassette = _session_cassette(session, source, strict, ignore)
    server_info = cassette.about.get("server_info") or {}
    virtual_server = str(cassette.about.get("virtual_server") or "/mock")
    name = str(server_info.get("name") or f"mock of {virtual_server}")
    live = None
    if pass_through is not None:
        from ._targets import live_caller

        live = live_caller(pass_through, _token(token_file))
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")  # fmt: skip

    def listening() -> None:
        what = f"cassette {cassette_file}" if json_cassette else f"session {cassette.about.get('session')}"
        typer.echo(
            f"slicewire: mock listening on http://{host}:{port}{virtual_server}/mcp: {what}, "
            f"{len(cassette.entries)} recorded calls, {len(cassette.tools)} tools, {len(cassette.prompts)} prompts, "
            f"{len(cassette.resources)} resources{' (strict order)' if strict else ''}"
            f"{f', unrecorded calls to {pass_through}' if pass_through else ''}",
            err=True,
        )

    config = mock_config(virtual_server, name, cassette.tools, host, int(port), cassette.prompts, cassette.resources)
    save_to = cassette_file if pass_through is not None else None
    try:
        run(config, None, False, lambda c: CassetteBackend(c, cassette, server_info, live, save_to),
            on_listening=listening)  # fmt: skip
    except ListenError as exc:
        raise _fail(str(exc), 1) from None


def cassette(
    session: Annotated[str, typer.Argument(help="The recorded session (see `slicewire traces`).")],
    out: Annotated[Path, typer.Argument(help="The cassette file to write (.json).")],
    source: SourceOption = DEFAULT_RECORDER,
) -> None:
    """Write a recorded session as a cassette file: its tool list and every call with its answer, in
    JSON a test suite can check in and serve with `slicewire mock --cassette FILE`."""
    from ._mock import CassetteError

    if out.suffix.lower() != ".json":
        raise _fail(f"{out}: a cassette file is .json")
    recorded = _session_cassette(session, source, False, [])
    try:
        recorded.save(out)
    except CassetteError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"slicewire: wrote {out}: {len(recorded.entries)} calls, {len(recorded.tools)} tools", err=True)


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(mock)
    app.command()(cassette)

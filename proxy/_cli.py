"""`slicewire` command line. Each command turns flags into one library call.

slicewire serve --config slicewire.yaml
slicewire check --config slicewire.yaml --json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
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
WorkersOption = Annotated[
    str, typer.Option("--workers", help="Gateway processes sharing the port: a number, or 'auto' (one per CPU).")
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"slicewire: {message}", err=True)
    return typer.Exit(code)


def _load(config: Path, check_secrets: bool = True) -> Config:
    try:
        return load_config(config, check_secrets)
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
    workers: WorkersOption = "1",
) -> None:
    """Serve the virtual servers of a configuration."""
    _logging(log_level)
    count = _workers(workers)
    cfg = _load(config)
    listen = cfg.listen.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    cfg = cfg.model_copy(update={"listen": listen})
    _serve(cfg, config, reload, count)


def _workers(value: str) -> int:
    from ._workers import resolve_workers

    try:
        return resolve_workers(value)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def _serve(cfg: Config, config: Path, reload: bool, workers: int = 1) -> None:
    """Run the gateway; one line when it listens, one line and exit 1 when it cannot."""
    from ._serve import ListenError, run
    from ._workers import supervise

    base = _http_url(cfg.listen.host, cfg.listen.port)
    servers = [f"{vs.path}/mcp" for vs in cfg.virtual_servers if vs.is_enabled]
    shown = ", ".join(servers[:3]) + (f" and {len(servers) - 3} more" if len(servers) > 3 else "")

    processes = f", {workers} workers" if workers > 1 else ""

    def listening() -> None:
        typer.echo(
            f"slicewire: gateway listening on {base} (virtual servers: {shown or 'none yet'}{processes})", err=True
        )

    try:
        if workers > 1:
            code = supervise(cfg, str(config), reload, workers, on_listening=listening)
            if code:
                raise typer.Exit(code)
        else:
            run(cfg, str(config), reload, on_listening=listening)
    except ListenError as exc:
        raise _fail(str(exc)) from None


def _http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
            await asyncio.wait_for(gateway.catalog.settled_event.wait(), wait_s)
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
            prompts = []
            resources = []
            if served is not None:
                listed = {p["name"] for p in served.slice.prompts}
                for route in served.slice.prompt_routes.values():
                    if route.exposed in listed:
                        prompts.append({"name": route.exposed, "backend": route.backend, "prompt": route.tool_name})
                exposed = [r["uri"] for r in served.slice.resources] + [
                    t["uriTemplate"] for t in served.slice.templates
                ]
                for mapping in vs.resource_mappings:
                    form = mapping.exposed_form
                    matching = [
                        uri for uri in exposed if uri == form or (mapping.kind == "prefix" and uri.startswith(form))
                    ]
                    resources.append({"exposed": form, "kind": mapping.kind, "backend": mapping.backend_server_path,
                                      "backend_form": mapping.backend_form, "listed": len(matching)})  # fmt: skip
            servers.append(
                {
                    "path": vs.path,
                    "endpoint": f"{vs.path}/mcp",
                    "name": vs.server_name,
                    "enabled": vs.is_enabled,
                    "capabilities": served.capabilities() if served else {},
                    "tools": tools,
                    "prompts": prompts,
                    "resources": resources,
                    "problems": list(served.slice.problems) if served else [],
                    "warnings": list(served.slice.warnings) if served else [],
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
    for column in ("path", "transport", "status", "protocol", "server", "tools", "resources", "prompts"):
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
            f"{b['resources']} (+{b['resource_templates']} templates)"
            if b["resource_templates"]
            else str(b["resources"]),
            str(b["prompts"]),
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
        if vs["prompts"]:
            prompts = Table(title_justify="left")
            for column in ("exposed prompt", "backend", "backend prompt"):
                prompts.add_column(column)
            for prompt in vs["prompts"]:
                prompts.add_row(prompt["name"], prompt["backend"], prompt["prompt"])
            console.print(prompts)
        if vs["resources"]:
            resources = Table(title_justify="left")
            for column in ("exposed resources", "kind", "backend", "backend URI", "listed"):
                resources.add_column(column)
            for r in vs["resources"]:
                resources.add_row(r["exposed"], r["kind"], r["backend"], r["backend_form"], str(r["listed"]))
            console.print(resources)
        console.print(f"  capabilities: {', '.join(vs['capabilities']) or 'none'}", soft_wrap=True)
        for problem in vs["problems"]:
            console.print(f"  [yellow]problem[/yellow]: {problem}", soft_wrap=True)
        for warning in vs["warnings"]:
            console.print(f"  [yellow]warning[/yellow]: {warning}", soft_wrap=True)
    console.print("[green]OK[/green]" if report["ok"] else "[red]problems found[/red]")


DEFAULT_RECORDER = "127.0.0.1:7320"
OtlpOption = Annotated[
    str | None,
    typer.Option(
        "--otlp",
        help="OTLP endpoint URL (gRPC: http://host:4317; HTTP: http://host:4318, /v1/traces added when no path). "
        "Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT.",
    ),
]
OtlpProtocolOption = Annotated[
    str | None,
    typer.Option(
        "--otlp-protocol", "--protocol", help="grpc or http (default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)."
    ),
]
OtlpPayloadsOption = Annotated[
    bool,
    typer.Option(
        "--otlp-payloads/--no-otlp-payloads",
        help="Add tools/call arguments and results (redacted) as gen_ai.tool.call.arguments / .result.",
    ),
]
FromOption = Annotated[
    str,
    typer.Option("--from", "-f", help="A live recorder's host:port, or a trace file (.duckdb) of a stopped one."),
]


@app.command()
def recorder(
    db: Annotated[Path, typer.Option(help="DuckDB file to store spans in (created if missing).")] = Path(
        "traces.duckdb"
    ),
    listen: Annotated[str, typer.Option(help="host:port for the gRPC recorder service.")] = DEFAULT_RECORDER,
    otlp: OtlpOption = None,
    otlp_protocol: OtlpProtocolOption = None,
    otlp_payloads: OtlpPayloadsOption = False,
    otlp_batch: Annotated[int, typer.Option(min=1, max=10_000, help="Spans per OTLP export request.")] = 512,
    parquet_dir: Annotated[
        Path | None,
        typer.Option(
            help="Also write what is stored as hourly Parquet partitions here (date=YYYY-MM-DD/hour=HH/, hive "
            "layout), for DuckDB, ClickHouse, Spark or `slicewire traces --from DIR`; many recorders may share it."
        ),
    ] = None,
    parquet_interval: Annotated[
        float, typer.Option(min=1, help="Seconds between Parquet files (one per interval and hour with spans).")
    ] = 60.0,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="The token both RPCs require. Default: $SLICEWIRE_RECORDER_TOKEN, else one kept for this "
            "address in $XDG_STATE_HOME/slicewire (made on first start), where local clients find it."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the flight recorder: receive spans over gRPC and store them in DuckDB; with --otlp (or
    OTEL_EXPORTER_OTLP_ENDPOINT set), also export what it stores to an OTLP backend as it arrives; with
    --parquet-dir, also to hourly Parquet partitions."""
    _logging(log_level)

    from proto._access import TOKEN_ENV, given_token, local_token_file, make_local_token
    from recorder import ListenError, SchemaError, StoreError
    from recorder import serve as serve_recorder
    from recorder._last import remember

    feeds = [feed for feed in (_otlp_feed(otlp, otlp_protocol, otlp_payloads, otlp_batch),) if feed is not None]
    if parquet_dir is not None:
        feeds.append(_parquet_feed(parquet_dir, parquet_interval))
    try:
        token = given_token(token_file)
    except ValueError as exc:
        raise _fail(f"--token-file: {exc}", 2) from None
    where = str(token_file) if token_file is not None else f"${TOKEN_ENV}"
    if token is None:
        token, where = make_local_token(listen), str(local_token_file(listen))

    def listening() -> None:
        typer.echo(f"slicewire: recorder listening on {listen}, storing in {db} (token: {where})", err=True)
        remember(listen, db)

    try:
        asyncio.run(serve_recorder(str(db), listen, feeds=feeds, on_listening=listening, token=token))
    except (StoreError, SchemaError, ListenError) as exc:
        raise _fail(str(exc)) from None


def _otlp_target(endpoint: str | None, protocol: str | None) -> tuple[str | None, Any, str] | None:
    """(endpoint, protocol, name) of an OTLP destination: the option, else OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT;
    None when neither is set."""
    import os

    from recorder._otlp import protocol_from_env

    if endpoint is None and not (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    try:
        chosen = protocol or protocol_from_env()
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if chosen not in ("grpc", "http"):
        raise _fail(f"--otlp-protocol: expected grpc or http, found {chosen!r}", 2)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise _fail(f"--otlp: expected an http:// or https:// URL, found {endpoint!r}", 2)
    env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    shown = endpoint or env
    return endpoint, chosen, f"{chosen} {shown}"


def _parquet_feed(directory: Path, interval_s: float) -> Any:
    if directory.exists() and not directory.is_dir():
        raise _fail(f"--parquet-dir {directory}: not a directory", 2)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(f"--parquet-dir {directory}: {exc.strerror}", 2) from None

    def make(store: Any) -> Any:
        from recorder._feed import ParquetFeed

        return ParquetFeed(store, directory, interval_s=interval_s)

    return make


def _otlp_feed(endpoint: str | None, protocol: str | None, payloads: bool, batch: int) -> Any:
    target = _otlp_target(endpoint, protocol)
    if target is None:
        return None
    url, chosen, name = target

    def make(store: Any) -> Any:
        from recorder._feed import OtlpFeed
        from recorder._otlp import span_exporter

        return OtlpFeed(store, span_exporter(url, chosen), name, payloads, batch)

    return make


@app.command()
def up(
    config: ConfigOption,
    db: Annotated[Path, typer.Option(help="DuckDB file for the recorder.")] = Path("traces.duckdb"),
    recorder_listen: Annotated[str, typer.Option(help="host:port for the embedded recorder.")] = DEFAULT_RECORDER,
    otlp: OtlpOption = None,
    otlp_protocol: OtlpProtocolOption = None,
    otlp_payloads: OtlpPayloadsOption = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    reload: Annotated[bool, typer.Option("--reload/--no-reload", help="Apply config edits without a restart.")] = True,
    workers: WorkersOption = "1",
) -> None:
    """Run the gateway and a recorder together (the recorder stores spans in an embedded DuckDB file)."""
    import subprocess
    import sys

    _logging(log_level)
    count = _workers(workers)
    cfg = _load(config)
    target = cfg.recorder.target or recorder_listen
    cfg = cfg.model_copy(update={"recorder": cfg.recorder.model_copy(update={"target": target})})
    _otlp_target(otlp, otlp_protocol)  # a bad --otlp fails here, before anything starts
    from ._serve import ListenError, bind

    try:  # a busy gateway port fails here too, before the recorder starts
        bind(cfg.listen.host, cfg.listen.port).close()
    except ListenError as exc:
        raise _fail(str(exc)) from None
    exporting = [
        *(["--otlp", otlp] if otlp else []), *(["--otlp-protocol", otlp_protocol] if otlp_protocol else []),
        *(["--otlp-payloads"] if otlp_payloads else []),
        *(["--token-file", cfg.recorder.token_file] if cfg.recorder.token_file else []),
    ]  # fmt: skip
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "recorder",
            "--db",
            str(db),
            "--listen",
            target,
            "--log-level",
            log_level,
            *exporting,
        ],
        start_new_session=True,  # Ctrl-C reaches the gateway first; the recorder is stopped after its last spans
        preexec_fn=_die_with_parent,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into an exception so that the
    # recorder below is stopped (and flushes) instead of the process vanishing.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if not _wait_for_port(target, child, 30):
            if child.poll() is not None:
                raise typer.Exit(child.returncode or 1)  # the recorder said why, in one line
            raise _fail(f"the recorder did not start on {target} within 30 s")
        _serve(cfg, config, reload, count)
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if the parent dies without stopping us (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: `up` still stops the recorder on every normal exit


def _wait_for_port(target: str, child: Any, timeout: float) -> bool:
    import socket

    host, _, port = target.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host.strip("[]") or "127.0.0.1", int(port))) == 0:
                return True
        time.sleep(0.05)
    return False


def _parse_time(value: str | None, flag: str) -> int | None:
    """`10m`, `2h`, `3d` ago, or an ISO 8601 time; nanoseconds since the epoch."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1] in units:
        return time.time_ns() - int(value[:-1]) * units[value[-1]] * 1_000_000_000
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"expected 10m, 2h, 3d or an ISO 8601 time, found {value!r}", param_hint=flag
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def _open_recording(source: str) -> Any:
    from recorder import RecordingError, connect

    try:
        return connect(source)
    except RecordingError as exc:
        raise _fail(str(exc)) from None


def _recording_call(fn: Any) -> Any:
    from recorder import RecorderUnavailable, RecordingError

    try:
        return fn()
    except RecorderUnavailable as exc:
        raise _fail(exc.advice("--from")) from None
    except RecordingError as exc:
        raise _fail(str(exc)) from None


@app.command()
def traces(
    source: FromOption = DEFAULT_RECORDER,
    server: Annotated[str | None, typer.Option("--server", help="Only this virtual server (path).")] = None,
    tool: Annotated[str | None, typer.Option(help="Only calls of this (exposed) tool.")] = None,
    backend: Annotated[str | None, typer.Option(help="Only traces that reached this backend (path).")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this caller.")] = None,
    session_id: Annotated[
        str | None, typer.Option("--session", help="Only this session: its listed key, or a client's Mcp-Session-Id.")
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only traces with an error.")] = False,
    since: Annotated[str | None, typer.Option(help="10m, 2h, 3d, or an ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="10m, 2h, 3d, or an ISO 8601 time.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many traces, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recent traces (one per client request), newest first."""
    from recorder._views import TraceFilter, console, list_traces, render_traces

    flt = TraceFilter(server, tool, backend, subject, session_id, errors, _parse_time(since, "--since"),
                      _parse_time(until, "--until"), limit)  # fmt: skip
    with _open_recording(source) as rec:
        rows = _recording_call(lambda: list_traces(rec, flt))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif rows:
        render_traces(rows, console())
    else:
        filters = [
            f"{flag} {value}"
            for flag, value in (
                ("--server", server),
                ("--tool", tool),
                ("--backend", backend),
                ("--subject", subject),
                ("--session", session_id),
                ("--since", since),
                ("--until", until),
            )
            if value
        ]
        if errors:
            filters.append("--errors")
        if filters:
            typer.echo(f"no traces in {source} match {' '.join(filters)}; drop a filter to see more", err=True)
        else:
            typer.echo(
                f"no traces in {source} yet: call a virtual server through a gateway whose recorder.target is this "
                "recorder (slicewire up sets it), then list again",
                err=True,
            )


@app.command()
def show(
    trace_id: Annotated[str, typer.Argument(help="The trace id (32 hex digits) from `slicewire traces`.")],
    source: FromOption = DEFAULT_RECORDER,
    payloads: Annotated[bool, typer.Option("--payloads", help="Print each span's (redacted) payloads.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """One trace as a waterfall: a row per span, bars to scale."""
    from recorder._views import console, render_waterfall, waterfall_rows

    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id.lower()):
        raise typer.BadParameter(f"expected 32 hex digits, found {trace_id!r}", param_hint="TRACE_ID")
    with _open_recording(source) as rec:
        rows = _recording_call(lambda: waterfall_rows(rec, trace_id.lower()))
    if not rows:
        raise _fail(f"no trace {trace_id} in {source}; `slicewire traces` lists the recorded ones")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        render_waterfall(rows, console(), payloads)


@app.command()
def session(
    session_id: Annotated[
        str, typer.Argument(help="A session key from `slicewire traces`, or a client's Mcp-Session-Id.")
    ],
    source: FromOption = DEFAULT_RECORDER,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every trace of one agent session, in order."""
    from recorder._views import console, render_traces, session_rows

    with _open_recording(source) as rec:
        result = _recording_call(lambda: session_rows(rec, session_id))
    if result["session"] is None and not result["traces"]:
        raise _fail(f"no session {session_id!r} in {source}; `slicewire traces` lists sessions in its session column")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_traces(result["traces"], console(), title=f"Session {session_id}")


@app.command()
def export(
    out: Annotated[Path | None, typer.Argument(help="The Parquet file to write (not with --otlp).")] = None,
    source: FromOption = DEFAULT_RECORDER,
    session_id: Annotated[str | None, typer.Option("--session", help="Only this session's spans.")] = None,
    trace: Annotated[str | None, typer.Option(help="Only this trace's spans.")] = None,
    since: Annotated[str | None, typer.Option(help="Only spans since: 10m, 2h, 3d, or an ISO 8601 time.")] = None,
    otlp: OtlpOption = None,
    otlp_protocol: OtlpProtocolOption = None,
    otlp_payloads: OtlpPayloadsOption = False,
) -> None:
    """Write spans (all, one session's, one trace's, or recent ones) to a Parquet file — a recording to
    share or keep with a test, readable by `replay`, `mock`, `traces` and notebooks (`--from
    FILE.parquet`) — or send them to an OTLP backend (`--otlp URL`), with a progress bar."""
    from recorder import session_is, sql_literal

    if (out is None) == (otlp is None):
        raise _fail("give either an output file or --otlp URL", 2)
    where = []
    if session_id is not None:
        where.append(session_is(session_id))
    if trace is not None:
        where.append(f"trace_id = {sql_literal(trace)}")
    start = _parse_time(since, "--since")
    if start is not None:
        where.append(f"start_ns >= {start}")
    condition = " WHERE " + " AND ".join(where) if where else ""
    if otlp is not None:
        _export_otlp(source, condition, otlp, otlp_protocol, otlp_payloads)
        return
    assert out is not None
    import pyarrow.parquet as pq

    with _open_recording(source) as rec:
        table = _recording_call(lambda: rec.arrow(f"SELECT * FROM spans{condition} ORDER BY start_ns"))
    if table.num_rows == 0:
        raise _fail(f"no spans match in {source}; nothing written")
    try:
        pq.write_table(table, out)
    except OSError as exc:
        raise _fail(f"{out}: {exc.strerror or exc}") from None
    typer.echo(f"{table.num_rows} spans written to {out}", err=True)


def _export_otlp(source: str, condition: str, endpoint: str, protocol: str | None, payloads: bool) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recorder._otlp import COLUMNS, span_exporter, to_otel

    target = _otlp_target(endpoint, protocol)
    assert target is not None
    url, chosen, name = target
    with _open_recording(source) as rec:
        table = _recording_call(lambda: rec.arrow(f"SELECT {COLUMNS} FROM spans{condition} ORDER BY start_ns"))
    if table.num_rows == 0:
        raise _fail(f"no spans match in {source}; nothing exported")
    exporter = span_exporter(url, chosen)
    sent = 0
    columns = [
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ]  # fmt: skip
    try:
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task(f"spans to {name}", total=table.num_rows)
            for batch in table.to_batches(max_chunksize=512):
                result = exporter.export(to_otel(batch.to_pylist(), payloads))
                if result is not SpanExportResult.SUCCESS:
                    raise _fail(f"{name}: the receiver did not accept the spans after {sent} of {table.num_rows}")
                sent += batch.num_rows
                progress.update(task, completed=sent)
    finally:
        exporter.shutdown()
    typer.echo(f"{sent} spans exported to {name}", err=True)


# --- sub-commands: gateway tokens, users' credentials (_statecli), virtual servers (_vscli) -------------

from ._statecli import creds_app, tokens_app  # noqa: E402 - they use this module's helpers
from ._vscli import vs_app  # noqa: E402

app.add_typer(tokens_app, name="tokens")
app.add_typer(creds_app, name="creds")
app.add_typer(vs_app, name="vs")


def _register_replay() -> None:
    from replay._cli import register

    register(app)


_register_replay()


def main() -> None:
    app()

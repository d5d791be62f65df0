"""Scale figures: many sessions, a wide slice, many virtual servers, and a soak.

    .venv/bin/python bench/scale.py                              # every part; the soak lasts 10 minutes
    .venv/bin/python bench/scale.py --parts tools,servers        # some parts
    .venv/bin/python bench/scale.py --parts soak --soak-seconds 120

Parts (the gateway pinned to core 0 beside its backends, the load generator on core 1, as in run.py):

- `sessions`: 1,000 concurrent client sessions (2025-11-25, one session per connection, each calling
  in a closed loop), then 1,000 concurrent 2026-07-28 clients: req/s, latency, errors, RSS.
- `tools`: a virtual server slicing 2,000 tools from 20 backends (100 tools each): config load time,
  time from start to ready (every backend discovered), `tools/list` latency and CPU, a `tools/call`
  through it, and a reload (one mapping fewer) from the file's write until `tools/list` shows it.
- `servers`: 1,000 virtual servers in one config: config load time, start to ready, RSS, a
  `tools/call` on the last one, and a reload (one server more) until the new one answers.
- `soak`: the goal's configuration (auth, slice, recording) at 80 % of the throughput it reached in
  a closed loop, for `--soak-seconds`, the gateway's RSS sampled every 10 s: growth is the median of
  the last minute's samples over the first minute's (after a warm-up minute).

Prints a Markdown summary and writes bench/results/scale-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    BENCH,
    ROOT,
    answers_ok,
    cpu_seconds,
    free_port,
    gateway_config,
    load,
    pin_helper,
    pinned,
    recorder_counters,
    rss_mb,
    save,
    start_recorder,
    stop,
    wait_port,
)

PARTS = ["sessions", "tools", "servers", "soak"]


def post(url: str, message: dict[str, Any], token: str | None = None, timeout: float = 30) -> dict[str, Any]:
    """One 2026-07-28 request, its JSON answer (the bench's own checks, not a load)."""
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": str(message["method"]),
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, **message}
    body["params"] = {**body.get("params", {}), "_meta": meta}
    request = urllib.request.Request(url, data=orjson.dumps(body), headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return orjson.loads(response.read())  # type: ignore[no-any-return]


def listed(url: str) -> int | None:
    """How many tools a virtual server lists now, every page (None: it does not answer)."""
    count, params = 0, dict[str, Any]()
    try:
        while True:
            result = post(url, {"method": "tools/list", "params": params})["result"]
            count += len(result["tools"])
            if not result.get("nextCursor"):
                return count
            params = {"cursor": result["nextCursor"]}
    except (OSError, KeyError, ValueError):
        return None


def until(predicate: Any, timeout: float, what: str) -> float:
    """Seconds until `predicate()` holds, polled every 10 ms (TimeoutError past `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    raise TimeoutError(f"{what}: not within {timeout} s")


def config_load_ms(path: Path) -> float:
    """Median of 5 in-process `load_config` runs (parse and validate: what a reload pays before swapping)."""
    from proxy._config import load_config

    times = []
    for _ in range(5):
        started = time.perf_counter()
        load_config(path)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


class Gateway:
    """`slicewire serve` on core 0 with a config written here; started and timed to /readyz."""

    def __init__(self, workdir: Path, config: dict[str, Any], name: str, reload: bool = False) -> None:
        self.workdir, self.name = workdir, name
        self.port = config["listen"]["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.path = workdir / f"{name}.yaml"
        self.write(config)
        self.load_ms = config_load_ms(self.path)
        argv = [sys.executable, "-m", "proxy", "serve", "--config", str(self.path), "--log-level", "warning"]
        started = time.monotonic()
        self.proc = pinned(0, [*argv, *([] if reload else ["--no-reload"])], workdir / f"{name}.log")
        wait_port(self.port, timeout=120)
        until(lambda: answers_ok(f"{self.base}/readyz"), 300, f"{name}: /readyz")
        self.ready_s = round(time.monotonic() - started, 2)

    def write(self, config: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.replace(self.path)  # atomic, as editors save

    def reload(self, config: dict[str, Any], visible: Callable[[], bool]) -> float:
        """Write a changed config; seconds until `visible()` holds (the watcher's debounce included)."""
        written = time.monotonic()
        self.write(config)
        until(visible, 60, f"{self.name}: the reloaded config")
        return round(time.monotonic() - written, 3)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


def point(result: dict[str, Any], pid: int, cpu_before: float) -> dict[str, Any]:
    keys = ("concurrency", "requests", "errors", "first_error", "rps", "p50_ms", "p99_ms")
    out = {k: result[k] for k in keys}
    if result["requests"]:
        out["cpu_us_per_req"] = round((cpu_seconds(pid) - cpu_before) / result["requests"] * 1e6, 1)
    out["rss_mb"] = round(rss_mb(pid), 1)
    return out


def measured(
    pid: int, url: str, concurrency: int, seconds: float, era: str, tool: str, *options: str
) -> dict[str, Any]:
    load(url, min(concurrency, 64), 1.0, era, tool, options=options)  # warm-up
    before = cpu_seconds(pid)
    return point(load(url, concurrency, seconds, era, tool, options=options), pid, before)


@contextlib.contextmanager
def backends(workdir: Path, count: int, tools: int) -> Iterator[list[str]]:
    """`count` echo backends with `tools` tools each, served by one process on core 0: their URLs."""
    ports = [free_port() for _ in range(count)]
    argv = [sys.executable, str(BENCH / "echo_backend.py"), "--tools", str(tools)]
    proc = pinned(0, [*argv, *(f"--port={p}" for p in ports)], workdir / f"echo-{count}x{tools}.log")
    try:
        for port in ports:
            wait_port(port)
        yield [f"http://127.0.0.1:{p}/mcp" for p in ports]
    finally:
        stop(proc)


def base_config(port: int, backend_urls: list[str], servers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "backends": [
            {"path": f"/b{i:02d}", "transport": "streamable-http", "url": url} for i, url in enumerate(backend_urls, 1)
        ],
        "virtual_servers": servers,
    }


# --- parts ---------------------------------------------------------------------------------------


def part_sessions(workdir: Path, seconds: float) -> dict[str, Any]:
    server = {"path": "/virtual/bench", "server_name": "bench", "public": True,
              "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/b01", "alias": "say"}]}  # fmt: skip
    with backends(workdir, 1, 1) as urls, Gateway(workdir, base_config(free_port(), urls, [server]), "sessions") as gw:
        url = f"{gw.base}/virtual/bench/mcp"
        return {
            "1000 sessions (2025-11-25)": measured(gw.proc.pid, url, 1000, seconds, "legacy", "say"),
            "1000 clients (2026-07-28)": measured(gw.proc.pid, url, 1000, seconds, "modern", "say"),
        }


def part_tools(workdir: Path, seconds: float) -> dict[str, Any]:
    names = ["echo", *(f"tool_{i:04d}" for i in range(1, 100))]
    mappings = [
        {"tool_name": name, "backend_server_path": f"/b{b:02d}", "alias": f"b{b:02d}_{name}"}
        for b in range(1, 21)
        for name in names
    ]
    server = {"path": "/virtual/wide", "server_name": "wide", "public": True, "tool_mappings": mappings}
    with backends(workdir, 20, 100) as urls:
        config = base_config(free_port(), urls, [server])
        with Gateway(workdir, config, "tools", reload=True) as gw:
            url = f"{gw.base}/virtual/wide/mcp"
            out: dict[str, Any] = {"tools": listed(url), "config_load_ms": gw.load_ms, "start_to_ready_s": gw.ready_s}
            for c in (1, 16):
                out[f"tools/list c={c}"] = measured(
                    gw.proc.pid, url, c, seconds, "modern", "", "--method", "tools/list", "--expect-tools", "1000"
                )
            out["tools/call c=64 (b20_tool_0099)"] = measured(gw.proc.pid, url, 64, seconds, "modern", "b20_tool_0099")
            server["tool_mappings"] = mappings[:-1]
            out["reload_to_visible_s"] = gw.reload(config, lambda: listed(url) == 1999)
            out["rss_mb"] = round(rss_mb(gw.proc.pid), 1)
            return out


def part_servers(workdir: Path, seconds: float) -> dict[str, Any]:
    servers = [
        {"path": f"/virtual/vs{i:04d}", "server_name": f"vs{i:04d}", "public": True,
         "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/b01", "alias": "say"}]}
        for i in range(1, 1001)
    ]  # fmt: skip
    with backends(workdir, 1, 1) as urls:
        config = base_config(free_port(), urls, servers)
        with Gateway(workdir, config, "servers", reload=True) as gw:
            out: dict[str, Any] = {
                "virtual_servers": len(servers),
                "config_load_ms": gw.load_ms,
                "start_to_ready_s": gw.ready_s,
                "rss_mb_at_start": round(rss_mb(gw.proc.pid), 1),
                "tools/call c=64 on vs1000": measured(
                    gw.proc.pid, f"{gw.base}/virtual/vs1000/mcp", 64, seconds, "modern", "say"
                ),
            }
            servers.append({**servers[0], "path": "/virtual/vs1001", "server_name": "vs1001"})
            out["reload_to_visible_s"] = gw.reload(config, lambda: listed(f"{gw.base}/virtual/vs1001/mcp") == 1)
            return out


def part_soak(workdir: Path, soak_seconds: float) -> dict[str, Any]:
    """The goal's configuration at 80 % of its closed-loop throughput; RSS every 10 s."""
    with backends(workdir, 1, 1) as urls:
        recorder_target, recorder = start_recorder(workdir)
        try:
            return _soak(workdir, urls[0], recorder_target, soak_seconds)
        finally:
            stop(recorder)


def _soak(workdir: Path, backend_url: str, recorder_target: str, soak_seconds: float) -> dict[str, Any]:
    port = free_port()
    config_path = gateway_config(backend_url, port, workdir, recorder_target, auth=True)
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config_path), "--no-reload"]
    gw = pinned(0, [*argv, "--log-level", "warning"], workdir / "soak.log")
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/virtual/bench/mcp"
        # The span-shipping helper beside the recorder, as in run.py, but at the load generator's priority:
        # for ten minutes at `nice 19` on a core the load generator keeps busy it falls behind reading
        # the pipe and the gateway drops past its cap, which is this bench's topology, not recording's
        # cost. The recorder stays at `nice 19`: when it lags, the helper spools, as designed.
        pin_helper(url, workdir, nice=0)
        token = workdir / "agent.token"
        load(url, 64, 2.0, "modern", "say", token_file=token)  # warm-up
        peak = load(url, 64, 10.0, "modern", "say", token_file=token)["rps"]
        rate = round(peak * 0.8)
        loadgen = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--tool", "say",
             "-c", "64", "-d", str(soak_seconds), "--warmup", "0", "--rate", str(rate), "--token-file", str(token)],
            stdout=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        while loadgen.poll() is None:
            samples.append((round(time.monotonic() - started, 1), round(rss_mb(gw.pid), 1)))
            try:
                loadgen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        assert loadgen.stdout is not None
        result = json.loads(loadgen.stdout.read())
        first = [rss for t, rss in samples if 60 <= t < 120] or [samples[0][1]]
        last = [rss for t, rss in samples if t >= samples[-1][0] - 60]
        counters = recorder_counters(url, workdir) or {}
        return {
            "closed_loop_peak_rps": peak,
            "target_rps": rate,
            "seconds": soak_seconds,
            "achieved_rps": result["rps"],
            "requests": result["requests"],
            "errors": result["errors"],
            "first_error": result["first_error"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "rss_first_minute_mb": statistics.median(first),
            "rss_last_minute_mb": statistics.median(last),
            "rss_growth_pct": round((statistics.median(last) / statistics.median(first) - 1) * 100, 1),
            "spans": {k: counters.get(k) for k in ("emitted", "sent", "spooled", "dropped")},
            "rss_samples": samples,
        }
    finally:
        stop(gw)


# --- report --------------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> str:
    lines = []
    for name, p in results.get("sessions", {}).items():
        lines.append(
            f"- {name}: {p['rps']:.0f} req/s, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
            f"{p.get('cpu_us_per_req')} µs CPU/req, RSS {p['rss_mb']} MB, errors {p['errors']}"
        )
    tools = results.get("tools")
    if tools:
        lc1, lc16 = tools["tools/list c=1"], tools["tools/list c=16"]
        call = tools["tools/call c=64 (b20_tool_0099)"]
        lines.append(
            f"- {tools['tools']} tools from 20 backends: config load {tools['config_load_ms']} ms, start to ready "
            f"{tools['start_to_ready_s']} s; tools/list (first page: 1,000 tools) p50 {lc1['p50_ms']} ms at c=1, "
            f"{lc16['rps']:.0f} req/s "
            f"and {lc16.get('cpu_us_per_req')} µs CPU each at c=16; tools/call {call['rps']:.0f} req/s "
            f"({call.get('cpu_us_per_req')} µs CPU); reload visible after {tools['reload_to_visible_s']} s "
            f"(the file watcher debounces for up to 200 ms); RSS {tools['rss_mb']} MB"
        )
    servers = results.get("servers")
    if servers:
        call = servers["tools/call c=64 on vs1000"]
        lines.append(
            f"- {servers['virtual_servers']} virtual servers: config load {servers['config_load_ms']} ms, start to "
            f"ready {servers['start_to_ready_s']} s, RSS {servers['rss_mb_at_start']} MB; tools/call on the last "
            f"{call['rps']:.0f} req/s ({call.get('cpu_us_per_req')} µs CPU); reload visible after "
            f"{servers['reload_to_visible_s']} s"
        )
    soak = results.get("soak")
    if soak:
        lines.append(
            f"- soak (auth + slice + recording), {soak['seconds']:.0f} s at {soak['target_rps']} req/s (80 % of "
            f"{soak['closed_loop_peak_rps']:.0f}): achieved {soak['achieved_rps']:.0f} req/s, {soak['requests']} "
            f"calls, {soak['errors']} errors, p50 {soak['p50_ms']} ms, p99 {soak['p99_ms']} ms; RSS "
            f"{soak['rss_first_minute_mb']} -> {soak['rss_last_minute_mb']} MB ({soak['rss_growth_pct']:+.1f} %); "
            f"spans {soak['spans']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {PARTS}")
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per measured point")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.soak_seconds < 180 and "soak" in parts:
        parser.error("--soak-seconds: at least 180 (a warm-up minute, then a first and a last minute to compare)")
    if (os.cpu_count() or 1) < 2:
        parser.error("needs 2 cores: the system under test on core 0, the load generator on core 1")
    # 1,000 sessions are 2,000+ sockets in the gateway: children inherit the raised soft limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = Path(tempfile.mkdtemp(prefix="slicewire-scale-"))
    results: dict[str, Any] = {}
    for part in parts:
        print(f"{part} ...", file=sys.stderr, flush=True)
        if part == "soak":
            results[part] = part_soak(workdir, args.soak_seconds)
        else:
            results[part] = globals()[f"part_{part}"](workdir, args.duration)
    out = save("scale", {"results": results})
    print(summary(results))
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Gateway benchmark: direct-to-backend vs through Slicewire vs naive forwarders, in one run.

The system under test (gateway or forwarder, plus the echo backend) is pinned to core 0, the load
generator to core 1. For each system and concurrency it reports req/s, latency percentiles, and the
CPU time per request spent in the system-under-test process (read from /proc), then writes a JSON
file under bench/results/. The machine is noisy: compare systems within one run (ratios), not runs.

    .venv/bin/python bench/run.py                       # everything, 5 s per point
    .venv/bin/python bench/run.py --systems direct,slicewire -c 1,64 -d 10
    .venv/bin/python bench/run.py --repeat 3              # medians of three rounds
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TICK = os.sysconf("SC_CLK_TCK")
# `--baseline DIR`: each Slicewire system also runs from another checkout (e.g. `git worktree add
# /tmp/base HEAD~1`), as "<system>@baseline", in the same run: a change's cost as a ratio.
BASELINE = "@baseline"
# `--workers N`: each Slicewire system also runs with `serve --workers N`, as "<system>/wN".
WORKERS = "/w"
SYSTEMS = [
    "direct",
    "slicewire",
    "slicewire-recording",
    "slicewire-legacy",
    "slicewire-full",
    "slicewire-guarded",
    "fastmcp-proxy",
    "fastmcp-proxy-legacy",
    "forwarder-raw",
    "forwarder-aiohttp",
    "forwarder-httpx-aiohttp",
    "forwarder-httpx",
]


# Where each part runs: the system under test (and the backend) on core 0, the load generator (and the
# recorder) on core 1. `--workers N` spreads everything over both cores: N workers need them.
CORES = {"system": "0", "load": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_split(pid: int) -> tuple[float, float]:
    """A process's (user, system) CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def descendants(pid: int) -> list[int]:
    """The pid and every process under it (a supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_split(pid: int, skip: int | None = None) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree under `pid`, without `skip`'s."""
    user = system = 0.0
    for each in descendants(pid):
        if each == skip:
            continue
        try:
            u, s = cpu_split(each)
        except OSError:
            continue  # exited meanwhile
        user, system = user + u, system + s
    return user, system


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def answers_ok(url: str) -> bool:
    """Whether a GET of `url` answers 200 (a health or readiness probe)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def pinned(
    core: int | str,
    args: list[str],
    log: Path,
    nice: int = 0,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    prefix = ["nice", "-n", str(nice)] if nice else []
    return subprocess.Popen(
        [*prefix, "taskset", "-c", str(core), *args],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=cwd,  # `python -m proxy` runs the checkout it is started in
        env={**os.environ, **env} if env else None,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def load(
    url: str,
    concurrency: int,
    duration: float,
    era: str,
    tool: str = "echo",
    warmup: float = 0,
    token_file: Path | None = None,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One load-generator run on core 1 (bench/loadgen.py; `options`: more of its flags), with the CPU
    it used (`loadgen_cpu_s`)."""
    auth = ["--token-file", str(token_file)] if token_file else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            CORES["load"],
            sys.executable,
            str(BENCH / "loadgen.py"),
            "--url",
            url,
            "--tool",
            tool,
            "-c",
            str(concurrency),
            "-d",
            str(duration),
            "--warmup",
            str(warmup),
            "--era",
            era,
            *auth,
            *options,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(out.stdout)
    result["loadgen_cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)
    return result


def tools_calls_counted(url: str, workdir: Path) -> float:
    """The gateway's own count of tools/call requests answered (its /metrics), for comparing with the
    load generator's."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    base = url.split("/virtual/")[0]
    token = (workdir / "admin.token").read_text()
    request = urllib.request.Request(f"{base}/metrics", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mcp_server_operation_duration_seconds_count"
        and sample.labels.get("mcp_method_name") == "tools/call"
    )


@dataclasses.dataclass
class Target:
    """A started system under test: where to send load, and which process to charge for it."""

    url: str
    pid: int
    era: str = "modern"
    tool: str = "echo"
    token_file: Path | None = None  # a gateway token the load generator sends
    helper: int | None = None  # Slicewire's span-shipping helper, whose CPU is reported apart
    workdir: Path | None = None  # Slicewire: /metrics and the recorder counters are read with its admin token
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    workers: int = 0  # `serve --workers N`: CPU is the supervisor's and its workers' (helpers apart)
    backend: int | None = None  # charged apart when everything shares the cores


def measure(target: Target, concurrency: int, duration: float) -> dict[str, Any]:
    """One point: req/s and latencies from the load generator, CPU per request and RSS of the system's
    process. For Slicewire, the gateway's own count of tools/call answered (its /metrics) is reported
    beside the load generator's."""
    url, era, tool, token = target.url, target.era, target.tool, target.token_file
    load(url, concurrency, 1.0, era, tool, token_file=token)  # warm up: connections, sessions, caches
    counted_before = tools_calls_counted(url, target.workdir) if target.workdir else 0.0

    def system_cpu() -> tuple[float, float]:
        return tree_cpu_split(target.pid, skip=target.helper) if target.workers else cpu_split(target.pid)

    before = system_cpu()
    helper_before = cpu_seconds(target.helper) if target.helper else 0.0
    backend_before = cpu_seconds(target.backend) if target.backend else 0.0
    result = load(url, concurrency, duration, era, tool, token_file=token)
    after = system_cpu()
    used = sum(after) - sum(before)
    if target.workers:
        # Everything shares both cores: say who used them (the load generator's share bounds the rest).
        span = duration * len(os.sched_getaffinity(0))  # CPU seconds the machine had in the window
        result["workers"] = target.workers
        result["share_gateway"] = round(used / span, 3)
        result["share_loadgen"] = round(result["loadgen_cpu_s"] / span, 3)
        if target.backend:
            result["share_backend"] = round((cpu_seconds(target.backend) - backend_before) / span, 3)
    if target.workdir:
        # The load generator counts answers inside its window; calls in flight at its end finish after:
        # the gateway's count may exceed it by up to the concurrency.
        result["metrics_tools_calls"] = int(tools_calls_counted(url, target.workdir) - counted_before)
    requests = result["requests"]
    result["cpu_us_per_req"] = round(used / requests * 1e6, 1) if requests else None
    result["sys_us_per_req"] = round((after[1] - before[1]) / requests * 1e6, 1) if requests else None  # kernel
    if target.helper and requests:
        result["helper_cpu_us_per_req"] = round((cpu_seconds(target.helper) - helper_before) / requests * 1e6, 1)
    result["rss_mb"] = round(rss_mb(target.pid), 1)
    return result


def pin_helper(url: str, workdir: Path, nice: int = 19) -> int | None:
    """Move the gateway's span-shipping helper (a child, so pinned to the gateway's core) to core 1
    beside the recorder and the load generator, by default at the recorder's priority: recording's
    work outside the gateway process is measured apart, as the recorder's is. (Starved that way for
    long, it falls behind and the gateway drops past its queue cap: the soak runs it at `nice 0`.)"""
    counters = recorder_counters(url, workdir) or {}
    pid = counters.get("helper_pid")
    if pid:
        # Every thread (-a): gRPC's were started before this and would stay on the gateway's core.
        subprocess.run(["taskset", "-a", "-p", "-c", CORES["load"], str(pid)], check=True, capture_output=True)
        for task in Path(f"/proc/{pid}/task").iterdir():  # a nice value is per thread on Linux
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
    return pid


def recorder_counters(url: str, workdir: Path) -> dict[str, Any] | None:
    """The gateway's emitter counters (emitted, sent, spooled, dropped), from its admin status."""
    import urllib.request

    base = url.split("/virtual/")[0]
    token = (workdir / "admin.token").read_text()
    request = urllib.request.Request(f"{base}/api/v1/status", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read()).get("recorder")


AGENT_SCOPES = ["mcp:bench", "tools:say"]


# slicewire-guarded: `say` with three regex guardrails, two on its arguments and one on its result.
GUARDRAILS = {
    "input_rules": [{"name": "no-drop", "deny": r"(?i)drop\s+table"}, {"name": "no-dump", "deny": r"(?i)select\s+\*"}],
    "output_rules": [{"detect": "email", "action": "redact"}],
}


def state_db(workdir: Path, checkout: Path = ROOT) -> Path:
    """The state DB a checkout's gateway uses: the bench's tokens (`admin.token`, `agent.token`), in a
    file of the checkout's own schema (an older Slicewire refuses a newer schema), made by that checkout."""
    import sqlite3

    from proxy._state import StateDB

    first = workdir / "state.db"
    if not (workdir / "admin.token").exists():
        db = StateDB(first)
        (workdir / "admin.token").write_text(db.create_token("bench", "service")[0])
        (workdir / "agent.token").write_text(db.create_token("agent", "service", AGENT_SCOPES)[0])
        db.close()
    if checkout == ROOT:
        return first
    path = workdir / f"state-{checkout.name}.db"
    if not path.exists():
        make = "import sys; from proxy._state import StateDB; StateDB(sys.argv[1]).close()"
        subprocess.run([sys.executable, "-c", make, str(path)], cwd=checkout, check=True)
        with sqlite3.connect(path) as target:  # the tokens table is the same in every schema
            target.execute("ATTACH DATABASE ? AS first", (str(first),))
            target.execute("INSERT INTO tokens SELECT * FROM first.tokens")
    return path


def gateway_config(
    backend_url: str,
    port: int,
    workdir: Path,
    recorder: str | None = None,
    auth: bool = False,
    guarded: bool = False,
    checkout: Path = ROOT,
) -> Path:
    """One virtual server slicing the echo backend's `echo` as `say`. Public unless `auth`: then it needs
    a gateway token with its scope and the tool's, from a subject among its users (`agent.token`).
    `guarded`: `say` has three regex guardrails (GUARDRAILS)."""
    state = state_db(workdir, checkout)
    server: dict[str, Any] = {
        "path": "/virtual/bench",
        "server_name": "bench",
        "public": True,
        "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/echo", "alias": "say",
                           **({"guardrails": GUARDRAILS} if guarded else {})}],
    }  # fmt: skip
    if auth:
        server.update(
            public=False,
            required_scopes=["mcp:bench"],
            tool_scope_overrides=[{"tool_alias": "say", "required_scopes": ["tools:say"]}],
            roles={"users": ["agent"]},
        )
    path = workdir / "bench.yaml"
    path.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "recorder": {"target": recorder, "spool_dir": str(workdir / "spool")},
                # The bench reads the recorder's counters from the admin status endpoint.
                "auth": {"state_db": str(state), "admins": ["bench"]},
                "backends": [{"path": "/echo", "transport": "streamable-http", "url": backend_url}],
                "virtual_servers": [server],
            }
        )
    )
    return path


def start_recorder(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A recorder beside the load generator (core 1) at the lowest priority: a Slicewire figure is then
    the gateway's own cost of recording, and the load generator never loses CPU to the recorder."""
    target = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "proxy", "recorder", "--db", str(workdir / f"bench-{target.rsplit(':')[1]}.duckdb")]
    recorder = pinned(
        CORES["load"], [*argv, "--listen", target, "--log-level", "warning"], workdir / "recorder.log", nice=19
    )
    wait_port(int(target.rsplit(":", 1)[1]))
    return target, recorder


def start_slicewire(name: str, backend_url: str, workdir: Path, checkout: Path = ROOT) -> Target:
    """One Slicewire configuration, run from `checkout` (this one, or a --baseline worktree); a name ending
    in `/wN` runs it with `--workers N`."""
    system, _, workers = name.partition(WORKERS)
    procs = []
    recorder = None
    if system in ("slicewire-recording", "slicewire-full"):
        recorder, process = start_recorder(workdir)
        procs.append(process)
    port = free_port()
    auth = system.startswith("slicewire-full")  # "slicewire-full-off": the same without recording
    config = gateway_config(
        backend_url, port, workdir, recorder, auth=auth, guarded=system == "slicewire-guarded", checkout=checkout
    )
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--no-reload", "--log-level", "warning"]
    if workers:
        argv += ["--workers", workers]
    gateway = pinned(CORES["system"], argv, workdir / f"{system}-{checkout.name}.log", cwd=checkout)
    procs.insert(0, gateway)
    url = f"http://127.0.0.1:{port}/virtual/bench/mcp"
    wait_port(port)
    if workers:  # the port answers once the first worker listens: wait for every one
        deadline = time.monotonic() + 30
        while len(descendants(gateway.pid)) <= int(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # settle: discovery in each worker
    return Target(
        url,
        gateway.pid,
        era="legacy" if system.endswith("legacy") else "modern",
        tool="say",
        token_file=workdir / "agent.token" if auth else None,
        helper=pin_helper(url, workdir) if recorder else None,
        workdir=workdir,
        procs=procs,
        workers=int(workers or 0) if CORES["system"] != "0" else 0,
    )


def start_peer(system: str, backend_url: str, workdir: Path) -> Target:
    """A system that is not Slicewire, pinned to core 0 beside the backend: a naive forwarder, FastMCP
    or ContextForge."""
    port = free_port()
    if system == "contextforge-legacy":
        from contextforge import start

        proc, url, token_file = start(backend_url, workdir, port, pinned, {})
        return Target(url, proc.pid, era="legacy", tool="echo-echo", token_file=token_file, procs=[proc])
    if system.startswith("fastmcp-proxy"):
        argv = [str(BENCH / "fastmcp_proxy.py"), "--port", str(port), "--upstream", backend_url]
    else:
        client = system.removeprefix("forwarder-")
        argv = [str(BENCH / "forwarder.py"), "--port", str(port), "--upstream", backend_url, "--client", client]
    proc = pinned(CORES["system"], [sys.executable, *argv], workdir / f"{system}.log")
    wait_port(port)
    return Target(f"http://127.0.0.1:{port}/mcp", proc.pid, era="legacy" if system.endswith("legacy") else "modern",
                  procs=[proc])  # fmt: skip


def in_order(systems: list[str], round_index: int) -> list[str]:
    """The systems of one round. With --baseline, each system and its baseline swap places every other
    round: the first system of a round runs slower (the fresh backend settling), and that must not
    fall on one side of the comparison."""
    if round_index % 2 == 0:
        return systems
    ordered = list(systems)
    for i in range(len(ordered) - 1):
        if ordered[i + 1] == ordered[i] + BASELINE:
            ordered[i], ordered[i + 1] = ordered[i + 1], ordered[i]
    return ordered


def run(args: argparse.Namespace, round_index: int = 0) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="slicewire-bench-"))
    backend_port = free_port()
    backend = pinned(
        CORES["system"], [sys.executable, str(BENCH / "echo_backend.py"), "--port", str(backend_port)],
        workdir / "backend.log",
    )  # fmt: skip
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    results: dict[str, Any] = {}
    try:
        wait_port(backend_port)
        for system in in_order(args.systems, round_index):
            results[system] = {}
            target: Target | None = None
            try:
                if system == "direct":
                    target = Target(backend_url, backend.pid)
                elif system.endswith(BASELINE):
                    target = start_slicewire(system.removesuffix(BASELINE), backend_url, workdir, args.baseline)
                elif system.startswith("slicewire"):
                    target = start_slicewire(system, backend_url, workdir)
                else:
                    target = start_peer(system, backend_url, workdir)
                if CORES["system"] != "0":
                    target.workers = target.workers or 1  # shares are reported for every system
                    target.backend = backend.pid
                for concurrency in args.concurrency:
                    point = measure(target, concurrency, args.duration)
                    if target.helper:
                        point["recorder"] = recorder_counters(target.url, workdir)
                    results[system][str(concurrency)] = point
                    print(
                        f"{system:26} c={concurrency:<3} {point['rps']:>8} req/s  p50 {point['p50_ms']} ms  "
                        f"p99 {point['p99_ms']} ms  cpu {point['cpu_us_per_req']} us/req  errors {point['errors']}"
                        + (f" (first: {point['first_error'][:200]})" if point["errors"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                for proc in target.procs if target else []:
                    stop(proc)
    finally:
        stop(backend)
    return results


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system and concurrency, the median of every numeric figure over the rounds (the machine is
    noisy; rounds run the systems one after another, so each round is a fair comparison)."""
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, Any] = {}
    for system, points in rounds[0].items():
        merged[system] = {}
        for c, first in points.items():
            samples = [r[system][c] for r in rounds if c in r.get(system, {})]
            point = dict(first)
            for key, value in first.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values = [s[key] for s in samples if s.get(key) is not None]
                    point[key] = round(statistics.median(values), 3) if values else None
                    if isinstance(value, int) and point[key] is not None:
                        point[key] = round(point[key])
            merged[system][c] = point
    return merged


def reference_of(results: dict[str, Any]) -> str | None:
    """The Slicewire configuration the ratios are taken against: the goal's (auth, slice, recording)
    when it ran, else the plainest one that did."""
    return next((s for s in ("slicewire-full", "slicewire", "slicewire-recording") if s in results), None)


def table(results: dict[str, Any]) -> str:
    ref = reference_of(results)
    lines = [
        "| system | c | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req "
        f"| CPU vs {ref} | req/s vs {ref} | RSS MB | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system, points in results.items():
        for c, p in points.items():
            base = results.get(ref, {}).get(c) if ref else None
            cpu_ratio = rps_ratio = "—"
            if base and p["cpu_us_per_req"] and base["cpu_us_per_req"]:
                cpu_ratio = f"{p['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}"
            if base and base["rps"]:
                rps_ratio = f"{p['rps'] / base['rps']:.2f}"
            ms = {k: "—" if p[k] is None or p[k] != p[k] else f"{p[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms")}
            lines.append(
                f"| {system} | {c} | {p['rps']:.0f} | {ms['p50_ms']} | {ms['p90_ms']} | {ms['p99_ms']} "
                f"| {p['cpu_us_per_req']} | {cpu_ratio} | {rps_ratio} | {p['rss_mb']} | {p['errors']} |"
            )
    lines.append("")
    lines += summary(results)
    return "\n".join(lines)


def summary(results: dict[str, Any]) -> list[str]:
    """The goal figures (issue 7) and the headline ratios, from the points that ran."""
    lines = []
    direct = results.get("direct", {})
    full = results.get("slicewire-full", {})
    plain = results.get("slicewire", {})
    recording = results.get("slicewire-recording", {})
    for name, points in (("slicewire-full", full), ("slicewire", plain)):
        if "1" in points and "1" in direct:
            added = points["1"]["p50_ms"] - direct["1"]["p50_ms"]
            lines.append(f"- {name} adds {added:.3f} ms to p50 at c=1 (goal ≤ 0.4 ms with auth and recording)")
        if "64" in points:
            p = points["64"]
            lines.append(
                f"- {name} at c=64: {p['cpu_us_per_req']} µs gateway CPU per proxied tools/call (goal ≤ 250), "
                f"p99/p50 {p['p99_ms'] / p['p50_ms']:.2f} (goal ≤ 2), RSS {p['rss_mb']} MB (goal ≤ 80)"
            )
    for c, point in recording.items():
        if c in plain:
            cost = 1 - point["rps"] / plain[c]["rps"]
            counters = point.get("recorder") or {}
            lines.append(
                f"- c={c}: recording on costs {cost * 100:.1f}% of req/s "
                f"({point['cpu_us_per_req']} vs {plain[c]['cpu_us_per_req']} µs CPU per call; helper "
                f"{point.get('helper_cpu_us_per_req')} µs on the other core; spans emitted {counters.get('emitted')}, "
                f"dropped {counters.get('dropped')} so far)"
            )
    for system, points in results.items():
        one = results.get(system.partition(WORKERS)[0]) if WORKERS in system else None
        for c, p in points.items() if one else ():
            if c in one:
                shares = ", ".join(
                    f"{who} {p.get(f'share_{who}', 0) * 100:.0f} %" for who in ("gateway", "backend", "loadgen")
                )
                ones = ", ".join(
                    f"{who} {one[c].get(f'share_{who}', 0) * 100:.0f} %" for who in ("gateway", "backend", "loadgen")
                )
                lines.append(
                    f"- c={c}: {system} {p['rps']:.0f} req/s vs {one[c]['rps']:.0f} with one worker "
                    f"({p['rps'] / one[c]['rps']:.2f}x); share of the machine's CPU: {shares} (one worker: {ones})"
                )
    ref = reference_of(results)
    for system, points in results.items():
        if system.startswith(("fastmcp", "forwarder", "contextforge")) and ref and "64" in points:
            base = results[ref].get("64")
            if base and points["64"]["cpu_us_per_req"]:
                ratio = points["64"]["cpu_us_per_req"] / base["cpu_us_per_req"]
                lines.append(f"- c=64: {system} spends {ratio:.2f}x {ref}'s CPU per request")
    return lines


def save(kind: str, report: dict[str, Any]) -> Path:
    """Write bench/results/<kind>-<UTC time>.json: the report, dated, with the machine it ran on."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out = BENCH / "results" / f"{kind}-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": stamp, "machine": machine, **report}, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Direct vs Slicewire vs naive forwarders, one run.")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {SYSTEMS}")
    parser.add_argument("-c", "--concurrency", default="1,16,64", help="comma-separated concurrency levels")
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per measured point")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds over all systems; the table shows each figure's median"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout to compare with (e.g. `git worktree add /tmp/base HEAD~1`): each slicewire system "
        "also runs from it, as <system>@baseline",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run each slicewire system with `serve --workers N` (as <system>/wN); every process then "
        "shares all cores, and each point says which share of them the gateway, backend and load generator used",
    )
    parser.add_argument(
        "--contextforge",
        action="store_true",
        help="also IBM ContextForge (installed into .venv-contextforge/ on first use; 2025-11-25 clients)",
    )
    args = parser.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    if args.contextforge and "contextforge-legacy" not in args.systems:
        args.systems.append("contextforge-legacy")
    unknown = set(args.systems) - {*SYSTEMS, "contextforge-legacy"}
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if args.baseline is not None:
        if not (args.baseline / "proxy" / "__main__.py").exists():
            parser.error(f"--baseline {args.baseline}: not a Slicewire checkout (no proxy/__main__.py)")
        args.baseline = args.baseline.resolve()
        args.systems = [n for s in args.systems for n in ((s, s + BASELINE) if s.startswith("slicewire") else (s,))]
    if args.workers > 1:
        if args.baseline is not None:
            parser.error("--workers and --baseline: one comparison per run")
        args.systems = [n for s in args.systems for n in ((s, f"{s}{WORKERS}{args.workers}")
                                                           if s.startswith("slicewire") else (s,))]  # fmt: skip
        every = f"0-{len(os.sched_getaffinity(0)) - 1}"
        CORES.update(system=every, load=every)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        parser.error("needs 2 cores: the system under test on core 0, the load generator on core 1")
    rounds = [run(args, i) for i in range(args.repeat)]
    results = median_of(rounds)
    # results: medians over the rounds
    out = save("gateway", {"duration_s": args.duration, "repeat": args.repeat, "results": results, "rounds": rounds})
    print(table(results))
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

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
import datetime
import json
import os
import platform
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
SYSTEMS = [
    "direct",
    "slicewire",
    "slicewire-recording",
    "slicewire-legacy",
    "forwarder-raw",
    "forwarder-aiohttp",
    "forwarder-httpx-aiohttp",
    "forwarder-httpx",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


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


def pinned(core: int, args: list[str], log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    prefix = ["nice", "-n", str(nice)] if nice else []
    return subprocess.Popen(
        [*prefix, "taskset", "-c", str(core), *args], stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def load(
    url: str, concurrency: int, duration: float, era: str, tool: str = "echo", warmup: float = 0
) -> dict[str, Any]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
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
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


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


def measure(
    url: str,
    pid: int,
    concurrency: int,
    duration: float,
    era: str,
    tool: str,
    helper: int | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """One point. `helper`: the gateway's span-shipping helper process, whose CPU is reported apart.
    `workdir` (Slicewire only): the gateway's /metrics is scraped around the window, and its count of
    tools/call answered is reported beside the load generator's."""
    load(url, concurrency, 1.0, era, tool)  # warm up: connections, sessions, caches
    counted_before = tools_calls_counted(url, workdir) if workdir else 0.0
    before = cpu_seconds(pid)
    helper_before = cpu_seconds(helper) if helper else 0.0
    result = load(url, concurrency, duration, era, tool)
    used = cpu_seconds(pid) - before
    if workdir:
        # The load generator counts answers inside its window; calls in flight at its end finish after:
        # the gateway's count may exceed it by up to the concurrency.
        result["metrics_tools_calls"] = int(tools_calls_counted(url, workdir) - counted_before)
    result["cpu_us_per_req"] = round(used / result["requests"] * 1e6, 1) if result["requests"] else None
    if helper and result["requests"]:
        result["helper_cpu_us_per_req"] = round((cpu_seconds(helper) - helper_before) / result["requests"] * 1e6, 1)
    result["rss_mb"] = round(rss_mb(pid), 1)
    return result


def pin_helper(url: str, workdir: Path) -> int | None:
    """Move the gateway's span-shipping helper (a child, so pinned to the gateway's core) to core 1
    beside the recorder and the load generator, at the recorder's priority: recording's work outside
    the gateway process is measured apart, as the recorder's is."""
    counters = recorder_counters(url, workdir) or {}
    pid = counters.get("helper_pid")
    if pid:
        subprocess.run(["taskset", "-p", "-c", "1", str(pid)], check=True, capture_output=True)
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    return pid


def recorder_counters(url: str, workdir: Path) -> dict[str, Any] | None:
    """The gateway's emitter counters (emitted, sent, spooled, dropped), from its admin status."""
    import urllib.request

    base = url.split("/virtual/")[0]
    token = (workdir / "admin.token").read_text()
    request = urllib.request.Request(f"{base}/api/v1/status", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read()).get("recorder")


def gateway_config(backend_url: str, port: int, workdir: Path, recorder: str | None = None) -> Path:
    from proxy._state import StateDB

    if not (workdir / "admin.token").exists():
        db = StateDB(workdir / "state.db")
        (workdir / "admin.token").write_text(db.create_token("bench", "service")[0])
        db.close()
    path = workdir / "bench.yaml"
    path.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "recorder": {"target": recorder, "spool_dir": str(workdir / "spool")},
                # The bench reads the recorder's counters from the admin status endpoint.
                "auth": {"state_db": str(workdir / "state.db"), "admins": ["bench"]},
                "backends": [{"path": "/echo", "transport": "streamable-http", "url": backend_url}],
                "virtual_servers": [
                    {
                        "path": "/virtual/bench",
                        "server_name": "bench",
                        "public": True,
                        "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/echo", "alias": "say"}],
                    }
                ],
            }
        )
    )
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="slicewire-bench-"))
    backend_port = free_port()
    backend = pinned(
        0, [sys.executable, str(BENCH / "echo_backend.py"), "--port", str(backend_port)], workdir / "backend.log"
    )
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    results: dict[str, Any] = {}
    try:
        wait_port(backend_port)
        for system in args.systems:
            results[system] = {}
            proc = None
            extra: list[subprocess.Popen[bytes]] = []
            if system == "direct":
                url, pid, era, tool = backend_url, backend.pid, "modern", "echo"
            elif system.startswith("slicewire"):
                port = free_port()
                target = None
                if system == "slicewire-recording":
                    # The recorder runs beside the load generator (core 1), at the lowest priority: the figure
                    # is the gateway's own cost of recording, not the load generator losing CPU to the recorder.
                    target = f"127.0.0.1:{free_port()}"
                    recorder = pinned(
                        1,
                        [
                            sys.executable,
                            "-m",
                            "proxy",
                            "recorder",
                            "--db",
                            str(workdir / "bench.duckdb"),
                            "--listen",
                            target,
                            "--log-level",
                            "warning",
                        ],
                        workdir / "recorder.log",
                        nice=19,  # it takes what the load generator leaves, never the load generator's share
                    )
                    extra.append(recorder)
                    wait_port(int(target.rsplit(":", 1)[1]))
                config = gateway_config(backend_url, port, workdir, target)
                proc = pinned(
                    0,
                    [
                        sys.executable,
                        "-m",
                        "proxy",
                        "serve",
                        "--config",
                        str(config),
                        "--no-reload",
                        "--log-level",
                        "warning",
                    ],
                    workdir / f"{system}.log",
                )
                url, pid, tool = f"http://127.0.0.1:{port}/virtual/bench/mcp", proc.pid, "say"
                era = "legacy" if system.endswith("legacy") else "modern"
            else:
                port = free_port()
                client = system.removeprefix("forwarder-")
                proc = pinned(
                    0,
                    [
                        sys.executable,
                        str(BENCH / "forwarder.py"),
                        "--port",
                        str(port),
                        "--upstream",
                        backend_url,
                        "--client",
                        client,
                    ],
                    workdir / f"{system}.log",
                )
                url, pid, era, tool = f"http://127.0.0.1:{port}/mcp", proc.pid, "modern", "echo"
            try:
                if proc is not None:
                    wait_port(int(url.split(":")[2].split("/")[0]))
                helper = pin_helper(url, workdir) if system == "slicewire-recording" else None
                for concurrency in args.concurrency:
                    scrape = workdir if system.startswith("slicewire") else None
                    point = measure(url, pid, concurrency, args.duration, era, tool, helper, scrape)
                    if system == "slicewire-recording":
                        point["recorder"] = recorder_counters(url, workdir)
                    results[system][str(concurrency)] = point
                    print(
                        f"{system:26} c={concurrency:<3} {point['rps']:>8} req/s  p50 {point['p50_ms']:.3f} ms  "
                        f"p99 {point['p99_ms']:.3f} ms  cpu {point['cpu_us_per_req']} us/req  errors {point['errors']}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                if proc is not None:
                    stop(proc)
                for other in extra:
                    stop(other)
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
                    point[key] = statistics.median(s[key] for s in samples if s.get(key) is not None)
            merged[system][c] = point
    return merged


def table(results: dict[str, Any]) -> str:
    lines = [
        "| system | c | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req (SUT process) | RSS MB | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system, points in results.items():
        for c, p in points.items():
            lines.append(
                f"| {system} | {c} | {p['rps']:.0f} | {p['p50_ms']:.3f} | {p['p90_ms']:.3f} | {p['p99_ms']:.3f} "
                f"| {p['cpu_us_per_req']} | {p['rss_mb']} | {p['errors']} |"
            )
    direct = results.get("direct", {})
    gateway = results.get("slicewire", {})
    recording = results.get("slicewire-recording", {})
    if direct and gateway:
        lines.append("")
        for c in gateway:
            if c in direct:
                added = gateway[c]["p50_ms"] - direct[c]["p50_ms"]
                lines.append(
                    f"- c={c}: Slicewire adds {added:.3f} ms to p50; gateway CPU "
                    f"{gateway[c]['cpu_us_per_req']} µs per proxied tools/call"
                )
        for c in recording:
            if c in gateway:
                cost = 1 - recording[c]["rps"] / gateway[c]["rps"]
                counters = recording[c].get("recorder") or {}
                lines.append(
                    f"- c={c}: recording on costs {cost * 100:.1f}% of req/s "
                    f"({recording[c]['cpu_us_per_req']} vs {gateway[c]['cpu_us_per_req']} µs CPU per call; "
                    f"spans emitted {counters.get('emitted')}, sent {counters.get('sent')}, "
                    f"dropped {counters.get('dropped')} so far)"
                )
        for system, points in results.items():
            if system.startswith("forwarder") and "64" in points and "64" in gateway:
                ratio = points["64"]["cpu_us_per_req"] / gateway["64"]["cpu_us_per_req"]
                lines.append(f"- c=64: {system} spends {ratio:.2f}x Slicewire's CPU per request")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Direct vs Slicewire vs naive forwarders, one run.")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {SYSTEMS}")
    parser.add_argument("-c", "--concurrency", default="1,64", help="comma-separated concurrency levels")
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per measured point")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds over all systems; the table shows each figure's median"
    )
    args = parser.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        parser.error("needs 2 cores: the system under test on core 0, the load generator on core 1")
    rounds = [run(args) for _ in range(args.repeat)]
    results = median_of(rounds)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    report = {
        "date": stamp,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "duration_s": args.duration,
        "repeat": args.repeat,
        "results": results,  # medians over the rounds
        "rounds": rounds,
    }
    out = BENCH / "results" / f"gateway-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(results))
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

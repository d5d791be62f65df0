"""What recording costs the gateway, measured in alternating pairs (issue 3's target: ≤ 5 % of req/s).

`run.py` measures one system after another; on this machine throughput drifts ±20-30 % within a
minute, which is larger than the figure wanted. Here both gateways run at once on core 0 beside the
echo backend — one recording (its recorder and span-shipping helper on core 1), one not — and the
load generator (core 1) drives them in short windows, alternating A B B A, so each pair shares the
machine's state of the moment. Before each window the recording gateway's spans are all delivered,
so the recorder's catching up lands in neither window. The figures are medians over the pairs of
the per-pair ratios, with their interquartile range. The recorder and the helper run at SCHED_IDLE
(`--no-idle`: nice 19, as in run.py), so they run only when the load generator does not want core 1.
And a SCHED_IDLE spinner keeps core 1 busy throughout (`--no-spin`): on this VM, windows that left core 1 half idle
(the non-recording gateway's) saw 20-27 % steal time on core 0, busier ones 0-7 %; each window's
steal ticks are in the JSON.

    .venv/bin/python bench/recording_cost.py                    # 12 pairs of 3 s windows at c=64
    .venv/bin/python bench/recording_cost.py --pairs 20 -d 2 --auth

`rps cost` is 1 - (req/s recording / req/s not); `cpu cost` is the gateway's CPU per call recording
over not, minus one. Every window's answers are validated by the load generator; a window with an
error, or a recording whose counters show a dropped span, fails the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, Target, free_port, measure, pinned, recorder_counters, save, start_slicewire, stop, wait_port


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def pct(values: list[float]) -> str:
    q1, q2, q3 = quartiles(values)
    return f"{q2 * 100:+.1f} % (IQR {q1 * 100:+.1f} … {q3 * 100:+.1f})"


def idle(pid: int) -> None:
    """Every thread of a process to SCHED_IDLE: it runs only when core 1 has nothing else to do (threads
    it starts later inherit the policy), so the load generator never waits for the recorder."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))


def steal_ticks() -> int:
    """The machine's steal time so far (clock ticks, all cores): time the hypervisor ran someone else."""
    with open("/proc/stat") as stat:
        return int(stat.readline().split()[8])


def settle(target: Target, timeout: float = 60.0) -> float:
    """Wait until the recording gateway's spans are all delivered (the recorder is not catching up: its
    DuckDB work would land in the next window, whichever gateway it measures); the seconds waited."""
    assert target.workdir is not None
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        counters = recorder_counters(target.url, target.workdir) or {}
        emitted = counters.get("emitted", 0)
        if counters.get("sent", 0) >= emitted - counters.get("dropped", 0) and emitted == last:
            break
        last = emitted
        time.sleep(0.3)  # longer than nothing: the gateway hands off a partial batch every 200 ms
    return time.monotonic() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="slicewire-recording-cost-"))
    backend_port = free_port()
    backend = pinned(0, [sys.executable, str(BENCH / "echo_backend.py"), "--port", str(backend_port)], root / "be.log")
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    targets: dict[str, Target] = {}
    windows: list[dict[str, Any]] = []
    spinner = None
    if args.spin:
        spinner = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
        idle(spinner.pid)
    try:
        wait_port(backend_port)
        for name, system in (("off", "slicewire-full-off" if args.auth else "slicewire"),
                             ("on", "slicewire-full" if args.auth else "slicewire-recording")):  # fmt: skip
            workdir = root / name
            workdir.mkdir()
            targets[name] = start_slicewire(system, backend_url, workdir)
            if name == "on" and args.idle:
                for pid in [p.pid for p in targets[name].procs[1:]] + [targets[name].helper or 0]:
                    if pid:
                        idle(pid)
        for i in range(args.pairs):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")  # A B, B A, ...
            pair: dict[str, Any] = {}
            for name in order:
                waited = settle(targets["on"])
                stolen = steal_ticks()
                point = measure(targets[name], args.concurrency, args.duration)
                point["settle_s"] = round(waited, 2)
                point["steal_ticks"] = steal_ticks() - stolen
                if point["errors"]:
                    raise SystemExit(f"{name}: {point['errors']} errors (first: {point['first_error'][:200]})")
                pair[name] = point
            off, on = pair["off"], pair["on"]
            windows.append(pair)
            print(
                f"pair {i + 1:2}: off {off['rps']:7.0f} req/s {off['cpu_us_per_req']:6.1f} µs | "
                f"on {on['rps']:7.0f} req/s {on['cpu_us_per_req']:6.1f} µs (helper {on['helper_cpu_us_per_req']} µs) "
                f"| rps {1 - on['rps'] / off['rps']:+.1%}  cpu {on['cpu_us_per_req'] / off['cpu_us_per_req'] - 1:+.1%}",
                file=sys.stderr,
                flush=True,
            )
        target = targets["on"]
        assert target.workdir is not None
        counters = recorder_counters(target.url, target.workdir) or {}
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        for target in targets.values():
            for proc in target.procs:
                stop(proc)
        stop(backend)
    if counters.get("dropped"):
        raise SystemExit(f"the recording gateway dropped {counters['dropped']} spans: {counters}")
    rps = [1 - w["on"]["rps"] / w["off"]["rps"] for w in windows]
    cpu = [w["on"]["cpu_us_per_req"] / w["off"]["cpu_us_per_req"] - 1 for w in windows]
    helper = [w["on"]["helper_cpu_us_per_req"] for w in windows]
    return {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "auth": args.auth,
        "idle": args.idle,
        "spin": args.spin,
        "rps_cost_median": statistics.median(rps),
        "cpu_cost_median": statistics.median(cpu),
        "rps_cost": rps,
        "cpu_cost": cpu,
        "cpu_us_off_median": statistics.median(w["off"]["cpu_us_per_req"] for w in windows),
        "cpu_us_on_median": statistics.median(w["on"]["cpu_us_per_req"] for w in windows),
        "helper_us_median": statistics.median(helper),
        "recorder": counters,
        "windows": windows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Recording on vs off, in alternating pairs of windows.")
    parser.add_argument("--pairs", type=int, default=12, help="pairs of windows (default 12)")
    parser.add_argument("-d", "--duration", type=float, default=3.0, help="seconds per window (default 3)")
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="load generator concurrency (default 64)")
    parser.add_argument("--auth", action="store_true", help="both gateways with the goal's auth (slicewire-full)")
    parser.add_argument(
        "--no-spin",
        dest="spin",
        action="store_false",
        help="no SCHED_IDLE spinner keeping core 1 busy (without it, windows that leave core 1 half idle see "
        "steal time from the hypervisor that busier windows do not)",
    )
    parser.add_argument(
        "--no-idle",
        dest="idle",
        action="store_false",
        help="leave the recorder and the span-shipping helper at nice 19 (run.py's placement) instead of SCHED_IDLE",
    )
    args = parser.parse_args()
    if args.pairs < 1 or args.duration <= 0 or args.concurrency < 1:
        parser.error("--pairs, -d and -c must be positive")
    report = run(args)
    out = save("recording-cost", report)
    print(
        f"recording costs {pct(report['rps_cost'])} of req/s and {pct(report['cpu_cost'])} gateway CPU per call "
        f"over {args.pairs} pairs at c={args.concurrency} (median CPU per call {report['cpu_us_off_median']:.1f} → "
        f"{report['cpu_us_on_median']:.1f} µs; helper {report['helper_us_median']:.1f} µs on core 1; "
        f"spans emitted {report['recorder'].get('emitted')}, dropped {report['recorder'].get('dropped')})"
    )
    print(f"written: {out.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()

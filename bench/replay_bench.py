"""Replay speed: 1,000 recorded calls re-issued against a local backend, fast pace, with the diff report.

    .venv/bin/python bench/replay_bench.py              # records ~1k calls, then replays them
    .venv/bin/python bench/replay_bench.py --calls 10000

1. Records a session of `tools/call`s through a gateway (recording on) against bench/echo_backend.py.
2. Runs the real CLI, `slicewire replay SESSION --config … --to N --json`, straight to the backend, and
   times it from start to the report (selection, one call at a time in recorded order, diffs, JSON).
3. Times the diff alone, per call: `compare` of each recorded answer with an equal copy (the full
   walk), and with a copy that has a content block inserted in front (list alignment by LCS, one
   `added` change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import BENCH, free_port, gateway_config, load, pinned, stop, wait_port


def _status(port: int, workdir: Path) -> dict:
    token = (workdir / "admin.token").read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/status", headers={"authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def record(workdir: Path, calls: int) -> tuple[Path, str, str, subprocess.Popen[bytes]]:
    """Record at least `calls` tools/call through a gateway: (trace file, session, backend URL, backend)."""
    backend_port, port, rec_port = free_port(), free_port(), free_port()
    backend = pinned(0, [sys.executable, str(BENCH / "echo_backend.py"), "--port", str(backend_port)],
                     workdir / "b.log")  # fmt: skip
    db = workdir / "traces.duckdb"
    recorder = pinned(1, [sys.executable, "-m", "proxy", "recorder", "--db", str(db), "--listen",
                          f"127.0.0.1:{rec_port}"], workdir / "r.log")  # fmt: skip
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    wait_port(backend_port)
    wait_port(rec_port)
    config = gateway_config(backend_url, port, workdir, f"127.0.0.1:{rec_port}")
    gateway = pinned(0, [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--no-reload",
                         "--log-level", "warning"], workdir / "g.log")  # fmt: skip
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/virtual/bench/mcp"
        done = 0
        while done < calls:
            done += load(url, 8, 3, "modern", "say")["requests"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counters = _status(port, workdir)["recorder"]
            if counters["sent"] >= counters["emitted"] > 0:
                break
            time.sleep(0.2)
    finally:
        stop(gateway)
        stop(recorder)
    from recorder import connect

    with connect(str(db)) as rec:
        session = rec.rows(
            "SELECT session_id, count(*) AS n FROM spans WHERE method = 'tools/call' AND kind = 'SERVER' "
            "GROUP BY 1 ORDER BY n DESC LIMIT 1"
        )[0]
    print(f"recorded {session['n']} calls in session {session['session_id']}", file=sys.stderr)
    return db, session["session_id"], backend_url, backend


def _inserted(answer: dict) -> dict:
    """The answer with a text block inserted before its content."""
    changed = json.loads(json.dumps(answer))
    result = changed.get("result") or {}
    result["content"] = [{"type": "text", "text": "inserted"}, *(result.get("content") or [])]
    return changed


def diff_cost(db: Path, session: str, calls: int, rounds: int = 5) -> tuple[float, float]:
    """Median µs per call of comparing each recorded answer with an equal one (the whole walk), and
    with one that has a block inserted (alignment, one change)."""
    from recorder import connect
    from replay import Rules, Selection, compare, select

    with connect(str(db)) as rec:
        selected = select(rec, Selection(session=session, end=str(calls)))
    recorded = [c.hop_response or {} for c in selected]
    rules = Rules.default()
    medians = []
    for others in ([json.loads(json.dumps(a)) for a in recorded], [_inserted(a) for a in recorded]):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for old, new in zip(recorded, others, strict=True):
                compare(old, new, rules)
            times.append((time.perf_counter() - start) / len(recorded) * 1e6)
        medians.append(statistics.median(times))
    return medians[0], medians[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="slicewire-replay-bench-"))
    db, session, backend_url, backend = record(workdir, args.calls)
    try:
        config = workdir / "direct.yaml"
        config.write_text(json.dumps({
            "backends": [{"path": "/echo", "transport": "streamable-http", "url": backend_url}],
            "virtual_servers": [{"path": "/virtual/bench", "server_name": "bench", "public": True,
                                 "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/echo",
                                                    "alias": "say"}]}],
        }))  # fmt: skip
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "proxy", "replay", session, "--source", str(db), "--config", str(config),
             "--to", str(args.calls), "--json"],
            capture_output=True, text=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        if run.returncode not in (0, 1):
            raise SystemExit(f"replay failed ({run.returncode}): {run.stderr.strip()}")
        report = json.loads(run.stdout)
        replayed = report["summary"]["calls"]
        equal, inserted = diff_cost(db, session, args.calls)
        result = {
            "calls": replayed,
            "outcomes": report["summary"]["outcomes"],
            "wall_s": round(elapsed, 2),
            "calls_per_s": round(replayed / elapsed),
            "diff_us_per_call": round(equal, 1),
            "diff_us_per_call_inserted_block": round(inserted, 1),
            "recorded_ms_total": report["summary"]["recorded_ms_total"],
            "now_ms_total": report["summary"]["now_ms_total"],
        }
        print(json.dumps(result, indent=2))
    finally:
        stop(backend)


if __name__ == "__main__":
    main()

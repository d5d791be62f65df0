"""Instructions per proxied `tools/call`, counted by valgrind (callgrind): recording off vs on.

Wall-clock and CPU-time figures on this machine move ±20 % between identical runs; instruction
counts do not (the same binary and inputs give the same count whatever the other core is doing).
This runs the gateway under callgrind with the echo backend and the load generator of run.py,
zeroes the counters after a warm-up, counts a fixed window, and splits the instructions per request
by shared object (the interpreter, Hyperscan, upb, libc, ...), so that a change's cost is a number.

    .venv/bin/python bench/instructions.py                 # off vs on, 40 s windows (~4 min)
    .venv/bin/python bench/instructions.py --systems slicewire --seconds 20

Needs valgrind (Debian package `valgrind`). Under valgrind the gateway runs ~80x slower, so time-
driven behaviour (the recorder's flush timer) would fire ~80x more often per request than in
production: recording runs with a flush interval long enough that batches fill up as they do at load.
Instructions are not time (cache misses are not counted), but a difference of instructions per
request is a cost the gateway pays on every request.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, free_port, gateway_config, load, pinned, stop, wait_port

_NAMED = re.compile(r"\((\d+)\)(?: (.*))?")


def self_cost_by_object(path: Path) -> collections.Counter[str]:
    """Exclusive Ir per shared object, from a callgrind output file (name compression handled)."""
    names: dict[str, str] = {}
    current = ""
    skip_next = False
    cost: collections.Counter[str] = collections.Counter()

    def name(text: str) -> str:
        match = _NAMED.match(text)
        if not match:
            return text
        if match.group(2) is not None:
            names[match.group(1)] = match.group(2)
        return names.get(match.group(1), text)

    for line in path.read_text().splitlines():
        if line.startswith("ob="):
            current = name(line[3:])
        elif line.startswith("cob="):
            name(line[4:])
        elif line.startswith("calls="):
            skip_next = True  # the next cost line is the callee's inclusive cost, not ours
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            if skip_next:
                skip_next = False
                continue
            parts = line.split()
            if len(parts) > 1:
                cost[current.rsplit("/", 1)[-1]] += int(parts[1])
    return cost


def config(backend_url: str, port: int, workdir: Path, recorder: str | None) -> Path:
    """run.py's gateway config; with recording, a flush interval long enough for batches to fill."""
    path = gateway_config(backend_url, port, workdir, recorder)
    if recorder:
        data = json.loads(path.read_text())
        data["recorder"]["flush_interval_ms"] = 600_000
        path.write_text(json.dumps(data))
    return path


def count(system: str, backend_url: str, workdir: Path, seconds: float, concurrency: int) -> dict[str, Any]:
    port = free_port()
    extra = []
    target = None
    if system == "slicewire-recording":
        target = f"127.0.0.1:{free_port()}"
        db = workdir / f"rec-{port}.duckdb"
        extra.append(
            pinned(
                1, [sys.executable, "-m", "proxy", "recorder", "--db", str(db), "--listen", target], workdir / "r.log"
            )
        )
        wait_port(int(target.rsplit(":", 1)[1]))
    out = workdir / f"callgrind-{system}.out"
    gateway = pinned(
        0,
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "--config",
            str(config(backend_url, port, workdir, target)),
            "--no-reload",
            "--log-level",
            "warning",
        ],
        workdir / f"{system}.log",
    )
    try:
        wait_port(port, timeout=300)
        url = f"http://127.0.0.1:{port}/virtual/bench/mcp"
        load(url, concurrency, 10, "modern", "say")  # warm-up: connections, caches, the prefilter
        subprocess.run(["callgrind_control", "-z", str(gateway.pid)], check=True, capture_output=True)
        result = load(url, concurrency, seconds, "modern", "say")
        dumped = time.monotonic()
        subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
    finally:
        stop(gateway)
        for proc in extra:
            stop(proc)
    dumps = sorted(workdir.glob(f"callgrind-{system}.out.*"), key=lambda p: p.stat().st_mtime)
    dump = next(p for p in dumps if p.stat().st_mtime >= dumped - 60)
    by_object = self_cost_by_object(dump)
    requests = result["requests"]
    return {
        "requests": requests,
        "errors": result["errors"],
        "instructions_per_request": round(sum(by_object.values()) / requests),
        "by_object": {k: round(v / requests) for k, v in by_object.most_common(12)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="slicewire,slicewire-recording")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="slicewire-instr-"))
    backend_port = free_port()
    backend = pinned(
        0, [sys.executable, str(BENCH / "echo_backend.py"), "--port", str(backend_port)], workdir / "b.log"
    )
    results = {}
    try:
        wait_port(backend_port)
        for system in args.systems.split(","):
            results[system] = count(
                system, f"http://127.0.0.1:{backend_port}/mcp", workdir, args.seconds, args.concurrency
            )
            print(f"{system:22} {results[system]['instructions_per_request']:>9} instructions/request", file=sys.stderr)
    finally:
        stop(backend)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

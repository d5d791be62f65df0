"""What a sealed 2025-11-25 session id costs: issuing one (initialize), opening one this process has not
seen (AES-GCM + JSON; the first request a worker or replica gets for it), and a cached lookup (every
later request). Medians of 5 rounds.

    .venv/bin/python bench/sessions_bench.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy._sessions import KeyRing, Sessions

CAPABILITIES = {"elicitation": {}, "sampling": {}, "roots": {"listChanged": True}}
N = 20_000


def per_call(fn: object, items: list[object]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)  # type: ignore[operator]
    return (time.perf_counter() - start) / len(items) * 1e6


def main() -> None:
    issuer = Sessions(KeyRing([os.urandom(32)]), 86_400)
    issue, cold, cached = [], [], []
    for _ in range(5):
        args = [("/virtual/support", "2025-11-25", CAPABILITIES, "alice@example.com")] * N
        issue.append(per_call(lambda a: issuer.issue(*a), args))
        ids = [issuer.issue(*args[0]).id for _ in range(N)]
        elsewhere = Sessions(issuer.ring, 86_400)  # another worker: holds the key, has seen none of them
        cold.append(per_call(elsewhere.get, ids))
        recent = ids[-Sessions.CACHE_MAX // 2 :]  # within the cache's bound
        cached.append(per_call(elsewhere.get, recent))
    length = len(issuer.issue(*args[0]).id)
    print(f"session id: {length} characters (3 capabilities, a 17-character subject)")
    for name, values in (("issue", issue), ("open, first time here", cold), ("open, cached", cached)):
        print(f"{name:22} {statistics.median(values):6.2f} µs")


if __name__ == "__main__":
    main()

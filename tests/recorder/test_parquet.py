"""Hourly Parquet partitions (`slicewire recorder --parquet-dir`): the feed writes each span into its
start hour's partition, keeps its position across restarts, and several recorders share one directory
that `slicewire traces --from DIR`, `connect(DIR)` and plain DuckDB read."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import duckdb

from recorder import SpanStore, connect
from recorder._feed import ParquetFeed
from tests.support.gateway import RunningGateway
from tests.support.procs import ROOT, start_fastmcp, wait_until
from tests.support.recorder import RunningRecorder

from ..proxy.clients import sdk_session, text_of
from .test_otlp import call, recording

HOUR_NS = 3600 * 10**9
NOON = int(datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.UTC).timestamp()) * 10**9


def partitions(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*.parquet"))


def test_spans_land_in_their_hours_partition_once(tmp_path: Path) -> None:
    db = recording(tmp_path / "t.duckdb", [call(i, NOON + i * HOUR_NS // 2) for i in range(4)])  # 12:00 .. 13:30
    out = tmp_path / "spans"
    store = SpanStore(db)
    feed = ParquetFeed(store, out, batch_spans=8)
    while feed.step():
        pass
    store.close()
    files = partitions(out)
    assert {f.rsplit("/", 1)[0] for f in files} == {"date=2026-12-01/hour=12", "date=2026-12-01/hour=13"}
    with connect(str(out)) as r:
        spans = r.rows("SELECT hour, count(*) AS n FROM spans GROUP BY hour ORDER BY hour")
        assert [(s["hour"], s["n"]) for s in spans] == [(12, 10), (13, 10)]  # 5 spans per call
        assert len(r.rows("SELECT * FROM traces")) == 4  # the views work on partitions
    # A restart resumes from the stored position: nothing is written twice.
    store = SpanStore(db)
    feed = ParquetFeed(store, out)
    assert feed.step() == 0
    store.close()
    assert partitions(out) == files


def test_a_failed_write_is_retried_not_skipped(tmp_path: Path) -> None:
    db = recording(tmp_path / "t.duckdb", [call(i, NOON + i) for i in range(2)])
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    store = SpanStore(db)
    feed = ParquetFeed(store, blocked)
    assert feed.step() is None and feed.position == 0
    blocked.unlink()
    assert feed.step() == 10
    store.close()
    assert len(partitions(blocked)) == 1


def test_two_recorders_one_directory(tmp_path: Path) -> None:
    """Two gateways, each recording into its own recorder; both recorders write partitions into one
    directory; `slicewire traces --from DIR` shows both gateways' calls, DuckDB reads the layout."""
    out = tmp_path / "partitions"
    alpha, alpha_url = start_fastmcp("alpha", tmp_path)
    started: list[Any] = [alpha]
    try:
        recorders = []
        for name in ("r1", "r2"):
            rec = RunningRecorder(tmp_path / f"{name}.duckdb", tmp_path, args=("--parquet-dir", str(out),
                                                                             "--parquet-interval", "1"))  # fmt: skip
            started.append(rec)
            recorders.append(rec)
        gateways = []
        for rec in recorders:
            config = {
                "backends": [{"path": "/alpha", "transport": "streamable-http", "url": alpha_url}],
                "virtual_servers": [{"path": "/virtual/p", "server_name": "P",
                                     "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/alpha"}]}],
                "recorder": {"target": rec.target, "flush_interval_ms": 50},
            }  # fmt: skip
            gw = RunningGateway(config, tmp_path, name=f"gw-{rec.port}")
            started.append(gw)
            gateways.append(gw)

        async def calls(gw: RunningGateway, n: int) -> None:
            async with sdk_session(gw.url("/virtual/p")) as session:
                for i in range(n):
                    assert text_of(await session.call_tool("echo", {"text": f"{gw.port}-{i}"})) == f"{gw.port}-{i}"

        anyio.run(calls, gateways[0], 3)
        anyio.run(calls, gateways[1], 4)

        def all_written() -> bool:
            if not out.exists():
                return False
            with duckdb.connect() as con:
                files = str(out / "**" / "*.parquet")
                rows = con.execute(f"SELECT count(*) FROM read_parquet('{files}', hive_partitioning = true) "
                                   "WHERE name = 'tools/call echo' AND kind = 'SERVER'").fetchall()  # fmt: skip
            return bool(rows and rows[0][0] == 7)

        wait_until(all_written, 30, what="both recorders' partitions with the 7 calls")
        names = {p.name.rsplit("-", 1)[0] for p in out.rglob("*.parquet")}
        assert len(names) == 2  # one file name prefix per recorder
        listed = subprocess.run(
            [sys.executable, "-m", "proxy", "traces", "--from", str(out), "--tool", "echo", "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        traces = json.loads(listed.stdout)
        assert len(traces) == 7
        assert len({t["session_id"] for t in traces}) == 2
        with duckdb.connect() as con:
            files = str(out / "**" / "*.parquet")
            hours = con.sql(f"SELECT DISTINCT date, hour FROM read_parquet('{files}', hive_partitioning = true)")
            assert hours.fetchall()  # the partition columns are there, typed by the reader
    finally:
        for thing in reversed(started):
            thing.stop()


def test_a_bad_parquet_dir_is_one_line(tmp_path: Path) -> None:
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "recorder", "--db", str(tmp_path / "r.duckdb"), "--parquet-dir", str(not_dir),
         "--listen", "127.0.0.1:1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"slicewire: --parquet-dir {not_dir}: not a directory"

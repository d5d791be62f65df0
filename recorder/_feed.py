"""Continuous exports of what the recorder stores, as it arrives: to an OTLP backend (`OtlpFeed`), and
to hourly Parquet partitions (`ParquetFeed`).

A feed is a thread of the recorder that reads spans in the order they were stored (`spans.seq`) from
the last position its destination took, sends them in batches, and persists the new position in the
trace file (`exports` table) after each batch the destination took. A destination that is down or
slow never blocks recording: the feed retries with a growing backoff (1 s doubling to 60 s) while the
recorder keeps storing, and resumes from the persisted position — after a restart too. A batch is sent
again only if the recorder dies between the destination taking it and the position's write (Parquet
files are named by their first span's position, so such a file is written again, not twice).

    feed = OtlpFeed(store, span_exporter(url, "grpc"), name="grpc " + url)
    feed = ParquetFeed(store, "/data/spans")      # date=YYYY-MM-DD/hour=HH/<recorder>-<seq>.parquet
    feed.start()
    ...
    feed.close()      # sends what is stored (within a deadline), then stops
"""

from __future__ import annotations

import abc
import datetime
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._otlp import COLUMNS, to_otel
from ._store import SpanStore

logger = logging.getLogger(__name__)

__all__ = ["Feed", "OtlpFeed", "ParquetFeed"]

BACKOFF_MAX_S = 60.0
_HOUR_NS = 3600 * 10**9


class Feed(abc.ABC):
    """What every feed shares: the position, the batches, the backoff. A feed says which columns it
    reads (`columns`), how it sends a batch (`send`: True once the destination took it), and how it
    ends (`shutdown`)."""

    columns = "*"

    def __init__(self, store: SpanStore, name: str, batch_spans: int, interval_s: float) -> None:
        self.store = store
        self.name = name
        self.batch_spans = batch_spans
        self.interval_s = interval_s
        self.position, self.exported = self._load_position()
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"feed {name}", daemon=True)

    def _load_position(self) -> tuple[int, int]:
        cursor = self.store.cursor()
        try:
            row = cursor.execute("SELECT position, exported FROM exports WHERE name = ?", [self.name]).fetchone()
        finally:
            cursor.close()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def start(self) -> None:
        logger.info("exporting spans to %s from position %d", self.name, self.position)
        self._thread.start()

    @abc.abstractmethod
    def send(self, batch: pa.Table) -> bool:
        """Send one batch (the `seq` column and `columns`); True once the destination took it."""

    def shutdown(self) -> None:  # noqa: B027 - most destinations have nothing to close
        """After the last batch (an exporter's connections)."""

    def _pending(self) -> pa.Table:
        cursor = self.store.cursor()
        try:
            query = f"SELECT seq, {self.columns} FROM spans WHERE seq > $position ORDER BY seq LIMIT $count"
            return cursor.sql(query, params={"position": self.position, "count": self.batch_spans}).to_arrow_table()
        finally:
            cursor.close()

    def _save(self, position: int, count: int) -> None:
        cursor = self.store.cursor()
        try:
            cursor.execute(
                "INSERT OR REPLACE INTO exports (name, position, exported, updated_at) "
                "VALUES (?, ?, ?, current_timestamp)",
                [self.name, position, self.exported + count],
            )
        finally:
            cursor.close()
        self.position, self.exported = position, self.exported + count

    def step(self) -> int | None:
        """Send one batch: the number of spans the destination took (0: nothing new), or None on failure."""
        batch = self._pending()
        if batch.num_rows == 0:
            return 0
        if not self.send(batch):
            return None
        self._save(int(batch.column("seq")[-1].as_py()), batch.num_rows)
        return int(batch.num_rows)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                sent = self.step()
            except Exception:  # a bug or a broken file must not end the feed silently
                logger.exception("export to %s failed", self.name)
                sent = None
            if sent is None:
                self.failures += 1
                logger.warning("export to %s failed; retrying in %.0f s", self.name, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            else:
                backoff = 1.0
                if sent < self.batch_spans:
                    self._stop.wait(self.interval_s)

    def close(self, deadline_s: float = 10.0) -> None:
        """Stop the feed: first export what is stored, unless the receiver fails or the deadline passes."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        ends = time.monotonic() + deadline_s
        try:
            while time.monotonic() < ends and (self.step() or 0) > 0:
                pass
        except Exception:
            logger.exception("export to %s: the last batches could not be sent", self.name)
        self.shutdown()
        logger.info("export to %s stopped at position %d (%d spans exported)", self.name, self.position,
                    self.exported)  # fmt: skip


class OtlpFeed(Feed):
    """To an OTLP backend, through one of the reference exporters (see _otlp)."""

    columns = COLUMNS

    def __init__(
        self,
        store: SpanStore,
        exporter: SpanExporter,
        name: str,
        payloads: bool = False,
        batch_spans: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(store, name, batch_spans, interval_s)
        self.exporter = exporter
        self.payloads = payloads

    def send(self, batch: pa.Table) -> bool:
        return self.exporter.export(to_otel(batch.to_pylist(), self.payloads)) is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.exporter.shutdown()


def recorder_instance(db: str) -> str:
    """A name for this recorder's files, the same across its restarts, other than any other recorder's:
    the host and a digest of the trace file's absolute path."""
    digest = hashlib.sha256(os.path.abspath(db).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class ParquetFeed(Feed):
    """To Parquet files in hourly partitions, hive layout, by each span's start time (UTC):

        DIR/date=2026-12-03/hour=19/<recorder>-<first seq>.parquet

    DuckDB (`read_parquet('DIR/**/*.parquet', hive_partitioning = true)`), ClickHouse, Spark and
    `slicewire traces --from DIR` read them as they are; many recorders may write into one directory.
    A file appears whole (written aside, then renamed) once per interval and hour that had spans."""

    columns = "* EXCLUDE (seq)"  # the recorder's own order is not the files' business

    def __init__(
        self, store: SpanStore, directory: str | Path, batch_spans: int = 100_000, interval_s: float = 60.0
    ) -> None:
        self.directory = Path(directory)
        self.instance = recorder_instance(store.path)
        super().__init__(store, f"parquet {self.directory.resolve()}", batch_spans, interval_s)

    def send(self, batch: pa.Table) -> bool:
        hours = pc.divide(batch.column("start_ns"), _HOUR_NS)
        spans = batch.drop_columns(["seq"])
        try:
            for hour in pc.unique(hours).to_pylist():
                part = spans.filter(pc.equal(hours, hour))
                first = batch.filter(pc.equal(hours, hour)).column("seq")[0].as_py()
                when = datetime.datetime.fromtimestamp(hour * 3600, datetime.UTC)
                folder = self.directory / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{self.instance}-{first:012d}.parquet"
                aside = path.with_suffix(".parquet.tmp")
                pq.write_table(part, aside, compression="zstd")
                os.replace(aside, path)
        except OSError as exc:
            logger.warning("parquet partitions in %s: %s", self.directory, exc)
            return False
        return True

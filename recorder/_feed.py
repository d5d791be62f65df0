"""Continuous OTLP export: what the recorder stores, sent on to an OTLP backend as it arrives.

A thread of the recorder reads spans in the order they were stored (`spans.seq`) from the last
position the destination acknowledged, exports them in batches, and persists the new position in
the trace file (`exports` table) after each acknowledged batch. A receiver that is down or slow
never blocks recording: the feed retries with a growing backoff (1 s doubling to 60 s) while the
recorder keeps storing, and resumes from the persisted position — after a restart too. A batch is
re-sent only if the recorder dies between the receiver's acknowledgement and the position's write.

    feed = OtlpFeed(store, span_exporter(url, "grpc"), name="grpc " + url)
    feed.start()
    ...
    feed.close()      # exports what is stored (within a deadline), then stops
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._otlp import COLUMNS, to_otel
from ._store import SpanStore

logger = logging.getLogger(__name__)

__all__ = ["OtlpFeed"]

BACKOFF_MAX_S = 60.0


class OtlpFeed:
    def __init__(
        self,
        store: SpanStore,
        exporter: SpanExporter,
        name: str,
        payloads: bool = False,
        batch_spans: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.exporter = exporter
        self.name = name
        self.payloads = payloads
        self.batch_spans = batch_spans
        self.interval_s = interval_s
        self.position, self.exported = self._load_position()
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-feed", daemon=True)

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

    def _pending(self) -> list[dict[str, Any]]:
        cursor = self.store.cursor()
        try:
            relation = cursor.execute(
                f"SELECT seq, {COLUMNS} FROM spans WHERE seq > ? ORDER BY seq LIMIT ?",
                [self.position, self.batch_spans],
            )
            names = [d[0] for d in relation.description]
            return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
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
        """Export one batch: the number of spans acknowledged (0: nothing new), or None on failure."""
        rows = self._pending()
        if not rows:
            return 0
        result = self.exporter.export(to_otel(rows, self.payloads))
        if result is not SpanExportResult.SUCCESS:
            return None
        self._save(int(rows[-1]["seq"]), len(rows))
        return len(rows)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                sent = self.step()
            except Exception:  # a bug or a broken file must not end the feed silently
                logger.exception("OTLP export to %s failed", self.name)
                sent = None
            if sent is None:
                self.failures += 1
                logger.warning("OTLP export to %s failed; retrying in %.0f s", self.name, backoff)
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
            logger.exception("OTLP export to %s: the last batches could not be sent", self.name)
        self.exporter.shutdown()
        logger.info("OTLP export to %s stopped at position %d (%d spans exported)", self.name, self.position,
                    self.exported)  # fmt: skip

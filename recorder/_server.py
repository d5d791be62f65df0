"""The recorder process: a grpc.aio server in front of the span store.

`Record` collects a stream's batches, hands them to the store's writer, and answers with an Ack
only after they are committed. `Query` runs one read-only SELECT and streams the result back as
Arrow IPC, so notebooks can read a live recording without opening the file DuckDB has locked.

    await serve("traces.duckdb", "127.0.0.1:4317")
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pyarrow as pa

from proto import batch_size, pb, pb_grpc

from ._feed import OtlpFeed
from ._store import QueryRefused, SpanStore

logger = logging.getLogger(__name__)

__all__ = ["RecorderService", "serve"]

_CHUNK = 1024 * 1024


class RecorderService(pb_grpc.RecorderServicer):  # type: ignore[misc]
    def __init__(self, store: SpanStore) -> None:
        self.store = store

    async def Record(self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        received = stored = 0
        pending = []
        async for batch in request_iterator:
            received += batch_size(batch)
            # Converted to Arrow in a worker thread, overlapping with the writer's inserts.
            future = await asyncio.to_thread(self.store.write, batch)
            pending.append(asyncio.wrap_future(future))
        for result in await asyncio.gather(*pending):
            stored += result.stored
        return pb.Ack(received=received, stored=stored, duplicates=received - stored)

    async def Query(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            table = await asyncio.to_thread(self.store.query, request.sql, request.max_rows)
        except QueryRefused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue().to_pybytes()
        for offset in range(0, max(len(data), 1), _CHUNK):
            yield pb.QueryChunk(arrow_ipc=data[offset : offset + _CHUNK])


async def serve(
    db: str, listen: str, ready: asyncio.Event | None = None, feed: Callable[[SpanStore], OtlpFeed] | None = None
) -> None:
    """Run until SIGINT/SIGTERM; then stop taking streams, finish the ones in flight, flush, close.
    `feed`: makes the continuous OTLP export of what is stored (see _feed), started with the server."""
    store = SpanStore(db)
    exporting = None
    if feed is not None:
        try:
            exporting = feed(store)
        except Exception:
            store.close()
            raise
        exporting.start()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    pb_grpc.add_RecorderServicer_to_server(RecorderService(store), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        if exporting is not None:
            exporting.close(deadline_s=0)
        store.close()
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    logger.info("recorder listening on %s, storing in %s", listen, db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        logger.info("recorder stopping: finishing streams in flight")
        await server.stop(grace=10)
        if exporting is not None:
            await asyncio.to_thread(exporting.close)
        await asyncio.to_thread(store.close)
        logger.info("recorder stopped: %d spans stored, %d duplicates ignored", store.stored, store.duplicates)

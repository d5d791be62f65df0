"""The recorder process: a grpc.aio server in front of the span store.

`Record` collects a stream's batches, hands them to the store's writer, and answers with an Ack
only after they are committed. `Query` runs one read-only SELECT and streams the result back as
Arrow IPC, so notebooks can read a live recording without opening the file DuckDB has locked.

    await serve("traces.duckdb", "127.0.0.1:4317")
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pyarrow as pa

from proto import batch_size, pb, pb_grpc
from proto._access import AUTHORIZATION, TOKEN_ENV, make_local_token

from ._feed import Feed
from ._store import QueryRefused, SpanStore

logger = logging.getLogger(__name__)

__all__ = ["ListenError", "RecorderService", "serve"]

_CHUNK = 1024 * 1024


class RecorderService(pb_grpc.RecorderServicer):  # type: ignore[misc]
    """Both RPCs require `authorization: Bearer <token>` (proto/_access.py)."""

    def __init__(self, store: SpanStore, token: str) -> None:
        if not token:
            raise ValueError("a recorder needs a token")
        self.store = store
        self._expected = f"Bearer {token}".encode()

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        given = dict(context.invocation_metadata() or ()).get(AUTHORIZATION, "")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "the recorder's token is required (authorization: Bearer ...): "
                f"give it with --token-file, ${TOKEN_ENV} or recorder.token_file",
            )

    async def Record(self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        await self._authorize(context)
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
        await self._authorize(context)
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


class ListenError(Exception):
    """An address the recorder cannot listen on; the message is one line for the user."""


_WHY = {
    errno.EADDRINUSE: "the address is in use (another process listens there; choose another with --listen)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no network interface of this machine has that address",
}


def _claimable(listen: str) -> None:
    """Raise ListenError unless `listen` (host:port) is free. gRPC would say only "Failed to bind" (and log
    C-core lines), and by default it sets SO_REUSEPORT, sharing a port another recorder holds; this probe
    sets neither, so a held port is refused with its reason."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ListenError(f"--listen: expected host:port, found {listen!r}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {listen}: unknown host ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
            raise ListenError(f"cannot listen on {listen}: {why}") from None


async def serve(
    db: str,
    listen: str,
    ready: asyncio.Event | None = None,
    feeds: list[Callable[[SpanStore], Feed]] | None = None,
    on_listening: Callable[[], None] | None = None,
    token: str | None = None,
) -> None:
    """Run until SIGINT/SIGTERM; then stop taking streams, finish the ones in flight, flush, close.
    `feeds`: make the continuous exports of what is stored (OTLP, Parquet partitions; see _feed), started
    with the server.
    `token`: what both RPCs require; by default the local token of `listen` (made when missing, see
    proto/_access.py). Raises ListenError, before the store is opened, when `listen` is taken or invalid."""
    _claimable(listen)
    # Never share the port (gRPC's default is SO_REUSEPORT): two recorders on one port split the spans.
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.so_reuseport", 0)])
    try:
        server.add_insecure_port(listen)
    except RuntimeError:  # taken between the probe and now
        raise ListenError(f"cannot listen on {listen}: the address is in use") from None
    store = SpanStore(db)
    exporting: list[Feed] = []
    try:
        exporting = [make(store) for make in feeds or ()]
    except Exception:
        store.close()
        raise
    for feed in exporting:
        feed.start()
    pb_grpc.add_RecorderServicer_to_server(RecorderService(store, token or make_local_token(listen)), server)
    await server.start()
    logger.debug("recorder listening on %s, storing in %s", listen, db)
    if on_listening is not None:
        on_listening()
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
        for feed in exporting:
            await asyncio.to_thread(feed.close)
        await asyncio.to_thread(store.close)
        logger.info("recorder stopped: %d spans stored, %d duplicates ignored", store.stored, store.duplicates)

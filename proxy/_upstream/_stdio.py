"""stdio backends: a supervised child process speaking newline-delimited JSON-RPC.

The process is spawned on first use, its stderr goes to the log line by line, and when it exits
every request in flight fails with an error naming the backend and the process is restarted with
exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from .._config import BackendConfig
from .._jsonrpc import ProtocolError, parse_message
from ._base import BackendUnavailable
from ._stream import StreamBackend

logger = logging.getLogger(__name__)

__all__ = ["StdioBackend"]

# A process that stayed up this long resets the restart backoff.
_STABLE_AFTER_S = 30.0
_LINE_LIMIT = 64 * 1024 * 1024


class StdioBackend(StreamBackend):
    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()
        self._backoff = config.restart_backoff_s
        self._started_at = 0.0
        self._restart_task: asyncio.Task[None] | None = None
        self.restarts = 0

    async def _connect_transport(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        env = {**os.environ, **self.config.env}
        try:
            self._process = await asyncio.create_subprocess_exec(
                self.config.command or "",
                *self.config.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.config.cwd,
                limit=_LINE_LIMIT,
                start_new_session=True,
            )
        except OSError as exc:
            # The command line stays in the log: error messages reach clients.
            logger.error("backend %s: cannot start %r: %s", self.path, self.config.command, exc.strerror or exc)
            reason = exc.strerror or type(exc).__name__
            raise BackendUnavailable(self.path, f"cannot start its process ({reason})") from None
        self._started_at = time.monotonic()
        logger.info("backend %s: started %s (pid %s)", self.path, self.config.command, self._process.pid)
        loop = asyncio.get_running_loop()
        process = self._process
        self._tasks = [
            loop.create_task(self._read_stdout(process), name=f"stdout {self.path}"),
            loop.create_task(self._read_stderr(process), name=f"stderr {self.path}"),
        ]

    async def _write(self, data: bytes) -> None:
        process = self._process
        if process is None or process.returncode is not None or process.stdin is None:
            raise BackendUnavailable(self.path, "the process is not running")
        async with self._write_lock:
            try:
                process.stdin.write(data + b"\n")
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise BackendUnavailable(self.path, "the process closed its input") from None

    async def _read_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while True:
                try:
                    line = await process.stdout.readline()
                except ValueError:  # a line over the limit
                    logger.error("backend %s wrote a line over %d bytes; dropped", self.path, _LINE_LIMIT)
                    continue
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    msg = parse_message(line)
                except ProtocolError:
                    logger.warning("backend %s wrote a line that is not JSON-RPC: %.200r", self.path, line)
                    continue
                self._route(msg)
        finally:
            await self._exited(process)

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            try:
                line = await process.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            logger.info("backend %s stderr: %s", self.path, line.decode("utf-8", "replace").rstrip())

    async def _exited(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if process is not self._process:
            return
        self._fail_pending(BackendUnavailable(self.path, f"the process exited (code {code})"))
        if self._closed:
            return
        await self.disconnect(f"process exited with code {code}")
        if time.monotonic() - self._started_at > _STABLE_AFTER_S:
            self._backoff = self.config.restart_backoff_s
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.config.restart_backoff_max_s)
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(delay))

    async def _restart(self, delay: float) -> None:
        logger.warning("backend %s: restarting in %.1fs", self.path, delay)
        await asyncio.sleep(delay)
        if self._closed:
            return
        try:
            self.restarts += 1
            await self.connect()
        except Exception as exc:  # the next exit or request retries; the log says why
            logger.warning("backend %s: restart failed: %s", self.path, exc)

    async def aclose(self) -> None:
        if self._restart_task is not None:
            self._restart_task.cancel()
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 2.0)
            except TimeoutError:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 3.0)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        for task in self._tasks:
            task.cancel()

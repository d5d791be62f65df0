"""Backends that die, hang, crash or answer garbage: a JSON-RPC error naming the backend, in time,
and the other backends of the same virtual server unaffected."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, start_everything, start_fastmcp, wait_until

from .clients import fastmcp_client, sdk_session, text_of, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


class GarbageServer:
    """Answers every HTTP request with 200 and a body that is not JSON-RPC."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    body = b"<html>definitely not MCP</html>"
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                        + str(len(body)).encode()
                        + b"\r\nconnection: close\r\n\r\n"
                        + body
                    )
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self.thread.join(5)


@dataclass
class Failing:
    gw: RunningGateway
    doomed: Proc
    doomed_url: str
    garbage: GarbageServer


@pytest.fixture
def failing(workdir: Path, tmp_path: Path) -> Iterator[Failing]:
    """A gateway whose slice spans a healthy backend, one the test kills, garbage and a crashing stdio one."""
    healthy, healthy_url = start_fastmcp("beta", tmp_path)
    doomed, doomed_url = start_fastmcp("alpha", tmp_path)
    garbage = GarbageServer()
    config = {
        "backends": [
            {"path": "/healthy", "transport": "streamable-http", "url": healthy_url},
            {"path": "/doomed", "transport": "streamable-http", "url": doomed_url, "timeout_s": 1.5},
            {"path": "/garbage", "transport": "streamable-http", "url": f"http://127.0.0.1:{garbage.port}/mcp"},
            {
                "path": "/crashy",
                "transport": "stdio",
                "command": sys.executable,
                "args": ["-m", "tests.support.backends", "alpha", "--transport", "stdio"],
                "restart_backoff_s": 0.2,
            },
        ],
        "virtual_servers": [
            {
                "path": "/virtual/mixed",
                "server_name": "Mixed health",
                "tool_mappings": [
                    {"tool_name": "get_issue", "backend_server_path": "/healthy"},
                    {"tool_name": "sleep", "backend_server_path": "/doomed"},
                    {"tool_name": "echo", "backend_server_path": "/doomed"},
                    {"tool_name": "echo", "backend_server_path": "/garbage", "alias": "garbage-echo"},
                    {"tool_name": "crash", "backend_server_path": "/crashy"},
                    {"tool_name": "echo", "backend_server_path": "/crashy", "alias": "stdio-echo"},
                ],
            }
        ],
    }
    gw = RunningGateway(config, tmp_path, wait_ready=False)
    wait_until(lambda: all(gw.status()["backends"][p]["discovered"] for p in ("/healthy", "/doomed", "/crashy")), 60)
    try:
        yield Failing(gw, doomed, doomed_url, garbage)
    finally:
        gw.stop()
        healthy.stop()
        doomed.stop()
        garbage.close()


async def backend_ran(url: str, tool: str) -> bool:
    async with fastmcp_client(url) as direct:
        return tool in (await direct.call_tool("call_log", {})).structured_content["result"]


async def test_slow_backend_times_out_naming_it(failing: Failing) -> None:
    gw = failing.gw
    async with fastmcp_client(gw.url("/virtual/mixed")) as client:
        started = time.monotonic()
        with pytest.raises(MCPError) as info:
            await client.call_tool_mcp("sleep", {"seconds": 10})
        elapsed = time.monotonic() - started
        assert info.value.error.code == -32002
        assert "Backend /doomed" in info.value.error.message and "1.5s" in info.value.error.message
        assert elapsed < 4
        issue = await client.call_tool_mcp("get_issue", {"number": 1})  # the other backend is unaffected
        assert issue.structured_content["number"] == 1


async def test_garbage_answer_is_an_error_naming_the_backend(
    failing: Failing,
) -> None:
    gw = failing.gw
    async with sdk_session(gw.url("/virtual/mixed")) as session:
        with pytest.raises(MCPError) as info:
            await session.call_tool("garbage-echo", {"text": "x"})
        assert info.value.error.code == -32000
        assert "Backend /garbage" in info.value.error.message
        assert (await session.call_tool("get_issue", {"number": 2})).structured_content["number"] == 2
    assert gw.status()["backends"]["/garbage"]["discovered"] is False


async def test_backend_killed_mid_session(failing: Failing) -> None:
    gw, doomed = failing.gw, failing.doomed
    async with sdk_session(gw.url("/virtual/mixed")) as session:
        assert text_of(await session.call_tool("echo", {"text": "before"})) == "before"
        async with anyio.create_task_group() as tg:
            results: list[BaseException | object] = []

            async def in_flight() -> None:
                try:
                    results.append(await session.call_tool("sleep", {"seconds": 5}))
                except MCPError as exc:
                    results.append(exc)

            tg.start_soon(in_flight)
            await until(lambda: backend_ran(failing.doomed_url, "sleep"))  # the call is in flight
            doomed.kill()
        [outcome] = results
        assert isinstance(outcome, MCPError) and "Backend /doomed" in outcome.error.message
        with pytest.raises(MCPError) as info:
            await session.call_tool("echo", {"text": "after"})
        assert "Backend /doomed" in info.value.error.message
        assert (await session.call_tool("get_issue", {"number": 1})).structured_content["number"] == 1


async def test_crashed_stdio_backend_is_restarted(failing: Failing) -> None:
    gw = failing.gw
    async with fastmcp_client(gw.url("/virtual/mixed")) as client:
        assert text_of(await client.call_tool_mcp("stdio-echo", {"text": "one"})) == "one"
        with pytest.raises(MCPError) as info:
            await client.call_tool_mcp("crash", {})
        assert "Backend /crashy" in info.value.error.message and "exited" in info.value.error.message

        # Restarted with backoff: the same tool works again without any action from the client.
        async def echo_works() -> bool:
            try:
                return text_of(await client.call_tool_mcp("stdio-echo", {"text": "two"})) == "two"
            except MCPError:
                return False

        await until(echo_works, within_s=20)
    assert "restarting in" in gw.log()
    assert gw.status()["backends"]["/crashy"]["restarts"] >= 1


def test_unreachable_backend_is_not_ready(workdir: Path, tmp_path: Path) -> None:
    config = {
        "backends": [
            {"path": "/nowhere", "transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp"}
        ],
        "virtual_servers": [
            {"path": "/v", "server_name": "v", "tool_mappings": [{"tool_name": "x", "backend_server_path": "/nowhere"}]}
        ],
    }
    gw = RunningGateway(config, tmp_path, wait_ready=False)
    try:
        status = gw.status()
        assert status["ready"] is False
        assert status["backends"]["/nowhere"]["discovered"] is False
    finally:
        gw.stop()


async def test_restarted_legacy_backend_gets_a_new_session_transparently(tmp_path: Path) -> None:
    port = free_port()
    alpha, url = start_fastmcp("alpha", tmp_path, port)
    config = {
        "backends": [{"path": "/a", "transport": "streamable-http", "url": url, "protocol_version": "2025-11-25"}],
        "virtual_servers": [
            {"path": "/v", "server_name": "V", "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/a"}]}
        ],
    }
    gw = RunningGateway(config, tmp_path)
    try:
        async with sdk_session(gw.url("/v")) as session:
            assert text_of(await session.call_tool("echo", {"text": "first"})) == "first"
            alpha.stop()
            alpha, _ = start_fastmcp("alpha", tmp_path, port)  # same address, no memory of our session
            assert text_of(await session.call_tool("echo", {"text": "second"})) == "second"
        assert "no longer knows our session" in gw.log()
    finally:
        gw.stop()
        alpha.stop()


def test_a_backends_start_up_roots_request_gets_the_empty_list(tmp_path: Path) -> None:
    """server-everything asks its client for roots as soon as it connects, outside any client's call: the
    gateway answers with the empty list the spec allows, instead of an error the backend logs as a failure."""
    everything, url = start_everything(tmp_path)
    config = {"backends": [{"path": "/everything", "transport": "streamable-http", "url": url}]}
    gw = RunningGateway(config, tmp_path, name="roots")
    try:
        # server-everything logs this to its client once the roots request was answered without error.
        wait_until(lambda: "Roots updated: 0 root(s)" in gw.proc.output(), 30, what="the roots answer")
        assert "Failed to request roots" not in everything.output()
    finally:
        gw.stop()
        everything.stop()


async def test_large_answers_pass_and_too_large_ones_are_refused(backends: dict[str, str], tmp_path: Path) -> None:
    """A JSON answer past the upstream client's 1 MiB read-ahead used to stop being read until timeout_s;
    past limits.max_response_bytes it is refused with a JSON-RPC error naming the backend."""
    config = {
        "limits": {"max_response_bytes": 4 * 1024 * 1024},
        "backends": [{"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"], "timeout_s": 30}],
        "virtual_servers": [
            {
                "path": "/v",
                "server_name": "V",
                "tool_mappings": [{"tool_name": "blob", "backend_server_path": "/alpha"}],
            }
        ],
    }
    gw = RunningGateway(config, tmp_path, name="large")
    try:
        async with fastmcp_client(gw.url("/v"), timeout=60) as client:
            started = time.monotonic()
            result = await client.call_tool("blob", {"size": 1_500_000})  # ~3 MB of JSON: text and structured
            assert len(text_of(result)) == 1_500_000
            assert time.monotonic() - started < 10, "a large answer was not read at full speed"
            with pytest.raises(MCPError, match=r"Backend /alpha: answered more than 4194304 bytes"):
                await client.call_tool("blob", {"size": 3_000_000})
            assert text_of(await client.call_tool("blob", {"size": 10})) == "x" * 10  # the backend is fine
    finally:
        gw.stop()


def test_a_client_that_sends_its_headers_slowly_is_cut_off(tmp_path: Path) -> None:
    """Slowloris: a header byte now and then used to hold a connection open forever."""
    config = {"limits": {"header_timeout_s": 1.0}, "backends": [], "virtual_servers": []}
    gw = RunningGateway(config, tmp_path, name="slow", wait_ready=False)

    def closed_within(sock: socket.socket, seconds: float, trickle: bool) -> float | None:
        """Seconds until the gateway closed the connection (None: still open after `seconds`), sending a
        header byte whenever it stays silent for 0.2 s when `trickle`."""
        started = time.monotonic()
        sock.settimeout(0.2)
        while time.monotonic() - started < seconds:
            try:
                if sock.recv(1024) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                if trickle:
                    sock.sendall(b"x")
            except ConnectionResetError:
                return time.monotonic() - started
        return None

    try:
        with socket.create_connection(("127.0.0.1", gw.port)) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            took = closed_within(slow, 10, trickle=True)
            assert took is not None and took < 5, took
        with socket.create_connection(("127.0.0.1", gw.port)) as silent:  # connects, sends nothing
            took = closed_within(silent, 10, trickle=False)
            assert took is not None and took < 5, took
        with socket.create_connection(("127.0.0.1", gw.port)) as fine:  # a whole request is answered
            fine.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            fine.settimeout(5)
            assert fine.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        gw.stop()

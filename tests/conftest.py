"""Shared real processes: backends and a gateway started once per test session (per xdist worker)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, node_server, start_everything, start_fastmcp

# Per-user state (where each recorder address stored its spans, recorder/_last.py) stays inside the test run,
# for this process and every process it starts.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="slicewire-tests-state-")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slicewire")


@pytest.fixture(scope="session")
def backends(workdir: Path) -> Iterator[dict[str, str]]:
    """Real backend servers: two FastMCP servers, server-everything over streamable HTTP and SSE."""
    procs: list[Proc] = []
    try:
        alpha, alpha_url = start_fastmcp("alpha", workdir)
        procs.append(alpha)
        beta, beta_url = start_fastmcp("beta", workdir)
        procs.append(beta)
        everything, everything_url = start_everything(workdir, "streamableHttp")
        procs.append(everything)
        everything_sse, everything_sse_url = start_everything(workdir, "sse")
        procs.append(everything_sse)
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        (data / "guide.txt").write_text("Reset the router, then call support.\n")
        yield {
            "alpha": alpha_url,
            "beta": beta_url,
            "everything": everything_url,
            "everything_sse": everything_sse_url,
            "data": str(data),
        }
    finally:
        for proc in procs:
            proc.stop()


def support_config(backends: dict[str, str]) -> dict[str, Any]:
    return {
        "backends": [
            {"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"], "timeout_s": 5},
            # The same server in the legacy era: FastMCP's ctx.elicit needs a session.
            {
                "path": "/alpha-legacy",
                "transport": "streamable-http",
                "url": backends["alpha"],
                "protocol_version": "2025-11-25",
            },
            {"path": "/beta", "transport": "streamable-http", "url": backends["beta"]},
            {"path": "/everything", "transport": "streamable-http", "url": backends["everything"]},
            {"path": "/everything-sse", "transport": "sse", "url": backends["everything_sse"]},
            {
                "path": "/fs",
                "transport": "stdio",
                "command": "node",
                "args": [str(node_server("server-filesystem")), backends["data"]],
            },
        ],
        "virtual_servers": [
            {
                "path": "/virtual/support",
                "server_name": "Support agent",
                "description": "Tools a support agent may use.",
                "tool_mappings": [
                    {"tool_name": "echo", "backend_server_path": "/alpha"},
                    {
                        "tool_name": "add",
                        "backend_server_path": "/alpha",
                        "alias": "plus",
                        "description_override": "Adds two integers for the agent.",
                    },
                    {"tool_name": "structured", "backend_server_path": "/alpha"},
                    {"tool_name": "fail", "backend_server_path": "/alpha"},
                    {"tool_name": "progress", "backend_server_path": "/alpha"},
                    {"tool_name": "sleep", "backend_server_path": "/alpha"},
                    {"tool_name": "ask", "backend_server_path": "/alpha-legacy"},
                    {"tool_name": "get_issue", "backend_server_path": "/beta"},
                    {"tool_name": "echo", "backend_server_path": "/everything", "alias": "everything-echo"},
                    {
                        "tool_name": "trigger-elicitation-request",
                        "backend_server_path": "/everything",
                        "alias": "confirm",
                    },
                    {
                        "tool_name": "trigger-long-running-operation",
                        "backend_server_path": "/everything",
                        "alias": "long-op",
                    },
                    {"tool_name": "read_text_file", "backend_server_path": "/fs", "alias": "read-doc"},
                    {"tool_name": "trigger-sampling-request", "backend_server_path": "/everything", "alias": "sample"},
                    {"tool_name": "guarded", "backend_server_path": "/alpha"},
                ],
                "tags": ["support"],
            },
            {
                "path": "/virtual/sums",
                "server_name": "Sums over legacy SSE",
                "tool_mappings": [{"tool_name": "get-sum", "backend_server_path": "/everything-sse"}],
            },
            {
                "path": "/virtual/off",
                "server_name": "Disabled",
                "is_enabled": False,
                "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/alpha"}],
            },
        ],
    }


SUPPORT_SLICE = [
    "echo", "plus", "structured", "fail", "progress", "sleep", "ask", "get_issue",
    "everything-echo", "confirm", "long-op", "read-doc", "sample", "guarded",
]  # fmt: skip


@pytest.fixture(scope="session")
def gateway(backends: dict[str, str], workdir: Path) -> Iterator[RunningGateway]:
    gw = RunningGateway(support_config(backends), workdir)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable

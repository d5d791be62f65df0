"""How a backend is named on the flight recorder's upstream spans (`Backend.peer`): where the gateway
reaches it, from its configuration, before any connection (the session and version come on connect;
test_e2e_recording checks them against server-everything)."""

from __future__ import annotations

import pytest

from proxy._config import BackendConfig
from proxy._upstream import create_backend

HTTPS = {"transport": "streamable-http", "url": "https://mcp.example.com/mcp"}


@pytest.mark.parametrize(
    ("config", "peer"),
    [
        ({"transport": "streamable-http", "url": "http://127.0.0.1:8931/mcp"}, ("127.0.0.1", 8931, "tcp", "", "")),
        (HTTPS, ("mcp.example.com", 443, "tcp", "", "")),
        ({"transport": "sse", "url": "http://[::1]/sse"}, ("::1", 80, "tcp", "", "")),
        ({"transport": "stdio", "command": "npx", "args": ["-y", "server"]}, ("", 0, "pipe", "", "")),
    ],
)
def test_a_backend_is_named_by_where_it_is_reached(config: dict, peer: tuple) -> None:
    backend = create_backend(BackendConfig.model_validate({"path": "/b", **config}))
    assert backend.peer == peer

"""Backend transports: the gateway as an MCP client of each backend, in whichever era it speaks."""

from .._config import BackendConfig
from ._backend import Backend, BackendRpcError, Headers
from ._base import (
    GATEWAY_CLIENT_CAPABILITIES,
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    Exchange,
    ExchangeClosed,
    ServerIdentity,
)
from ._http import StreamableHTTPBackend
from ._stdio import StdioBackend

__all__ = [
    "GATEWAY_CLIENT_CAPABILITIES",
    "Backend",
    "BackendError",
    "BackendProtocolError",
    "BackendRpcError",
    "BackendTimeout",
    "BackendUnavailable",
    "Exchange",
    "ExchangeClosed",
    "Headers",
    "ServerIdentity",
    "StdioBackend",
    "StreamableHTTPBackend",
    "create_backend",
]


def create_backend(config: BackendConfig) -> Backend:
    """The transport for a backend's configuration."""
    if config.transport == "stdio":
        return StdioBackend(config)
    if config.transport == "sse":
        from ._sse_legacy import LegacySSEBackend

        return LegacySSEBackend(config)
    return StreamableHTTPBackend(config)

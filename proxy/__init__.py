"""Slicewire's gateway: virtual MCP servers that slice tools from many backend MCP servers."""

from ._app import SlicewireApp, create_app
from ._config import BackendConfig, Config, ConfigError, ToolMapping, VirtualServerConfig, load_config
from ._gateway import Gateway
from ._slice import Route, Slice

__all__ = [
    "BackendConfig",
    "Config",
    "ConfigError",
    "Gateway",
    "Route",
    "Slice",
    "SlicewireApp",
    "ToolMapping",
    "VirtualServerConfig",
    "create_app",
    "load_config",
]

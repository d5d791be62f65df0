"""Run the gateway under uvicorn with uvloop and httptools (the fast client-facing stack)."""

from __future__ import annotations

import uvicorn

from ._app import create_app
from ._catalog import BackendFactory
from ._config import Config

__all__ = ["run"]


def run(
    config: Config, config_file: str | None, reload: bool = True, backend_factory: BackendFactory | None = None
) -> None:
    app = create_app(config, config_file, watch=reload, backend_factory=backend_factory)
    uvicorn.run(
        app,
        host=config.listen.host,
        port=config.listen.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted unless a deployment says so
        server_header=False,
        timeout_graceful_shutdown=5,
    )

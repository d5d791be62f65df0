"""A real `slicewire serve` process on 127.0.0.1, configured by a dict written as YAML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from .procs import Proc, free_port, http_ready, wait_until


def public_by_default(config: dict[str, Any]) -> dict[str, Any]:
    """Tests of slicing, sessions and recording run without auth: their virtual servers are marked
    `public: true` unless the test says otherwise (tests/proxy/test_e2e_auth.py does)."""
    servers = [{"public": True, **vs} for vs in config.get("virtual_servers", [])]
    return {**config, "virtual_servers": servers} if servers else config


class RunningGateway:
    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "gateway", wait_ready: bool = True) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = {"listen": {"host": "127.0.0.1", "port": self.port}, **public_by_default(config)}
        self.config_path = workdir / f"{name}.yaml"
        self.write_config(self.config)
        self.proc = Proc(
            [sys.executable, "-m", "proxy", "serve", "--config", str(self.config_path), "--log-level", "debug"],
            workdir / f"{name}-{self.port}.log",
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(http_ready(f"{self.base}/healthz"), 30, what="gateway /healthz")
        if wait_ready:
            wait_until(self.ready, 60, what="gateway /readyz (every backend discovered)")

    def url(self, vs_path: str) -> str:
        return f"{self.base}{vs_path}/mcp"

    def ready(self) -> bool:
        return httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/readyz", timeout=5).json()

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(public_by_default(config), sort_keys=False))
        tmp.replace(self.config_path)  # atomic, as editors save

    def log(self) -> str:
        return self.proc.output()

    def stop(self) -> None:
        self.proc.stop()

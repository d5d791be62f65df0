"""A real `slicewire serve` process on 127.0.0.1, configured by a dict written as YAML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from proxy._state import StateDB

from .procs import Proc, free_port, http_ready, wait_until


def public_by_default(config: dict[str, Any]) -> dict[str, Any]:
    """Tests of slicing, sessions and recording run without auth: their virtual servers are marked
    `public: true` unless the test says otherwise (tests/proxy/test_e2e_auth.py does)."""
    servers = [{"public": True, **vs} for vs in config.get("virtual_servers", [])]
    return {**config, "virtual_servers": servers} if servers else config


def with_admin(config: dict[str, Any], workdir: Path, name: str) -> tuple[dict[str, Any], str]:
    """The harness reads the gateway's status as an admin: a service token of its own in the state DB."""
    auth = dict(config.get("auth") or {})
    auth.setdefault("state_db", str(workdir / f"{name}-state.db"))
    auth["admins"] = [*auth.get("admins", []), "test-harness"]
    state_db = auth["state_db"]  # a file next to the config (written in workdir), or a postgresql:// URL
    db = StateDB(state_db if "://" in state_db else workdir / state_db)
    token, _ = db.create_token("test-harness", "service", description="tests/support/gateway.py")
    db.close()
    return {**config, "auth": auth}, token


class RunningGateway:
    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        name: str = "gateway",
        wait_ready: bool = True,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        config, self.admin_token = with_admin(public_by_default(config), workdir, name)
        self.config = {"listen": {"host": "127.0.0.1", "port": self.port}, **config}
        self.config_path = workdir / f"{name}.yaml"
        self.write_config(self.config)
        self.proc = Proc(
            [sys.executable, "-m", "proxy", "serve", "--config", str(self.config_path), "--log-level", "debug", *args],
            workdir / f"{name}-{self.port}.log",
            env,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        try:
            wait_until(http_ready(f"{self.base}/healthz"), 30, what="gateway /healthz")
            if wait_ready:
                wait_until(self.ready, 60, what="gateway /readyz (every backend discovered)")
        except BaseException:
            self.proc.stop()  # a gateway that never came up is not left running
            raise

    def url(self, vs_path: str) -> str:
        return f"{self.base}{vs_path}/mcp"

    def ready(self) -> bool:
        return httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200

    def status(self) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.admin_token}"}
        response = httpx.get(f"{self.base}/api/v1/status", headers=headers, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        config = public_by_default(config)
        if "auth" not in config and hasattr(self, "config"):
            config = {**config, "auth": self.config["auth"]}  # keep the harness's admin token working
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(self.config_path)  # atomic, as editors save

    def log(self) -> str:
        return self.proc.output()

    def stop(self) -> None:
        self.proc.stop()

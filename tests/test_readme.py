"""The README's client examples, run as a user runs them against the demo's configuration: real demo
backends, a real gateway, a gateway token, and the output the README shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy._state import StateDB
from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, port_open, start_everything, wait_until

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.e2e


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def _demo_config(ports: dict[str, int], everything: str, data: Path, state: Path) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    for backend in config["backends"]:
        if backend["path"] in ("/github", "/docs"):
            backend["url"] = f"http://127.0.0.1:{ports[backend['path']]}/mcp"
        elif backend["path"] == "/everything":
            backend["url"] = everything
        else:  # /fs: server-filesystem over stdio, on the test's own folder
            backend["args"] = [str(ROOT / backend["args"][0]), str(data)]
    config["virtual_servers"] = [{**vs, "public": False} for vs in config["virtual_servers"]]
    config["virtual_servers_dir"] = str(ROOT / "examples" / "virtual-servers")
    config["auth"] = {**config["auth"], "state_db": str(state)}
    del config["listen"]
    return config


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("demo")
    procs: list[Proc] = []
    gateway = None
    try:
        ports = {"/github": free_port(), "/docs": free_port()}
        for path, port in ports.items():
            args = [sys.executable, str(ROOT / "examples" / "demo_backends.py"), path[1:], "--port", str(port)]
            procs.append(Proc(args, tmp / f"{path[1:]}.log"))
        for port in ports.values():
            wait_until(port_open(port), 30, what=f"demo backend on {port}")
        everything, everything_url = start_everything(tmp)
        procs.append(everything)
        data = tmp / "data"
        data.mkdir()
        (data / "guide.txt").write_text("Reset the router, then call support.\n")  # as scripts/demo writes it
        state = tmp / "state.db"
        gateway = RunningGateway(_demo_config(ports, everything_url, data, state), tmp, name="demo")
        db = StateDB(state)
        token, _ = db.create_token("demo", "personal", description="tests/test_readme.py")
        db.close()
        (tmp / "token").write_text(token + "\n")
        yield {"SLICEWIRE_URL": gateway.base, "SLICEWIRE_TOKEN_FILE": str(tmp / "token")}
    finally:
        if gateway is not None:
            gateway.stop()
        for proc in procs:
            proc.stop()


def _run_example(name: str, env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def test_the_fastmcp_example_prints_what_the_readme_shows(demo: dict[str, str]) -> None:
    source = (ROOT / "examples" / "client_fastmcp.py").read_text()
    shown = next(b for b in _blocks("python") if "fastmcp" in b)
    assert shown in source, "the README's fastmcp example differs from examples/client_fastmcp.py"
    console = next(b for b in _blocks("console") if "examples/client_fastmcp.py" in b)
    expected = console.strip().splitlines()[1:]
    assert _run_example("client_fastmcp.py", demo) == expected


def test_the_sdk_example_runs_and_is_refused_like_the_readme_says(demo: dict[str, str]) -> None:
    source = (ROOT / "examples" / "client_mcp_sdk.py").read_text()
    shown = next(b for b in _blocks("python") if "streamable_http_client" in b)
    for line in shown.splitlines():  # each line of the README's excerpt is in the file, as written
        assert line.split("  #", 1)[0].rstrip() in source, line
    lines = _run_example("client_mcp_sdk.py", demo)
    assert lines[0] == "Support agent"
    assert lines[1] == "['get_issue', 'search_docs', 'read-doc', 'echo']"
    assert lines[2] == "{'number': 2, 'title': 'Docs: reset procedure', 'state': 'closed', 'comments': 1}"
    assert lines[3] == "refused (-32602): Unknown tool: delete_repo"

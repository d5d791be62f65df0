"""House gates run with the suite: ruff (lint and format) and mypy, and every public name exported."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint() -> None:
    result = tool("ruff", "check", "proxy", "recorder", "replay", "tests", "examples", "bench", "notebooks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = tool("ruff", "format", "--check", "proxy", "recorder", "replay", "tests", "examples", "bench", "notebooks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("package", ["proxy", "recorder", "replay", "proto", "proxy._upstream"])
def test_exported_members(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which does not exist"
    public = {
        n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", "").startswith(package)
    }
    assert public <= set(module.__all__), (
        f"{package} exports names missing from __all__: {public - set(module.__all__)}"
    )

"""Every `slicewire` command and subcommand answers `--help` with its usage, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from proxy._cli import app

SLICEWIRE = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "slicewire"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    # typer vendors its own click: a group is whatever has subcommands.
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield from _commands(command, (*prefix, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(c) for c in COMMANDS}
    expected = {"serve", "check", "up", "recorder", "traces", "export", "replay", "mock", "cassette", "tokens create"}
    assert expected <= names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "slicewire")
def test_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exception is None, f"slicewire {' '.join(command)} --help raised {result.exception!r}"
    assert result.exit_code == 0
    assert "Usage:" in result.output


@pytest.mark.skipif(not SLICEWIRE.exists(), reason="the slicewire entry point is installed by ./scripts/setup")
def test_help_through_the_installed_entry_point() -> None:
    # The console script as a user runs it, for the commands whose help holds URLs with brackets.
    for command in (["--help"], ["up", "--help"], ["recorder", "--help"], ["export", "--help"]):
        result = subprocess.run([str(SLICEWIRE), *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "Usage:" in result.stdout

"""Where each recorder address last stored its spans, so that a reader that finds no recorder at an
address can name the file to read instead (`slicewire traces` after the demo has stopped).

Kept per user in `$XDG_STATE_HOME/slicewire/recorders.json` (default `~/.local/state/...`):
`{"127.0.0.1:7320": "/abs/path/traces.duckdb"}`. Best effort: a state file that cannot be read or
written only loses the hint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from proto._access import state_dir

__all__ = ["last_recording", "remember"]


def _state_file() -> Path:
    return Path(state_dir()) / "recorders.json"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def remember(listen: str, db: str | os.PathLike[str]) -> None:
    """Note that the recorder at `listen` stores in `db` (called once it listens)."""
    path = _state_file()
    known = _read(path)
    known[listen] = str(Path(db).resolve())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass


def last_recording(target: str) -> str | None:
    """The trace file the recorder at `target` last stored in, if it still exists."""
    file = _read(_state_file()).get(target)
    return file if file and os.path.exists(file) else None

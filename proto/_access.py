"""Who may use a recorder: the token both of its RPCs require, and where a recorder on this machine
keeps it.

A recorder takes its token from `--token-file`, else `$SLICEWIRE_RECORDER_TOKEN`, else it keeps one per
address in the user's state directory (`$XDG_STATE_HOME/slicewire/recorder-127.0.0.1-7320.token`, mode
0600, made on first start and kept across restarts). Its clients — the gateway's shipping helper, the
CLI, `recorder.connect()` — find it the same way, so on one machine and account nothing needs setting.

    metadata = bearer(token)   # (("authorization", "Bearer ..."),) on every call
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

__all__ = [
    "AUTHORIZATION",
    "TOKEN_ENV",
    "bearer",
    "given_token",
    "local_token",
    "local_token_file",
    "make_local_token",
    "read_token_file",
    "state_dir",
]

TOKEN_ENV = "SLICEWIRE_RECORDER_TOKEN"
AUTHORIZATION = "authorization"


def state_dir() -> Path:
    """The user's Slicewire state directory (`$XDG_STATE_HOME/slicewire`, default ~/.local/state/slicewire)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "slicewire"


def local_token_file(target: str) -> Path:
    return state_dir() / f"recorder-{re.sub(r'[^A-Za-z0-9.-]+', '-', target).strip('-')}.token"


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in a file (surrounding whitespace removed); ValueError with one line when unusable."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the recorder token file {path}: {exc.strerror or exc}") from None
    if not token:
        raise ValueError(f"the recorder token file {path} is empty")
    return token


def given_token(token_file: str | os.PathLike[str] | None = None) -> str | None:
    """The token given explicitly: `token_file` (ValueError when unusable), else $SLICEWIRE_RECORDER_TOKEN."""
    if token_file is not None:
        return read_token_file(token_file)
    return os.environ.get(TOKEN_ENV, "").strip() or None


def local_token(target: str) -> str | None:
    """The token of the recorder at `target`, from $SLICEWIRE_RECORDER_TOKEN or the local token file."""
    token = given_token()
    if token:
        return token
    try:
        return read_token_file(local_token_file(target))
    except ValueError:
        return None


def make_local_token(target: str) -> str:
    """The local token file's token for `target`, made (0600) when there is none yet."""
    path = local_token_file(target)
    try:
        return read_token_file(path)
    except ValueError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    tmp.replace(path)
    return token


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying the token (none without one)."""
    return ((AUTHORIZATION, f"Bearer {token}"),) if token else ()

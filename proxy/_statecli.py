"""`slicewire tokens` and `slicewire creds`: the state DB's gateway tokens and users' backend
credentials, written by the operator's commands and read by every gateway process (SQLite file or
PostgreSQL, `auth.state_db`).

    slicewire tokens create --config FILE --subject alice [--service] [--scope S]... [--expires 90d]
    slicewire creds set --config FILE --backend /github --subject alice    # the key on stdin
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli import ConfigOption, _fail, _load

__all__ = ["creds_app", "tokens_app"]

tokens_app = typer.Typer(help="Gateway tokens: personal and service-account tokens (stored as hashes).")
creds_app = typer.Typer(help="Users' own backend credentials (per_user_key, oauth2), stored encrypted.")
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _state(config: Path) -> Any:
    from ._state import StateDB, StateDBError

    cfg = _load(config, check_secrets=False)
    try:
        return cfg, StateDB(cfg.auth.state_db)
    except StateDBError as exc:  # names the database, without its password
        raise _fail(str(exc)) from None
    except (OSError, RuntimeError) as exc:
        raise _fail(f"cannot open the state DB {cfg.auth.state_db}: {exc}") from None


def _duration(value: str) -> float:
    unit = value[-1:]
    if unit not in _DURATION or not value[:-1].isdigit() or int(value[:-1]) <= 0:
        raise _fail(f"--expires: expected a duration such as 90d, 12h or 30m, found {value!r}")
    return int(value[:-1]) * _DURATION[unit]


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


@tokens_app.command("create")
def tokens_create(
    config: ConfigOption,
    subject: Annotated[str, typer.Option(help="Who the token acts as (a user, or a service account's name).")],
    service: Annotated[
        bool, typer.Option("--service", help="A service-account token (sws_) not a personal one.")
    ] = False,
    scope: Annotated[list[str] | None, typer.Option(help="A scope it grants; repeat for more.")] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="A group it belongs to (auth.groups maps it to scopes).")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 90d, 12h. Default: no expiry.")] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create a gateway token. The secret is printed once and never stored."""
    if not subject.strip():
        raise _fail("--subject must not be empty")
    expires_at = time.time() + _duration(expires) if expires else None
    _, db = _state(config)
    token, record = db.create_token(
        subject, "service" if service else "personal", scope or [], group or [], expires_at, description
    )
    db.close()
    if as_json:
        typer.echo(json.dumps({"token": token, **record.public()}))
        return
    typer.echo(token)
    typer.echo(
        f"created {record.kind} token {record.id} for {subject} (expires {_when(expires_at)}); "
        "this is the only time the secret is shown",
        err=True,
    )


@tokens_app.command("list")
def tokens_list(
    config: ConfigOption,
    subject: Annotated[str | None, typer.Option(help="Only this subject's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List gateway tokens (never their secrets)."""
    _, db = _state(config)
    records = db.list_tokens(subject)
    db.close()
    if as_json:
        typer.echo(json.dumps([r.public() for r in records], indent=2))
        return
    for r in records:
        state = "revoked" if r.revoked_at else ("expired" if not r.usable() else "active")
        typer.echo(
            f"{r.id}  {r.kind:8}  {r.subject:20}  {state:7}  expires {_when(r.expires_at):16}  "
            f"scopes {' '.join(r.scopes) or '-'}  groups {' '.join(r.groups) or '-'}  {r.description}"
        )


@tokens_app.command("revoke")
def tokens_revoke(config: ConfigOption, token_id: Annotated[str, typer.Argument(help="The id `list` shows.")]) -> None:
    """Revoke a gateway token (a running gateway refuses it within a second)."""
    _, db = _state(config)
    done = db.revoke_token(token_id)
    db.close()
    if not done:
        raise _fail(f"no active token with id {token_id!r} (see `slicewire tokens list`)")
    typer.echo(f"revoked {token_id}", err=True)


def _creds(config: Path) -> Any:
    from ._creds import Credentials
    from ._vault import Vault, VaultKeyError, load_key

    cfg, db = _state(config)
    try:
        vault = Vault(load_key(cfg.auth))
    except VaultKeyError as exc:
        raise _fail(str(exc)) from None
    return cfg, db, Credentials(cfg, db, vault)


@creds_app.command("set")
def creds_set(
    config: ConfigOption,
    backend: Annotated[str, typer.Option(help="The backend's path, e.g. /github.")],
    subject: Annotated[str, typer.Option(help="Whose key it is.")],
) -> None:
    """Store a user's own key for a per_user_key backend. The key is read from standard input (or a
    hidden prompt), never from the command line."""
    cfg, db, creds = _creds(config)
    target = cfg.backend(backend)
    if target is None or target.auth.mode != "per_user_key":
        modes = ", ".join(b.path for b in cfg.backends if b.auth.mode == "per_user_key") or "none configured"
        raise _fail(f"--backend: expected a backend with auth mode per_user_key ({modes}), found {backend!r}")
    key = typer.prompt("key", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if not key:
        raise _fail("no key given on standard input")
    creds.set_key(subject, target.path, key)
    db.close()
    typer.echo(f"stored {subject}'s key for {target.path}", err=True)


@creds_app.command("list")
def creds_list(
    config: ConfigOption,
    subject: Annotated[str | None, typer.Option(help="Only this subject's credentials.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which users have stored credentials for which backends (never the values)."""
    _, db = _state(config)
    rows = [
        {"subject": r.subject, "backend": r.backend, "kind": r.kind, "updated_at": r.updated_at}
        for r in db.list_credentials(subject)
    ]
    db.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['subject']:20}  {row['backend']:20}  {row['kind']:7}  updated {_when(row['updated_at'])}")


@creds_app.command("revoke")
def creds_revoke(
    config: ConfigOption,
    backend: Annotated[str, typer.Option(help="The backend's path, e.g. /github.")],
    subject: Annotated[str, typer.Option(help="Whose credentials to delete.")],
) -> None:
    """Delete a user's stored credentials (key or OAuth tokens) for a backend."""
    _, db = _state(config)
    count = db.delete_credentials(subject, backend)
    db.close()
    if not count:
        raise _fail(f"{subject} has no stored credentials for {backend}")
    typer.echo(f"deleted {subject}'s credentials for {backend}", err=True)


@creds_app.command("rename")
def creds_rename(
    config: ConfigOption,
    from_subject: Annotated[str, typer.Option("--from", help="The subject the credentials are stored under.")],
    to_subject: Annotated[str, typer.Option("--to", help="The subject to move them to, e.g. corp:alice.")],
) -> None:
    """Move a user's stored credentials to another subject (re-sealed), e.g. after giving their JWT issuer
    a subject_prefix (auth.jwt[].subject_prefix)."""
    from ._creds import CredentialError

    _, db, creds = _creds(config)
    try:
        moved = creds.rename(from_subject, to_subject)
    except CredentialError as exc:
        raise _fail(f"{exc.backend}: {exc}") from None
    finally:
        db.close()
    if not moved:
        raise _fail(f"{from_subject} has no stored credentials")
    typer.echo(f"moved {moved} credential(s) from {from_subject} to {to_subject}", err=True)


@creds_app.command("keygen")
def creds_keygen() -> None:
    """Print a new key for credentials at rest (for $SLICEWIRE_SECRET_KEY or auth.secret_key_file)."""
    from ._vault import new_key

    typer.echo(new_key())

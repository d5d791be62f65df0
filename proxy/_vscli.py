"""`slicewire vs`: manage a running gateway's virtual servers through its admin API, with the flags
of mcp-gateway-registry's `vs-*` commands.

    slicewire vs create --config server.json          slicewire vs list [--enabled-only] [--json]
    slicewire vs get --path /virtual/x [--json]       slicewire vs update --path /virtual/x --config server.json
    slicewire vs delete --path /virtual/x [--force]   slicewire vs toggle --path /virtual/x --enabled false
    slicewire vs rate --path /virtual/x --rating 5    slicewire vs rating --path /virtual/x [--json]

The gateway is `--url` (or $SLICEWIRE_URL, $REGISTRY_URL; default http://127.0.0.1:8080) and the
token is read from `--token-file` (or $SLICEWIRE_TOKEN_FILE, $TOKEN_FILE), never from the command
line. A refusal prints the gateway's reason (each problem on its own line) and exits 1; bad input
exits 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

__all__ = ["vs_app"]

vs_app = typer.Typer(help="Virtual servers of a running gateway: create, list, get, update, delete, toggle, rate.")

UrlOption = Annotated[
    str | None, typer.Option("--url", "--registry-url", help="The gateway (default $SLICEWIRE_URL or :8080).")
]
TokenOption = Annotated[
    Path | None, typer.Option("--token-file", help="A file holding a gateway token ($SLICEWIRE_TOKEN_FILE).")
]
PathOption = Annotated[str, typer.Option("--path", help="The virtual server's path, e.g. /virtual/dev-tools.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON answer.")]
PREFIX = "/api/v1/virtual-servers"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"slicewire: {message}", err=True)
    return typer.Exit(code)


class _Client:
    def __init__(self, url: str | None, token_file: Path | None) -> None:
        self.base = (url or os.environ.get("SLICEWIRE_URL") or os.environ.get("REGISTRY_URL")
                     or "http://127.0.0.1:8080").rstrip("/")  # fmt: skip
        if not self.base.startswith(("http://", "https://")):
            raise _fail(f"--url: expected the gateway's http(s) URL, found {self.base!r}")
        file = token_file or _env_path("SLICEWIRE_TOKEN_FILE") or _env_path("TOKEN_FILE")
        headers = {}
        if file is not None:
            try:
                headers["authorization"] = f"Bearer {file.read_text().strip()}"
            except OSError as exc:
                raise _fail(f"--token-file {file}: {exc.strerror or exc}") from None
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _fail(f"cannot reach the gateway at {self.base}: {exc}", 1) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text.strip()}
            typer.echo(f"slicewire: {response.status_code}: {body.get('error', body)}", err=True)
            for problem in body.get("problems") or []:
                typer.echo(f"  {problem}", err=True)
            raise typer.Exit(1)
        return response


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _document(file: Path) -> dict[str, Any]:
    try:
        document = json.loads(file.read_text())
    except OSError as exc:
        raise _fail(f"--config {file}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise _fail(f"--config {file}: invalid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    if not isinstance(document, dict):
        raise _fail(f"--config {file}: expected a JSON object (one virtual server)")
    return document


def _item(path: str, action: str = "") -> str:
    path = "/" + path.strip("/")
    return f"{PREFIX}{path}{'/' + action if action else ''}"


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@vs_app.command()
def create(
    config: Annotated[Path, typer.Option("--config", help="The virtual server as JSON (registry format).")],
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Create it even if a backend or tool is not in the catalog.")
    ] = False,
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """Create a virtual server from a JSON file (admins)."""
    client = _Client(url, token_file)
    params = {"allow_missing": "true"} if allow_missing else {}
    body = client.call("POST", PREFIX, json=_document(config), params=params).json()
    typer.echo(f"Virtual server created: {body['virtual_server']['path']}")
    _print(body)


@vs_app.command("list")
def list_(
    enabled_only: Annotated[bool, typer.Option("--enabled-only", help="Only enabled servers.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """The virtual servers you may use or manage."""
    body = _Client(url, token_file).call("GET", PREFIX, params={"enabled_only": str(enabled_only).lower()}).json()
    if as_json:
        _print(body)
        return
    servers = body["virtual_servers"]
    if not servers:
        typer.echo("No virtual servers.")
    for vs in servers:
        state = "enabled" if vs["is_enabled"] else "disabled"
        typer.echo(
            f"{vs['path']}  {vs['server_name']}  [{state}]  {vs['tool_count']} tools  {vs['num_stars']:.1f} stars"
        )


@vs_app.command()
def get(path: PathOption, as_json: JsonOption = False, url: UrlOption = None, token_file: TokenOption = None) -> None:
    """One virtual server, as the registry's vs-get shows it."""
    vs = _Client(url, token_file).call("GET", _item(path)).json()
    if as_json:
        _print(vs)
        return
    lines = [
        f"Virtual MCP Server: {vs['path']}", "-" * 60,
        f"  Name: {vs['server_name']}",
        f"  Status: {'enabled' if vs.get('is_enabled', True) else 'disabled'}",
        f"  Description: {vs.get('description') or ''}",
        f"  Rating: {vs['num_stars']:.1f} stars",
        f"  Tags: {', '.join(vs.get('tags') or [])}",
        f"  Transports: {', '.join(vs.get('supported_transports') or ['streamable-http'])}",
        f"  Required Scopes: {', '.join(vs.get('required_scopes') or []) or 'None'}",
        "", f"  Tool Mappings ({len(vs.get('tool_mappings') or [])}):",
    ]  # fmt: skip
    for m in vs.get("tool_mappings") or []:
        alias = f" -> {m['alias']}" if m.get("alias") else ""
        lines += [f"    - {m['tool_name']}{alias}", f"      Backend: {m['backend_server_path']}"]
    lines += ["", f"  Created: {vs.get('created_at') or '(in the config file)'}",
              f"  Updated: {vs.get('updated_at') or ''}", f"  Created By: {vs.get('created_by') or ''}"]  # fmt: skip
    typer.echo("\n".join(lines))


@vs_app.command()
def update(
    path: PathOption,
    config: Annotated[Path, typer.Option("--config", help="The whole virtual server as JSON.")],
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Accept tools not in the catalog.")] = False,
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """Replace a virtual server (admins, its managers). Refused if it changed since it was read."""
    client = _Client(url, token_file)
    etag = client.call("GET", _item(path)).headers.get("etag", "*")
    params = {"allow_missing": "true"} if allow_missing else {}
    client.call("PUT", _item(path), json=_document(config), headers={"if-match": etag}, params=params)
    typer.echo(f"Virtual server updated: {'/' + path.strip('/')}")


@vs_app.command()
def delete(
    path: PathOption,
    force: Annotated[bool, typer.Option("--force", help="Do not ask.")] = False,
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """Delete a virtual server (admins)."""
    client = _Client(url, token_file)
    etag = client.call("GET", _item(path)).headers.get("etag", "*")
    if not force:
        if not sys.stdin.isatty():
            raise _fail("delete asks first: pass --force to delete without asking")
        typer.confirm(f"Delete virtual server {path}?", abort=True)
    client.call("DELETE", _item(path), headers={"if-match": etag})
    typer.echo(f"Virtual server deleted: {'/' + path.strip('/')}")


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise typer.BadParameter(f"expected true or false, found {value!r}", param_hint="--enabled")
    return lowered == "true"


@vs_app.command()
def toggle(
    path: PathOption,
    enabled: Annotated[str, typer.Option("--enabled", help="true or false.")],
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """Enable or disable a virtual server (admins, its managers)."""
    value = _boolean(enabled)
    _Client(url, token_file).call("POST", _item(path, "toggle"), json={"enabled": value})
    typer.echo(f"Virtual server {'/' + path.strip('/')} {'enabled' if value else 'disabled'}")


@vs_app.command()
def rate(
    path: PathOption,
    rating: Annotated[int, typer.Option("--rating", min=1, max=5, help="1 to 5 stars.")],
    url: UrlOption = None,
    token_file: TokenOption = None,
) -> None:
    """Rate a virtual server you may use."""
    body = _Client(url, token_file).call("POST", _item(path, "rate"), json={"rating": rating}).json()
    typer.echo(
        f"Rated {'/' + path.strip('/')} {rating} stars (now {body['num_stars']:.1f} from {body['rating_count']})"
    )


@vs_app.command()
def rating(
    path: PathOption, as_json: JsonOption = False, url: UrlOption = None, token_file: TokenOption = None
) -> None:
    """A virtual server's rating (who rated it: its managers only)."""
    body = _Client(url, token_file).call("GET", _item(path, "rating")).json()
    if as_json:
        _print(body)
        return
    typer.echo(f"{body['path']}: {body['num_stars']:.1f} stars from {body['rating_count']} ratings")
    for entry in body.get("rating_details") or []:
        typer.echo(f"  {entry['user']}: {entry['rating']}")

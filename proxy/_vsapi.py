"""Virtual servers managed at run time: the admin API, in mcp-gateway-registry's JSON shape.

    GET    /api/v1/virtual-servers[?enabled_only=true][&tag=T]  the servers the caller may use or manage
    POST   /api/v1/virtual-servers[?allow_missing=true]          create one (admins)
    GET    /api/v1/virtual-servers/<vs>                          one server, its metadata; ETag
    PUT    /api/v1/virtual-servers/<vs>[?allow_missing=true]     replace it (admins, its managers); If-Match
    DELETE /api/v1/virtual-servers/<vs>                          (admins); If-Match
    POST   /api/v1/virtual-servers/<vs>/toggle  {"enabled": b}   (admins, its managers); If-Match
    POST   /api/v1/virtual-servers/<vs>/rate    {"rating": 1-5}  (whoever may use it)
    GET    /api/v1/virtual-servers/<vs>/rating                   average and count; who rated: managers
    GET    /api/v1/openapi.json                                   this API as OpenAPI 3.1 (public)

A server created here is one JSON file in `virtual_servers_dir` (written to a temporary file and
renamed, mode 0600), validated by the config loader before it is written (the same messages: file,
field path, expected, found), and served by a reload with no session dropped. Servers defined inline
in the config file are read-only here (409). Who created and changed a server, and its ratings, are
kept in the state DB; every change is an audit span in the flight recorder (who, what, before and
after). A managed server's ETag changes with every change; a write with `If-Match` that no longer
matches gets 412, so that two admins cannot overwrite each other. Managers may not change a
server's `roles` or `public` (that would let them widen who may use it).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._access import Policy
from ._config import Config, ConfigError, VirtualServerConfig, load_config
from ._identity import Identity
from ._openapi import openapi
from ._state import StateDB
from .recording import Record

__all__ = ["VirtualServerApi"]

PREFIX = "/api/v1/virtual-servers"
_ACTIONS = ("toggle", "rate", "rating")
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
# What a manager may not change: who may use or manage the server.
_ADMIN_ONLY_FIELDS = ("roles", "public")


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def etag_of(document: dict[str, Any]) -> str:
    digest = hashlib.blake2b(orjson.dumps(document, option=orjson.OPT_SORT_KEYS), digest_size=10).hexdigest()
    return f'"{digest}"'


def _normalized(path: str) -> str:
    return "/" + path.strip("/")


class _Managed:
    """A server as the API sees it: its document, and the file it lives in (None: inline, read-only)."""

    def __init__(self, config: VirtualServerConfig, document: dict[str, Any], file: Path | None) -> None:
        self.config = config
        self.document = document
        self.file = file

    @property
    def etag(self) -> str:
        return etag_of(self.document)


class VirtualServerApi:
    def __init__(self, gateway: Any, identify: Any, config_file: str | None) -> None:
        self.gateway = gateway
        self.identify = identify  # request -> Identity | the 401 to answer
        self.config_file = Path(config_file).resolve() if config_file else None
        self._lock = asyncio.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/openapi.json", self.openapi),
            Route(PREFIX, self.collection, methods=["GET", "POST"]),
            Route(PREFIX + "/{rest:path}", self.item, methods=["GET", "PUT", "DELETE", "POST"]),
        ]

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi())

    # --- where things are ------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        config: Config = self.gateway.config
        return config

    def _directory(self) -> Path | None:
        if self.config_file is None or not self.config.virtual_servers_dir:
            return None
        return (self.config_file.parent / self.config.virtual_servers_dir).resolve()

    def _state(self) -> StateDB:
        if self.gateway.state is None:
            self.gateway.state = StateDB(self.config.auth.state_db)
        state: StateDB = self.gateway.state
        return state

    def _files(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        """path -> (file, document) for every server file in virtual_servers_dir."""
        directory = self._directory()
        found: dict[str, tuple[Path, dict[str, Any]]] = {}
        if directory is None or not directory.is_dir():
            return found
        for file in sorted(directory.glob("*.json")):
            try:
                document = orjson.loads(file.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # the loader reports it; the gateway kept its previous config
            if isinstance(document, dict) and isinstance(document.get("path"), str):
                found[_normalized(document["path"])] = (file, document)
        return found

    def _servers(self) -> dict[str, _Managed]:
        files = self._files()
        servers = {}
        for vs in self.config.virtual_servers:
            if vs.path in files:
                file, document = files[vs.path]
                servers[vs.path] = _Managed(vs, document, file)
            else:
                servers[vs.path] = _Managed(vs, vs.model_dump(mode="json", exclude_defaults=True), None)
        return servers

    # --- who may do what ---------------------------------------------------------------------------

    def _policy(self, vs: VirtualServerConfig) -> Policy:
        return Policy.build(vs, self.config.auth.admins)

    def _is_admin(self, identity: Identity) -> bool:
        return not identity.principals().isdisjoint(frozenset(self.config.auth.admins))

    def _may_use(self, identity: Identity, vs: VirtualServerConfig) -> bool:
        policy = self._policy(vs)
        return policy.admit(identity) is None or policy.may_manage(identity)

    # --- the collection ----------------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        identity = await self.identify(request)
        if isinstance(identity, Response):
            return identity
        if request.method == "POST":
            return await self._create(request, identity)
        enabled_only = request.query_params.get("enabled_only", "false").lower() in ("1", "true", "yes")
        tag = request.query_params.get("tag")
        listed = []
        for server in self._servers().values():
            vs = server.config
            if not self._may_use(identity, vs) or (enabled_only and not vs.is_enabled) or (tag and tag not in vs.tags):
                continue
            listed.append(self._summary(server))
        return JSONResponse({"virtual_servers": listed, "total_count": len(listed)})

    def _summary(self, server: _Managed) -> dict[str, Any]:
        vs = server.config
        stars, count = self._stars(vs.path)
        return {
            "path": vs.path, "server_name": vs.server_name, "description": vs.description, "is_enabled": vs.is_enabled,
            "tool_count": len(vs.tool_mappings), "tags": vs.tags, "num_stars": stars, "rating_count": count,
            "managed": server.file is not None,
        }  # fmt: skip

    def _stars(self, path: str) -> tuple[float, int]:
        ratings = self._state().ratings(path)
        if not ratings:
            return 0.0, 0
        return round(sum(r for _, r in ratings) / len(ratings), 2), len(ratings)

    async def _create(self, request: Request, identity: Identity) -> Response:
        if not self._is_admin(identity):
            return _error(403, f"{identity.subject} is not an admin of this gateway (auth.admins)")
        document = await _json_body(request)
        if isinstance(document, Response):
            return document
        path = document.get("path")
        if not isinstance(path, str):
            return _error(422, "invalid virtual server", problems=["path: required field is missing"])
        async with self._lock:
            if _normalized(path) in self._servers():
                return _error(409, f"a virtual server {_normalized(path)} exists already (update it with PUT)")
            directory = self._directory()
            if directory is None:
                return _error(409, "servers cannot be created here: the config has no virtual_servers_dir")
            file = directory / f"{_SLUG.sub('-', path.strip('/')) or 'root'}-{_short_hash(path)}.json"
            refusal = await self._apply(request, identity, file, document, "create", None)
            if refusal is not None:
                return refusal
        vs = self._servers()[_normalized(path)]
        body = {"message": "Virtual server created successfully", "virtual_server": {
            "path": vs.config.path, "server_name": vs.config.server_name, "description": vs.config.description,
            "is_enabled": vs.config.is_enabled, "tool_count": len(vs.config.tool_mappings)}}  # fmt: skip
        return JSONResponse(body, status_code=201, headers={"etag": vs.etag, "location": f"{PREFIX}{vs.config.path}"})

    # --- one server --------------------------------------------------------------------------------

    async def item(self, request: Request) -> Response:
        identity = await self.identify(request)
        if isinstance(identity, Response):
            return identity
        rest = _normalized(request.path_params["rest"])
        servers = self._servers()
        action = None
        if rest not in servers and request.method in ("GET", "POST"):
            head, _, tail = rest.rpartition("/")
            if tail in _ACTIONS and head:
                rest, action = head, tail
        server = servers.get(rest)
        if server is None or not self._may_use(identity, server.config):
            # A server this caller may not use is indistinguishable from one that does not exist.
            return _error(404, f"no virtual server {rest} that {identity.subject} may use")
        method = request.method
        if action is None and method == "GET":
            return self._show(server)
        if action == "rating" and method == "GET":
            return self._rating(server, identity)
        if action == "rate" and method == "POST":
            return await self._rate(request, server, identity)
        if (action is None and method == "PUT") or (action == "toggle" and method == "POST"):
            return await self._change(request, server, identity, action or "update")
        if action is None and method == "DELETE":
            return await self._delete(request, server, identity)
        return _error(405, f"{method} is not allowed on {request.url.path}")

    def _show(self, server: _Managed) -> Response:
        meta = self._state().server_meta(server.config.path)
        stars, count = self._stars(server.config.path)
        body = {
            **server.document,
            "created_at": _iso(meta.created_at) if meta else None,
            "updated_at": _iso(meta.updated_at) if meta else None,
            "created_by": meta.created_by if meta else None,
            "num_stars": stars, "rating_count": count, "tool_count": len(server.config.tool_mappings),
            "managed": server.file is not None,
        }  # fmt: skip
        return JSONResponse(body, headers={"etag": server.etag})

    def _rating(self, server: _Managed, identity: Identity) -> Response:
        ratings = self._state().ratings(server.config.path)
        stars, count = self._stars(server.config.path)
        body: dict[str, Any] = {"path": server.config.path, "num_stars": stars, "rating_count": count}
        if self._policy(server.config).may_manage(identity):
            body["rating_details"] = [{"user": subject, "rating": rating} for subject, rating in ratings]
        return JSONResponse(body)

    async def _rate(self, request: Request, server: _Managed, identity: Identity) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        rating = body.get("rating")
        if type(rating) is not int or not 1 <= rating <= 5:
            return _error(422, f"rating: expected an integer from 1 to 5, found {rating!r}")
        self._state().rate(server.config.path, identity.subject, rating)
        stars, count = self._stars(server.config.path)
        return JSONResponse({"message": "Rating recorded", "num_stars": stars, "rating_count": count})

    async def _change(self, request: Request, server: _Managed, identity: Identity, what: str) -> Response:
        policy = self._policy(server.config)
        if not policy.may_manage(identity):
            who = "its roles.managers and auth.admins"
            return _error(403, f"{identity.subject} may not change {server.config.path} ({who} may)")
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        if what == "toggle":
            enabled = body.get("enabled")
            if type(enabled) is not bool:
                return _error(422, f"enabled: expected true or false, found {enabled!r}")

            def toggled(current: _Managed) -> dict[str, Any]:
                return {**current.document, "is_enabled": enabled}

            change = toggled
        else:
            document = body
            path = document.setdefault("path", server.config.path)
            if not isinstance(path, str) or _normalized(path) != server.config.path:
                moved = f"path: the document's path {path!r} is not {server.config.path} (a server's path stays)"
                return _error(422, moved)
            if not self._is_admin(identity):
                for name in _ADMIN_ONLY_FIELDS:
                    if document.get(name) != server.document.get(name):
                        return _error(403, f"{name}: only admins change who may use or manage a server")

            def replaced(current: _Managed) -> dict[str, Any]:
                return document  # the whole document replaces it

            change = replaced
        refusal = await self._locked(request, identity, server.config.path, what, change)
        return refusal or self._show(self._servers()[server.config.path])

    async def _delete(self, request: Request, server: _Managed, identity: Identity) -> Response:
        if not self._is_admin(identity):
            return _error(403, f"{identity.subject} is not an admin of this gateway (auth.admins)")
        refusal = await self._locked(request, identity, server.config.path, "delete", lambda current: None)
        return refusal or JSONResponse({"message": f"Virtual server {server.config.path} deleted"})

    async def _locked(
        self,
        request: Request,
        identity: Identity,
        path: str,
        what: str,
        change: Callable[[_Managed], dict[str, Any] | None],
    ) -> Response | None:
        """One change at a time: the server as it is now, its If-Match, whether the API may write it,
        then `change(current)` (the new document; None deletes it) applied. A response when refused."""
        async with self._lock:
            current = self._servers().get(path)
            if current is None:
                return _error(404, f"no virtual server {path}")
            refusal = _precondition(request, current)
            if refusal is not None:
                return refusal
            if current.file is None:
                return _read_only(current)
            return await self._apply(request, identity, current.file, change(current), what, current.document)

    # --- the change itself -------------------------------------------------------------------------

    async def _apply(
        self,
        request: Request,
        identity: Identity,
        file: Path,
        document: dict[str, Any] | None,
        what: str,
        before: dict[str, Any] | None,
    ) -> Response | None:
        """Validate the config with `file` holding `document` (None: deleted), write it, serve it, keep
        the metadata, record the audit span. A response when it was refused."""
        assert self.config_file is not None
        imported = _module_hooks(document)
        if imported:  # checked before the loader would import them
            rule = "through the API a hook is an installed entry point of group slicewire.guardrails"
            problems = [f"body: {where}: hook {spec!r}: {rule} (module:function is for config files)"
                        for where, spec in imported]  # fmt: skip
            return _error(422, "invalid virtual server", problems=problems)
        try:
            config = load_config(self.config_file, overrides={file: document})
        except ConfigError as exc:
            return _error(422, "invalid virtual server", problems=[p.replace(str(file), "body") for p in exc.problems])
        if document is not None and request.query_params.get("allow_missing", "false").lower() not in ("1", "true"):
            missing = self._missing(VirtualServerConfig.model_validate(document))
            if missing:
                return _error(422, "invalid virtual server", problems=missing)
        try:
            _write(file, document)
        except OSError as exc:
            return _error(500, f"cannot write {file.name}: {exc.strerror or exc}")
        await self.gateway.reload(config.model_copy(update={"listen": self.config.listen}))
        self.gateway.bus.publish({"t": "reload"})  # the other workers and replicas load the files again
        path = _normalized(str((document or before or {}).get("path", "")))
        state = self._state()
        if document is None:
            state.server_deleted(path)
        else:
            state.server_changed(path, identity.subject)
        self._audit(request, identity, what, path, before, document)
        return None

    def _missing(self, vs: VirtualServerConfig) -> list[str]:
        """Mappings that name a tool the live catalog does not have (or a backend not yet discovered)."""
        problems = []
        catalog = self.gateway.catalog.tools
        for i, mapping in enumerate(vs.tool_mappings):
            listed = catalog.get(mapping.backend_server_path)
            where = f"body: tool_mappings[{i}]"
            if listed is None:
                problems.append(f"{where}.backend_server_path: backend {mapping.backend_server_path} has not answered "
                                "discovery (pass allow_missing=true to create it anyway)")  # fmt: skip
            elif not any(t.get("name") == mapping.tool_name for t in listed):
                problems.append(f"{where}.tool_name: backend {mapping.backend_server_path} has no tool named "
                                f"{mapping.tool_name!r} (pass allow_missing=true to create it anyway)")  # fmt: skip
        return problems

    def _audit(
        self, request: Request, identity: Identity, what: str, path: str, before: Any, after: Any
    ) -> None:  # fmt: skip
        emitter = self.gateway.emitter
        if emitter is None:
            return
        record = Record.begin(list(request.scope["headers"]), None, request.scope.get("client"))
        record.received(f"admin/virtual-servers/{what}", None, {"path": path, "before": before, "after": after})
        record.parsed("", "", "")
        record.identified(identity.subject)
        record.answered(orjson.dumps({"result": {"path": path, "done": what}}), path)
        emitter.emit(record)


def _module_hooks(document: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(where, spec) of each guardrail hook named `module:function`: code the API must not import."""
    found: list[tuple[str, str]] = []
    if not isinstance(document, dict):
        return found
    places = [("guardrails", document.get("guardrails"))]
    mappings = document.get("tool_mappings")
    for i, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if isinstance(mapping, dict):
            places.append((f"tool_mappings[{i}].guardrails", mapping.get("guardrails")))
    for where, guardrails in places:
        rules = guardrails.get("input_rules") if isinstance(guardrails, dict) else None
        for j, rule in enumerate(rules if isinstance(rules, list) else []):
            spec = rule.get("hook") if isinstance(rule, dict) else None
            if isinstance(spec, str) and ":" in spec:
                found.append((f"{where}.input_rules[{j}].hook", spec))
    return found


def _precondition(request: Request, server: _Managed) -> Response | None:
    wanted = request.headers.get("if-match")
    if wanted is None or wanted.strip() == "*":
        return None
    if server.etag not in (tag.strip() for tag in wanted.split(",")):
        return _error(412, f"{server.config.path} changed since it was read (ETag {server.etag}): read it again")
    return None


def _read_only(server: _Managed) -> Response:
    return _error(409, f"{server.config.path} is defined in the config file: change it there (the API manages only "
                       "servers in virtual_servers_dir)")  # fmt: skip


async def _json_body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _error(422, f"expected a JSON object, found {type(body).__name__}")
    return body


def _short_hash(path: str) -> str:
    return hashlib.blake2b(_normalized(path).encode(), digest_size=4).hexdigest()


def _write(file: Path, document: dict[str, Any] | None) -> None:
    """Write-and-rename (a reader never sees half a file), owner-only; None deletes the file."""
    if document is None:
        file.unlink(missing_ok=True)
        return
    partial = file.with_name(f".{file.name}.{os.getpid()}.{time.monotonic_ns()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, file)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

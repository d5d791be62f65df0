"""The gateway's own HTTP endpoints beside MCP: discovery metadata, the OAuth callback, a user's own
credentials, and status for the people who run it.

    GET    /.well-known/oauth-protected-resource/<vs>/mcp   RFC 9728 metadata (public)
    GET    /oauth/callback                                   completes a backend's OAuth flow (public)
    GET    /api/v1/credentials                               the caller's stored credentials (no values)
    PUT    /api/v1/credentials/<backend>                     store the caller's key: {"key": "..."}
    DELETE /api/v1/credentials/<backend>                     delete the caller's key or OAuth tokens
    GET    /api/v1/status                                    everything /readyz no longer says: admins
    GET    /api/v1/virtual-servers/<vs>/status               one virtual server: its managers, admins
    GET    /metrics                                          Prometheus metrics: admins (or anyone: metrics.public)

The `/api` endpoints take the same bearer tokens as the MCP endpoints (a JWT's audience must then be
`auth.public_url`). Roles: `roles.managers` of a virtual server and `auth.admins` (subjects or
`group:NAME`) are enforced on the status endpoints; anyone identified manages their own credentials.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ._config import OAuth2Auth
from ._creds import CredentialError
from ._identity import AuthError, Identity, bearer_token
from ._metrics import CONTENT_TYPE

logger = logging.getLogger(__name__)

__all__ = ["AdminApi"]

_MAX_KEY_BYTES = 16 * 1024


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class AdminApi:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/oauth-protected-resource/{path:path}", self.resource_metadata),
            Route("/oauth/callback", self.oauth_callback),
            Route("/api/v1/credentials", self.list_credentials),
            Route("/api/v1/credentials/{backend:path}", self.credential, methods=["PUT", "DELETE"]),
            Route("/api/v1/status", self.status),
            Route("/api/v1/virtual-servers/{path:path}/status", self.server_status),
            Route("/metrics", self.metrics),
        ]

    def _base(self, request: Request) -> str:
        public = self.gateway.config.auth.public_url
        return public if public is not None else f"{request.url.scheme}://{request.headers.get('host', 'localhost')}"

    async def identify(self, request: Request) -> Identity | JSONResponse:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return _error(401, "a gateway token is required", {"www-authenticate": "Bearer"})
        auth = self.gateway.auth
        public = self.gateway.config.auth.public_url
        try:
            identity: Identity = auth.cached(token) or await auth.authenticate(
                token, frozenset({public}) if public else frozenset()
            )
        except AuthError as exc:
            return _error(401, f"Unauthorized: {exc}", {"www-authenticate": 'Bearer error="invalid_token"'})
        return identity

    # --- discovery -------------------------------------------------------------------------------

    async def resource_metadata(self, request: Request) -> Response:
        path = "/" + request.path_params["path"].strip("/")
        vs_path = path.removesuffix("/mcp")
        server = self.gateway.servers.get(vs_path)
        if server is None or not path.endswith("/mcp"):
            return _error(404, f"no virtual server is served at {path}")
        config = self.gateway.config.auth
        scopes = set(server.policy.required)
        for needed in server.policy.tool_scopes.values():
            scopes.update(needed)
        return JSONResponse(
            {
                "resource": f"{self._base(request)}{vs_path}/mcp",
                "authorization_servers": config.authorization_servers or [i.issuer for i in config.jwt],
                "bearer_methods_supported": ["header"],
                "scopes_supported": sorted(scopes),
                "resource_name": server.config.server_name,
            }
        )

    async def oauth_callback(self, request: Request) -> Response:
        query = request.query_params
        state, code, error = query.get("state"), query.get("code"), query.get("error")
        if error:
            return _page(400, "Authorization was not granted", f"The authorization server said: {error}.")
        if not state or not code:
            return _page(400, "Incomplete callback", "This address expects the code and state of an OAuth flow.")
        try:
            subject, backend = await self.gateway.creds.complete(state, code)
        except CredentialError as exc:
            return _page(400, "Could not connect", str(exc))
        logger.info("%s connected backend %s (OAuth tokens stored)", subject, backend)
        return _page(200, "Connected", f"Backend {backend} is connected for {subject}. You can close this window.")

    # --- the caller's own credentials ----------------------------------------------------------

    async def list_credentials(self, request: Request) -> Response:
        identity = await self.identify(request)
        if isinstance(identity, Response):
            return identity
        state = self.gateway.state
        records = state.list_credentials(identity.subject) if state is not None else []
        return JSONResponse(
            {"credentials": [{"backend": r.backend, "kind": r.kind, "updated_at": r.updated_at} for r in records]}
        )

    async def credential(self, request: Request) -> Response:
        identity = await self.identify(request)
        if isinstance(identity, Response):
            return identity
        path = "/" + request.path_params["backend"].strip("/")
        backend = self.gateway.config.backend(path)
        if backend is None or backend.auth.mode not in ("per_user_key", "oauth2"):
            return _error(404, f"{path} is not a backend that takes per-user credentials")
        creds = self.gateway.creds
        if request.method == "DELETE":
            count = creds.revoke(identity.subject, path) if self.gateway.state is not None else 0
            return JSONResponse({"deleted": count}, status_code=200 if count else 404)
        if isinstance(backend.auth, OAuth2Auth):
            return _error(400, f"{path} uses OAuth: connect it by following the link the gateway gives the agent")
        body = await request.body()
        if len(body) > _MAX_KEY_BYTES:
            return _error(413, "the key is too large")
        try:
            data = await request.json()
        except ValueError:
            return _error(400, 'expected a JSON body {"key": "..."}')
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.strip():
            return _error(400, 'expected a JSON body {"key": "..."} with a non-empty key')
        try:
            creds.set_key(identity.subject, path, key.strip())
        except CredentialError as exc:
            return _error(503, str(exc))
        return JSONResponse({"stored": path}, status_code=200)

    # --- status (roles) ---------------------------------------------------------------------------

    async def _admin(self, request: Request) -> Response | None:
        """None when the caller is one of `auth.admins`, else the 401/403 to answer."""
        identity = await self.identify(request)
        if isinstance(identity, Response):
            return identity
        if identity.principals().isdisjoint(frozenset(self.gateway.config.auth.admins)):
            return _error(403, f"{identity.subject} is not an admin of this gateway (auth.admins)")
        return None

    async def status(self, request: Request) -> Response:
        return await self._admin(request) or JSONResponse(self.gateway.status())

    async def server_status(self, request: Request) -> Response:
        identity = await self.identify(request)
        if isinstance(identity, Response):
            return identity
        vs_path = "/" + request.path_params["path"].strip("/")
        server = self.gateway.servers.get(vs_path)
        if server is None or not server.policy.may_manage(identity):
            # A server this caller does not manage is indistinguishable from one that does not exist.
            return _error(404, f"no virtual server {vs_path} that {identity.subject} manages")
        status = self.gateway.status()
        paths = {b.path for b in server.backends}
        return JSONResponse(
            {
                "path": vs_path,
                "tools": [t["name"] for t in server.slice.tools],
                "problems": list(server.slice.problems),
                "backends": {p: b for p, b in status["backends"].items() if p in paths},
            }
        )

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format. Admins only, unless `metrics.public`."""
        metrics = self.gateway.metrics
        if metrics is None:
            return _error(404, "metrics are off (metrics.enabled: false)")
        refusal = None if self.gateway.config.metrics.public else await self._admin(request)
        return refusal or Response(metrics.render(), media_type=CONTENT_TYPE)


def _page(status: int, title: str, message: str) -> HTMLResponse:
    body = (
        f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=status)

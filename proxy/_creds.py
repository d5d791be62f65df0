"""Outbound credentials: whose credential reaches each backend (`auth:` on the backend).

- `none`: nothing added.
- `static`: shared headers (values from `${env:NAME}` / `${file:PATH}`), on every request including
  discovery.
- `per_user_key`: the caller's own key, stored sealed (`slicewire creds set`, or
  `PUT /api/v1/credentials/<backend>`), injected through the header template.
- `oauth2` + `authorization_code`: the caller's own tokens, obtained with PKCE (S256) through the
  gateway's `/oauth/callback`, stored sealed, refreshed before expiry. Without them, the handshake
  and calls answer with a JSON-RPC error whose data ends `Please visit: <url>`.
- `oauth2` + `client_credentials`: one token for the backend, cached and refreshed (shared headers).
- `passthrough`: the caller's own `Authorization` header, unchanged (opt-in; see docs/auth.md).

Every value injected is handed to `on_secret` (the recorder's redactor), so it is scrubbed from spans
wherever a backend might echo it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from ._config import (
    BackendConfig,
    Config,
    OAuth2Auth,
    PerUserKeyAuth,
    StaticAuth,
    resolve_secret,
    secret_refs,
)
from ._identity import Identity
from ._state import ChangeWatch, StateDB
from ._upstream._backend import Headers
from ._vault import Vault

logger = logging.getLogger(__name__)

__all__ = ["ConsentRequired", "CredentialError", "Credentials", "parse_header_override"]

_FLOW_TTL_S = 600.0
_FLOWS_MAX = 10_000
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_OVERRIDES = {"host", "content-length", "transfer-encoding", "connection", "mcp-session-id"}


class CredentialError(Exception):
    """This caller has no usable credential for a backend; the message says how to get one."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend


class ConsentRequired(Exception):
    """The caller must authorize the gateway at these URLs (one per OAuth backend) first."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__("Authorization required")
        self.urls = urls

    @property
    def data(self) -> str:
        return "Please visit: " + " , ".join(self.urls)


@dataclass(slots=True)
class _Flow:
    subject: str
    backend: str
    verifier: str
    redirect_uri: str
    expires: float


@dataclass(slots=True)
class _Token:
    access_token: str
    refresh_token: str | None
    expires_at: float | None

    def fresh(self, margin: float) -> bool:
        return self.expires_at is None or self.expires_at - margin > time.time()

    def dump(self) -> bytes:
        return orjson.dumps(
            {"access_token": self.access_token, "refresh_token": self.refresh_token, "expires_at": self.expires_at}
        )

    @classmethod
    def load(cls, data: bytes) -> _Token:
        d = orjson.loads(data)
        return cls(d["access_token"], d.get("refresh_token"), d.get("expires_at"))


def parse_header_override(value: str, backends: list[BackendConfig]) -> dict[str, Headers]:
    """`x-mcp-headers`: flat {"Header": "value"} for a virtual server with one backend, or nested by
    backend path ("/github" or "github"). Raises ValueError naming the problem."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("x-mcp-headers: not valid JSON") from None
    if not isinstance(data, dict) or not data:
        raise ValueError("x-mcp-headers: expected a JSON object of headers")
    by_path = {b.path: b for b in backends}
    nested = all(isinstance(v, dict) for v in data.values())
    if not nested:
        if len(by_path) != 1:
            raise ValueError(
                "x-mcp-headers: this virtual server has several backends; nest the headers by backend path, "
                'e.g. {"/github": {"Authorization": "Bearer ..."}}'
            )
        data = {next(iter(by_path)): data}
    result: dict[str, Headers] = {}
    for key, headers in data.items():
        path = key if key.startswith("/") else f"/{key}"
        backend = by_path.get(path)
        if backend is None:
            raise ValueError(f"x-mcp-headers: {key!r} is not a backend of this virtual server")
        if not backend.allow_header_override:
            raise ValueError(f"x-mcp-headers: backend {path} does not allow header overrides")
        if not isinstance(headers, dict):
            raise ValueError(f"x-mcp-headers: the headers for {key!r} must be an object of strings")
        pairs: Headers = []
        for name, item in headers.items():
            if not isinstance(item, str) or not _HEADER_NAME.match(name) or name.lower() in _FORBIDDEN_OVERRIDES:
                raise ValueError(f"x-mcp-headers: {name!r} cannot be overridden with {type(item).__name__}")
            if any(c in item for c in "\r\n\0"):
                raise ValueError(f"x-mcp-headers: the value of {name!r} contains a line break")
            pairs.append((name, item))
        result[path] = pairs
    return result


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _requested(auth: OAuth2Auth) -> dict[str, str]:
    """What a token request asks for, in the authorization URL and the token request alike: scope,
    resource (RFC 8707) and audience, each when configured."""
    asked = {}
    if auth.scopes:
        asked["scope"] = " ".join(auth.scopes)
    if auth.resource:
        asked["resource"] = auth.resource
    if auth.audience:
        asked["audience"] = auth.audience
    return asked


class Credentials:
    def __init__(
        self,
        config: Config,
        state: StateDB | None,
        vault: Vault | None,
        on_secret: Callable[[str], None] = lambda value: None,
    ) -> None:
        self.config = config
        self.state = state
        self.vault = vault
        self.on_secret = on_secret
        self._flows: dict[str, _Flow] = {}
        self._user_cache: dict[tuple[str, str], tuple[Headers, float | None]] = {}
        self._shared_tokens: dict[str, _Token] = {}
        self._locks: dict[Any, asyncio.Lock] = {}
        self._watch = ChangeWatch(state)
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def startup_warnings(self) -> list[str]:
        warnings = []
        for backend in self.config.backends:
            auth = backend.auth
            if auth.mode == "passthrough":
                warnings.append(
                    f"backend {backend.path} uses auth mode 'passthrough': callers' own tokens are forwarded "
                    f"unchanged, which the MCP specification forbids (the backend must not accept tokens not "
                    f"issued for it); use it only for a backend that validates them against your IdP"
                )
            if isinstance(auth, StaticAuth):
                for name, value in auth.headers.items():
                    if not secret_refs(value) and name.lower() in ("authorization", "x-api-key", "cookie"):
                        warnings.append(
                            f"backend {backend.path}: auth.headers.{name} is a literal value in the YAML; "
                            f"use ${{env:NAME}} or ${{file:PATH}} for secrets"
                        )
        return warnings

    # --- shared credentials (static, client credentials) -------------------------------------------

    def shared(self, backend: BackendConfig) -> Callable[[], Awaitable[Headers]] | None:
        """The headers every request to this backend carries, or None."""
        auth = backend.auth
        if isinstance(auth, StaticAuth):
            headers = [(name, resolve_secret(value)) for name, value in auth.headers.items()]
            for (_, value), raw in zip(headers, auth.headers.values(), strict=True):
                if secret_refs(raw):
                    self._secret(value)

            async def static() -> Headers:
                return headers

            return static
        if isinstance(auth, OAuth2Auth) and auth.grant == "client_credentials":

            async def client_credentials() -> Headers:
                return [("Authorization", f"Bearer {await self._client_token(backend.path, auth)}")]

            return client_credentials
        return None

    async def _client_token(self, path: str, auth: OAuth2Auth) -> str:
        token = self._shared_tokens.get(path)
        if token is not None and token.fresh(auth.refresh_margin_s):
            return token.access_token
        async with self._lock(("cc", path)):
            token = self._shared_tokens.get(path)
            if token is None or not token.fresh(auth.refresh_margin_s):
                form = {"grant_type": "client_credentials"}
                token = await self._token_request(path, auth, form)
                self._shared_tokens[path] = token
        return token.access_token

    # --- per-user credentials ----------------------------------------------------------------------

    async def for_call(self, backend: BackendConfig, identity: Identity | None, base_url: str) -> Headers | None:
        """This caller's own headers for `backend` (None: only the shared ones). Raises CredentialError
        or ConsentRequired when the caller has yet to provide a credential."""
        auth = backend.auth
        mode = auth.mode
        if mode in ("none", "static") or (isinstance(auth, OAuth2Auth) and auth.grant == "client_credentials"):
            return None
        if identity is None:
            raise CredentialError(backend.path, f"Backend {backend.path} needs the caller's identity")
        if mode == "passthrough":
            self._secret(identity.token)
            return [("Authorization", f"Bearer {identity.token}")]
        self._poll()
        key = (identity.subject, backend.path)
        cached = self._user_cache.get(key)
        if cached is not None and (cached[1] is None or cached[1] > time.time()):
            return cached[0]
        if isinstance(auth, PerUserKeyAuth):
            headers = [(auth.header, auth.template.replace("{{API_KEY}}", self._user_key(backend, identity)))]
            self._user_cache[key] = (headers, None)
            return headers
        assert isinstance(auth, OAuth2Auth)
        token = await self._user_token(backend, auth, identity, base_url)
        headers = [("Authorization", f"Bearer {token.access_token}")]
        until = token.expires_at - auth.refresh_margin_s if token.expires_at is not None else None
        self._user_cache[key] = (headers, until)
        return headers

    def _user_key(self, backend: BackendConfig, identity: Identity) -> str:
        stored = self._open(identity.subject, backend.path, "key")
        if stored is None:
            auth = backend.auth
            how = (
                f"Store it with `slicewire creds set --backend {backend.path} --subject {identity.subject}` "
                f"or PUT /api/v1/credentials{backend.path} with your gateway token."
            )
            extra = f" {auth.instructions}" if isinstance(auth, PerUserKeyAuth) and auth.instructions else ""
            raise CredentialError(
                backend.path, f"Backend {backend.path} needs your own API key, and none is stored for you. {how}{extra}"
            )
        key = stored.decode()
        self._secret(key)
        return key

    async def _user_token(self, backend: BackendConfig, auth: OAuth2Auth, identity: Identity, base_url: str) -> _Token:
        stored = self._open(identity.subject, backend.path, "oauth2")
        token = _Token.load(stored) if stored is not None else None
        if token is not None and token.fresh(auth.refresh_margin_s):
            self._secret(token.access_token)
            return token
        if token is not None and token.refresh_token:
            async with self._lock(("user", identity.subject, backend.path)):
                again = self._open(identity.subject, backend.path, "oauth2")
                current = _Token.load(again) if again is not None else None
                if current is not None and current.fresh(auth.refresh_margin_s):
                    return current
                try:
                    form = {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
                    fresh = await self._token_request(backend.path, auth, form)
                except CredentialError as exc:
                    logger.info("refreshing %s's token for %s failed: %s", identity.subject, backend.path, exc)
                else:
                    if fresh.refresh_token is None:
                        fresh.refresh_token = token.refresh_token  # the server kept the old one valid
                    self._store_token(identity.subject, backend.path, fresh)
                    return fresh
        raise ConsentRequired([self.authorization_url(backend, identity, base_url)])

    def consents_needed(self, backends: list[BackendConfig], identity: Identity | None, base_url: str) -> list[str]:
        """Authorization URLs for the caller's OAuth backends with no stored (refreshable) token."""
        if identity is None or self.state is None:
            return []
        urls = []
        for backend in backends:
            auth = backend.auth
            if isinstance(auth, OAuth2Auth) and auth.grant == "authorization_code":
                if self.state.get_credential(identity.subject, backend.path, "oauth2") is None:
                    urls.append(self.authorization_url(backend, identity, base_url))
        return urls

    def authorization_url(self, backend: BackendConfig, identity: Identity, base_url: str) -> str:
        auth = backend.auth
        assert isinstance(auth, OAuth2Auth) and auth.authorization_url is not None
        now = time.monotonic()
        if len(self._flows) >= _FLOWS_MAX:
            self._flows = {k: f for k, f in self._flows.items() if f.expires > now}
        state = secrets.token_urlsafe(32)
        verifier, challenge = _pkce()
        redirect_uri = f"{base_url}/oauth/callback"
        self._flows[state] = _Flow(identity.subject, backend.path, verifier, redirect_uri, now + _FLOW_TTL_S)
        query = {
            "response_type": "code",
            "client_id": auth.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        query.update(_requested(auth))
        separator = "&" if "?" in auth.authorization_url else "?"
        return f"{auth.authorization_url}{separator}{urlencode(query)}"

    async def complete(self, state: str, code: str) -> tuple[str, str]:
        """The callback: exchange the code (with the PKCE verifier) and store the tokens.
        Returns (subject, backend path). Raises CredentialError with a message for the browser."""
        flow = self._flows.pop(state, None)
        if flow is None or flow.expires < time.monotonic():
            raise CredentialError("", "This authorization link is unknown or has expired; ask the agent again.")
        backend = self.config.backend(flow.backend)
        if backend is None or not isinstance(backend.auth, OAuth2Auth):
            raise CredentialError(flow.backend, f"Backend {flow.backend} is no longer configured for OAuth.")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": flow.redirect_uri,
            "code_verifier": flow.verifier,
        }
        token = await self._token_request(flow.backend, backend.auth, form)
        self._store_token(flow.subject, flow.backend, token)
        return flow.subject, flow.backend

    def set_key(self, subject: str, backend: str, key: str) -> None:
        self._seal(subject, backend, "key", key.encode())
        self._user_cache.pop((subject, backend), None)

    def rename(self, old: str, new: str) -> int:
        """Move every credential stored for subject `old` to subject `new` (re-sealed: a sealed value names
        its subject), e.g. when an issuer's users get a subject_prefix. Refuses to overwrite `new`'s."""
        assert self.state is not None
        records = self.state.list_credentials(old)
        if records and self.state.list_credentials(new):
            raise CredentialError(records[0].backend, f"{new} already has stored credentials; nothing moved")
        opened = []
        for record in records:  # all opened before anything changes
            plain = self._open(old, record.backend, record.kind)
            if plain is None:
                raise CredentialError(record.backend, f"{old}'s {record.kind} does not open with this key")
            opened.append((record, plain))
        for record, plain in opened:
            self._seal(new, record.backend, record.kind, plain, record.expires_at)
        for backend in {record.backend for record in records}:
            self.state.delete_credentials(old, backend)
            self._user_cache.pop((old, backend), None)
        return len(records)

    def revoke(self, subject: str, backend: str) -> int:
        assert self.state is not None
        self._user_cache.pop((subject, backend), None)
        return self.state.delete_credentials(subject, backend)

    # --- storage and HTTP ------------------------------------------------------------------------

    def _poll(self) -> None:
        if self._watch.changed():  # a key stored or revoked with the CLI
            self._user_cache.clear()

    def _need_store(self, backend: str) -> tuple[StateDB, Vault]:
        if self.state is None or self.vault is None:
            raise CredentialError(
                backend, "This gateway cannot store per-user credentials: no secret key is configured."
            )
        return self.state, self.vault

    def _open(self, subject: str, backend: str, kind: str) -> bytes | None:
        state, vault = self._need_store(backend)
        record = state.get_credential(subject, backend, kind)
        if record is None:
            return None
        plain = vault.open(record.sealed, f"{subject}|{backend}|{kind}".encode())
        if plain is None:
            logger.error("a stored %s credential of %s for %s does not open with this key", kind, subject, backend)
        return plain

    def _seal(self, subject: str, backend: str, kind: str, plain: bytes, expires_at: float | None = None) -> None:
        state, vault = self._need_store(backend)
        sealed = vault.seal(plain, f"{subject}|{backend}|{kind}".encode())
        state.put_credential(subject, backend, kind, sealed, expires_at)

    def _store_token(self, subject: str, backend: str, token: _Token) -> None:
        self._seal(subject, backend, "oauth2", token.dump(), token.expires_at)
        self._user_cache.pop((subject, backend), None)
        self._secret(token.access_token)

    def _secret(self, value: str) -> None:
        if value:
            self.on_secret(value)

    def _lock(self, key: Any) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _token_request(self, path: str, auth: OAuth2Auth, form: dict[str, str]) -> _Token:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=15.0)
        request_auth: httpx.BasicAuth | None = None
        if auth.client_secret is not None:
            request_auth = httpx.BasicAuth(auth.client_id, resolve_secret(auth.client_secret))
        else:
            form = {**form, "client_id": auth.client_id}
        if form["grant_type"] != "refresh_token":
            form.update(_requested(auth))
        try:
            response = await self._http.post(
                auth.token_url, data=form, auth=request_auth if request_auth is not None else httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise CredentialError(path, f"Backend {path}: the token endpoint is unreachable ({exc})") from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
            error = data.get("error", f"HTTP {response.status_code}") if isinstance(data, dict) else "bad answer"
            raise CredentialError(path, f"Backend {path}: the token endpoint refused ({error})")
        expires_in = data.get("expires_in")
        expires_at = time.time() + float(expires_in) if isinstance(expires_in, (int, float)) else None
        token = _Token(str(data["access_token"]), data.get("refresh_token"), expires_at)
        self._secret(token.access_token)
        if token.refresh_token:
            self._secret(str(token.refresh_token))
        return token

"""Configuration: `slicewire.yaml` plus registry-shaped virtual-server JSON files.

Loaded and validated once at the edge (CLI / app factory) into one frozen `Config` that is passed
down. Every problem is reported as `file: field.path: what was expected, found what`; unknown keys
are errors. The models are here; reading the files and the checks across them are _config_load.py's
(`load_config`, re-exported here).

    >>> config = load_config("slicewire.yaml")
    >>> [vs.path for vs in config.virtual_servers]
    ['/virtual/support']
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._config_guardrails import GuardrailsConfig, InputRule, OutputRule
from ._mcp import ALL_VERSIONS
from .recording._prefilter import DEFAULT_PATTERNS

__all__ = [
    "AuthConfig",
    "BackendConfig",
    "Config",
    "ConfigError",
    "GuardrailsConfig",
    "InputRule",
    "ListenConfig",
    "OutputRule",
    "PromptMapping",
    "RecorderConfig",
    "ResourceMapping",
    "SessionsConfig",
    "StartError",
    "TLSConfig",
    "ToolMapping",
    "VirtualServerConfig",
    "load_config",
    "normalize_path",
    "resolve_secret",
    "secret_refs",
]

_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~\-]+)+$")
_RESERVED_PREFIXES = ("/healthz", "/readyz", "/.well-known", "/metrics", "/oauth", "/api")


class StartError(RuntimeError):
    """The gateway cannot start with what its settings name (a key, a database, a channel); one line."""


class ConfigError(Exception):
    """A configuration that cannot be served. `problems` lists one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def normalize_path(value: str) -> str:
    """`/currenttime/` and `/currenttime` name the same server: registry files are written both ways."""
    if len(value) > 1:
        value = value.rstrip("/")
    return value


def _check_path(value: str, served: bool = True) -> str:
    value = normalize_path(value)
    if not _PATH_RE.match(value):
        raise ValueError(
            f"expected a path such as '/github' (letters, digits, '.', '_', '~', '-' per segment), found {value!r}"
        )
    if served and (value in _RESERVED_PREFIXES or value.startswith(tuple(p + "/" for p in _RESERVED_PREFIXES))):
        raise ValueError(f"path {value!r} collides with a built-in endpoint")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ListenConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


_SECRET_REF = re.compile(r"\$\{(env|file):([^}]+)\}")


def secret_refs(value: str) -> list[tuple[str, str]]:
    """`Bearer ${env:GITHUB_TOKEN}` -> [("env", "GITHUB_TOKEN")]: where a configured value comes from."""
    return _SECRET_REF.findall(value)


def resolve_secret(value: str) -> str:
    """Replace every `${env:NAME}` / `${file:PATH}` in `value`. Raises KeyError / OSError when absent."""

    def one(match: re.Match[str]) -> str:
        kind, ref = match.group(1), match.group(2)
        if kind == "env":
            return os.environ[ref]
        return Path(ref).read_text(encoding="utf-8").strip()

    return _SECRET_REF.sub(one, value)


class NoAuth(_Strict):
    """The backend needs no credential (or the URL carries its own)."""

    mode: Literal["none"] = "none"


class StaticAuth(_Strict):
    """Shared headers sent with every request to the backend, for every caller. Values may (and
    secrets should) come from `${env:NAME}` or `${file:PATH}`: a literal secret in the YAML works,
    but is logged as a warning at start."""

    mode: Literal["static"]
    headers: Annotated[dict[str, str], Field(min_length=1)]


class PerUserKeyAuth(_Strict):
    """Each user stores their own key (`slicewire creds set`), injected as `header` through `template`."""

    mode: Literal["per_user_key"]
    header: str = "Authorization"
    template: str = "Bearer {{API_KEY}}"
    # Shown to a user who has not stored a key yet, after the command that stores one.
    instructions: str | None = None

    @field_validator("template")
    @classmethod
    def _placeholder(cls, value: str) -> str:
        if "{{API_KEY}}" not in value:
            raise ValueError(f"the template must contain {{{{API_KEY}}}}, found {value!r}")
        return value


class OAuth2Auth(_Strict):
    """OAuth 2.0 to the backend: per-user authorization code + PKCE (S256), or client credentials."""

    mode: Literal["oauth2"]
    grant: Literal["authorization_code", "client_credentials"]
    token_url: str
    authorization_url: str | None = None  # required for authorization_code
    client_id: str = Field(min_length=1)
    client_secret: str | None = None  # `${env:NAME}` / `${file:PATH}`; None for a public client
    scopes: list[str] = []
    # RFC 8707 resource indicator / audience of the tokens, sent when set.
    resource: str | None = None
    audience: str | None = None
    # A token this close to its expiry is refreshed before use.
    refresh_margin_s: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _urls(self) -> OAuth2Auth:
        for name in ("token_url", "authorization_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"'{name}' must start with http:// or https://, found {url!r}")
        if self.grant == "authorization_code" and not self.authorization_url:
            raise ValueError("grant 'authorization_code' needs 'authorization_url'")
        if self.grant == "client_credentials" and not self.client_secret:
            raise ValueError("grant 'client_credentials' needs 'client_secret' (e.g. '${env:NAME}')")
        return self


class PassthroughAuth(_Strict):
    """Forward the caller's own `Authorization` header unchanged. The MCP specification forbids token
    passthrough (the backend would accept tokens not issued for it): opt-in, warned about at start."""

    mode: Literal["passthrough"]


BackendAuth = Annotated[
    NoAuth | StaticAuth | PerUserKeyAuth | OAuth2Auth | PassthroughAuth, Field(discriminator="mode")
]
PER_USER_MODES = ("per_user_key", "oauth2", "passthrough")


class TLSConfig(_Strict):
    """How the gateway checks an https:// backend, and the client certificate it shows (mTLS). Files are
    found next to the config file."""

    verify: bool = True  # false: no certificate check at all (a warning at start; never for production)
    ca_file: str | None = None  # PEM bundle of the CAs to trust instead of the system's
    cert_file: str | None = None  # PEM client certificate (chain) for mTLS
    key_file: str | None = None  # its private key (default: inside cert_file)

    @model_validator(mode="after")
    def _pairs(self) -> TLSConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("'key_file' needs 'cert_file'")
        return self


class BackendConfig(_Strict):
    """One real MCP server the gateway talks to."""

    path: str
    transport: Literal["streamable-http", "sse", "stdio"]
    url: str | None = None
    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # "auto" probes `server/discover` and falls back to `initialize`; a version pins the era.
    protocol_version: str = "auto"
    restart_backoff_s: float = Field(default=0.5, gt=0)
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    # Whose credentials reach this backend (see docs/auth.md).
    auth: BackendAuth = NoAuth()
    # Whether a caller may override this backend's headers with `x-mcp-headers`.
    allow_header_override: bool = False
    tls: TLSConfig = TLSConfig()

    _normalize = field_validator("path")(lambda cls, v: _check_path(v, served=False))  # backends are not served

    @field_validator("protocol_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value != "auto" and value not in ALL_VERSIONS:
            raise ValueError(f"expected 'auto' or one of {', '.join(ALL_VERSIONS)}, found {value!r}")
        return value

    @model_validator(mode="after")
    def _transport_fields(self) -> BackendConfig:
        if self.transport in ("streamable-http", "sse"):
            if not self.url:
                raise ValueError(f"transport {self.transport!r} needs 'url'")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"'url' must start with http:// or https://, found {self.url!r}")
            if "@" in (urlsplit(self.url).netloc or ""):
                # Never echoed: the URL holds a credential. It would reach logs, errors and spans.
                raise ValueError(  # says "found" so that the input (the URL) is not shown
                    "'url' must not carry credentials: found user:password@ in it; give them with 'auth' "
                    "(mode: static, headers: {Authorization: ...})"
                )
            if self.tls != TLSConfig() and not self.url.startswith("https://"):
                raise ValueError("'tls' is only for https:// backends")
            if self.command is not None:
                raise ValueError(f"'command' is only for transport 'stdio', not {self.transport!r}")
            if self.transport == "sse" and (self.auth.mode != "none" or self.allow_header_override):
                raise ValueError("transport 'sse' (legacy HTTP+SSE) takes no 'auth' yet: use streamable-http")
        else:
            if not self.command:
                raise ValueError("transport 'stdio' needs 'command'")
            if self.url is not None:
                raise ValueError("'url' is not used by transport 'stdio'")
            if self.auth.mode != "none" or self.allow_header_override:
                raise ValueError(
                    "transport 'stdio' takes no 'auth' or 'allow_header_override': give the process its "
                    "credentials in 'env' (values may be '${env:NAME}')"
                )
        return self


class ToolMapping(_Strict):
    """One backend tool exposed by a virtual server (mcp-gateway-registry shape)."""

    tool_name: str = Field(min_length=1)
    backend_server_path: str
    alias: str | None = None
    backend_version: str | None = None
    description_override: str | None = None
    guardrails: GuardrailsConfig | None = None

    _normalize = field_validator("backend_server_path")(lambda cls, v: normalize_path(v))

    @property
    def exposed_name(self) -> str:
        return self.alias or self.tool_name


class ResourceMapping(_Strict):
    """Backend resources a virtual server exposes: one URI (`uri`), every URI under a prefix
    (`uri_prefix`), or the URIs of a template (`uri_template`, RFC 6570). `expose_as` renames what the
    client sees, in the same form (a URI, a prefix, a template with the same expressions), so that
    two backends' URIs never collide."""

    backend_server_path: str
    uri: str | None = Field(default=None, min_length=1)
    uri_prefix: str | None = Field(default=None, min_length=1)
    uri_template: str | None = Field(default=None, min_length=1)
    expose_as: str | None = Field(default=None, min_length=1)
    description_override: str | None = None

    _normalize = field_validator("backend_server_path")(lambda cls, v: normalize_path(v))

    @model_validator(mode="after")
    def _one_form(self) -> ResourceMapping:
        given = [name for name in ("uri", "uri_prefix", "uri_template") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uri, uri_prefix, uri_template; found {given or 'none'}")
        if self.uri_template is not None:
            from ._resources import TemplateError, UriTemplate

            try:
                backend = UriTemplate(self.uri_template)
                if self.expose_as is not None and UriTemplate(self.expose_as).expressions != backend.expressions:
                    raise ValueError(
                        f"expose_as must keep the template's expressions {list(backend.expressions)}, found "
                        f"{list(UriTemplate(self.expose_as).expressions)}"
                    )
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def kind(self) -> Literal["uri", "prefix", "template"]:
        return "uri" if self.uri is not None else "prefix" if self.uri_prefix is not None else "template"

    @property
    def backend_form(self) -> str:
        """The URI, prefix or template as the backend knows it."""
        return self.uri or self.uri_prefix or self.uri_template or ""

    @property
    def exposed_form(self) -> str:
        """The URI, prefix or template as the client sees it."""
        return self.expose_as or self.backend_form


class PromptMapping(_Strict):
    """One backend prompt exposed by a virtual server."""

    prompt_name: str = Field(min_length=1)
    backend_server_path: str
    alias: str | None = None
    description_override: str | None = None

    _normalize = field_validator("backend_server_path")(lambda cls, v: normalize_path(v))

    @property
    def exposed_name(self) -> str:
        return self.alias or self.prompt_name


class ToolScopeOverride(_Strict):
    tool_alias: str = Field(min_length=1)
    required_scopes: list[str] = []


class PromptScopeOverride(_Strict):
    prompt_alias: str = Field(min_length=1)
    required_scopes: list[str] = []


class ResourceScopeOverride(_Strict):
    # A resource mapping's exposed URI, prefix or template, as in that mapping (its `expose_as`, else its form).
    resource: str = Field(min_length=1)
    required_scopes: list[str] = []


class RolesConfig(_Strict):
    """Who may administer (`managers`) and who may use (`users`) a virtual server: subjects, or
    `group:NAME`. Empty `users`: anyone whose token carries the required scopes."""

    managers: list[str] = []
    users: list[str] = []


class VirtualServerConfig(_Strict):
    """A curated slice of backend tools, served at `<path>/mcp` (mcp-gateway-registry shape)."""

    path: str
    server_name: str = Field(min_length=1)
    description: str | None = None
    tool_mappings: list[ToolMapping] = []
    resource_mappings: list[ResourceMapping] = []
    prompt_mappings: list[PromptMapping] = []
    required_scopes: list[str] = []
    tool_scope_overrides: list[ToolScopeOverride] = []
    resource_scope_overrides: list[ResourceScopeOverride] = []
    prompt_scope_overrides: list[PromptScopeOverride] = []
    tags: list[str] = []
    supported_transports: list[Literal["streamable-http", "sse", "stdio"]] = ["streamable-http"]
    is_enabled: bool = True
    # Deny by default: without `public: true` every caller needs a valid gateway token.
    public: bool = False
    roles: RolesConfig = RolesConfig()
    guardrails: GuardrailsConfig | None = None  # input and output rules for every tool (pin, narrow: per tool)

    _normalize = field_validator("path")(lambda cls, v: _check_path(v))

    @model_validator(mode="after")
    def _maps_something(self) -> VirtualServerConfig:
        if not (self.tool_mappings or self.resource_mappings or self.prompt_mappings):
            raise ValueError("a virtual server maps at least one tool, resource or prompt (tool_mappings, ...)")
        if self.guardrails is not None and (self.guardrails.pin or self.guardrails.narrow):
            raise ValueError("guardrails.pin and .narrow name a tool's arguments: set them on its tool mapping")
        return self

    @property
    def backend_paths(self) -> set[str]:
        """Every backend this virtual server's mappings use."""
        mappings: list[Any] = [*self.tool_mappings, *self.resource_mappings, *self.prompt_mappings]
        return {m.backend_server_path for m in mappings}

    @field_validator("supported_transports")
    @classmethod
    def _served(cls, value: list[str]) -> list[str]:
        if "streamable-http" not in value:
            raise ValueError(
                f"Slicewire serves virtual servers over 'streamable-http'; supported_transports must include it, "
                f"found {value!r}"
            )
        return value


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # A backend's answer read whole (a JSON body) larger than this is refused with a JSON-RPC error naming
    # the backend; streamed answers (SSE) are read as the client takes them.
    max_response_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # A connection that has been sending a request's headers (or nothing, since it opened) for this many
    # seconds is closed (checked every half of it): a slow-header client cannot hold a connection open.
    header_timeout_s: float = Field(default=10.0, gt=0)
    # How long a modern client may take to answer an InputRequiredResult before the backend call is dropped.
    input_required_ttl_s: float = Field(default=300.0, gt=0)
    # A legacy session's per-process parts (its GET stream's registration, subscriptions) are freed after this
    # long without a request; the session itself stays valid until `sessions.max_age_s`.
    session_idle_s: float = Field(default=3600.0, gt=0)


class SecurityConfig(_Strict):
    # Browser Origins allowed to call the gateway (DNS-rebinding protection). Requests without Origin pass.
    allowed_origins: list[str] = []
    # Host header values accepted. Empty: loopback names only when bound to loopback, anything otherwise.
    allowed_hosts: list[str] = []


class RedactConfig(_Strict):
    # JSON object keys (any depth, case-insensitive) whose values are replaced by the marker.
    keys: list[str] = [
        "password", "passwd", "secret", "token", "access_token", "refresh_token", "id_token", "api_key", "apikey",
        "authorization", "client_secret", "private_key", "cookie", "secret_access_key", "aws_secret_access_key",
        "secretaccesskey", "aws_session_token", "sessiontoken", "connection_string", "connectionstring",
    ]  # fmt: skip
    # JSON paths from the message root, e.g. $.params.arguments.ssn or $.result.structuredContent.card
    paths: list[str] = []
    # Regular expressions; every match in any string is replaced. The defaults: Bearer credentials, AWS,
    # Google Cloud, Azure, Slack, Stripe, GitHub and OpenAI key formats, private key blocks, JWTs
    # (proxy/recording/_prefilter.py lists them). Setting `patterns` replaces them; `extra_patterns` adds to them.
    patterns: list[str] = list(DEFAULT_PATTERNS)
    extra_patterns: list[str] = []

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("$"):
                raise ValueError(f"a JSON path starts with '$', found {path!r}")
        return value

    @field_validator("patterns", "extra_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc}), found {pattern!r}") from None
        return value


_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class JwtIssuerConfig(_Strict):
    """An identity provider whose JWTs the gateway accepts. Asymmetric algorithms only: a shared HMAC
    secret would let anyone who can check a token also mint one (and invites HS/RS confusion)."""

    issuer: str = Field(min_length=1)  # the exact `iss`
    jwks_url: str | None = None  # cached; fetched again when a token names an unknown `kid`
    keys_file: str | None = None  # static keys: a JWKS JSON file or PEM public key(s)
    # Accepted `aud` values. Empty: the virtual server's resource URL (`auth.public_url` + path + /mcp).
    audiences: list[str] = []
    algorithms: list[Literal[_ALGORITHMS]] = ["RS256", "ES256"]  # type: ignore[valid-type]
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    subject_claim: str = "sub"
    # How this issuer's subjects are named at the gateway (sessions, stored credentials, roles, recording):
    # `<subject_prefix><sub>`. With several issuers, all but one need a distinct prefix, or two IdPs'
    # users with the same `sub` would be one user.
    subject_prefix: str = ""
    scopes_claim: str = "scope"  # a space-separated string or a list ("scp" for Entra ID)
    groups_claim: str = "groups"

    @model_validator(mode="after")
    def _keys(self) -> JwtIssuerConfig:
        if (self.jwks_url is None) == (self.keys_file is None):
            raise ValueError("give exactly one of 'jwks_url' and 'keys_file'")
        if self.jwks_url is not None and not self.jwks_url.startswith(("http://", "https://")):
            raise ValueError(f"'jwks_url' must start with http:// or https://, found {self.jwks_url!r}")
        if not self.algorithms:
            raise ValueError("'algorithms' must name at least one algorithm")
        return self


class AuthConfig(_Strict):
    """Who may call the gateway (inbound) and where per-user state lives (see docs/auth.md)."""

    # The gateway's public base URL, e.g. https://mcp.example.com: virtual servers' resource URLs
    # (JWT audience, RFC 9728 metadata) and the OAuth callback derive from it. Unset: taken from the
    # request's Host header, and JWTs need explicit `audiences`.
    public_url: str | None = None
    # Gateway tokens (hashes only), users' backend credentials (encrypted), session keys: a SQLite file, or a
    # postgresql:// URL that every replica shares (docs/deployment.md).
    state_db: str = ".slicewire/state.db"
    # Key for credentials at rest (32 bytes, base64): this file, else $SLICEWIRE_SECRET_KEY.
    secret_key_file: str | None = None
    jwt: list[JwtIssuerConfig] = []
    # Group -> scopes it grants (groups come from JWT claims or from a gateway token's record).
    groups: dict[str, list[str]] = {}
    # Authorization servers named in the protected-resource metadata. Empty: the JWT issuers.
    authorization_servers: list[str] = []
    # Subjects (or group:NAME) allowed every admin endpoint, on every virtual server.
    admins: list[str] = []
    # How long a verified identity is reused for the same token (never past the token's expiry).
    identity_cache_s: float = Field(default=60.0, ge=0)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"expected an http:// or https:// URL, found {value!r}")
            value = value.rstrip("/")
        return value


class RecorderConfig(_Strict):
    """Where spans go. Without `target` the gateway records nothing."""

    target: str | None = None  # host:port of `slicewire recorder`
    # The recorder's token (both of its RPCs require one). Default: $SLICEWIRE_RECORDER_TOKEN, else the token
    # file a recorder on this machine keeps for `target` (docs/recording.md, "Access").
    token_file: str | None = None
    spool_dir: str = ".slicewire/spool"
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # ~10k requests: waiting for the recorder (beyond: spooled), or not yet read by the helper (beyond: dropped)
    queue_max_spans: int = Field(default=50_000, gt=0)
    # Spans per gRPC message the shipping helper (a process of its own) sends: a message costs ~250 µs of
    # CPU whatever its size, so bigger batches cost less per request (bench/: 64 spans ~20 µs, 256 ~6.5,
    # 1024 ~5).
    batch_spans: int = Field(default=1024, gt=0, le=10_000)
    flush_interval_ms: int = Field(default=200, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    max_payload_bytes: int = Field(default=64 * 1024, gt=0)
    # Which payloads spans carry: all (replay needs them), only those of failed requests, or none.
    payloads: Literal["all", "errors", "none"] = "all"
    redact: RedactConfig = RedactConfig()

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9.\-\[\]:]+:\d+$", value):
            raise ValueError(f"expected host:port, found {value!r}")
        return value


class SessionsConfig(_Strict):
    """2025-11-25 sessions. Each session id carries the session sealed (AES-256-GCM), so every worker and
    replica holding the keys serves every session (docs/deployment.md)."""

    # A session id is refused this long after `initialize` (404: the client initializes again).
    max_age_s: float = Field(default=86400.0, gt=0)
    # The keys, base64, one per line, the first sealing (rotate by putting a new key first, keeping the old
    # one until max_age_s has passed). Unset: $SLICEWIRE_SESSION_KEYS; else keys kept in `auth.state_db`
    # (shared by every replica on that database, rotated every rotate_s) when the gateway opens one; else a
    # key of this process (or of `serve --workers N`), and a restart ends every session.
    keys_file: str | None = None
    rotate_s: float = Field(default=86400.0, gt=0)
    # Where replicas pass each other a session's cancellations, answers and stream messages:
    # redis://host:port/db (or rediss://). Unset: the workers of one `serve` share a local channel.
    channel: str | None = None

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"expected a redis://, rediss:// or unix:// URL, found {value!r}")
        return value


class MetricsConfig(_Strict):
    """`/metrics` (Prometheus text format). Deny by default: an admin's gateway token is needed unless
    `public: true` (for a scraper on a trusted network)."""

    enabled: bool = True
    public: bool = False


class Config(_Strict):
    """Everything the gateway needs, validated. Built by `load_config`, passed down, never mutated."""

    listen: ListenConfig = ListenConfig()
    backends: list[BackendConfig] = []
    virtual_servers: list[VirtualServerConfig] = []
    virtual_servers_dir: str | None = None
    limits: LimitsConfig = LimitsConfig()
    sessions: SessionsConfig = SessionsConfig()
    security: SecurityConfig = SecurityConfig()
    tools_list_ttl_ms: int = Field(default=0, ge=0)
    recorder: RecorderConfig = RecorderConfig()
    auth: AuthConfig = AuthConfig()
    metrics: MetricsConfig = MetricsConfig()
    # Where the config came from, for reload and error messages; not a YAML key.
    source_files: tuple[str, ...] = Field(default=(), exclude=True)

    def backend(self, path: str) -> BackendConfig | None:
        for backend in self.backends:
            if backend.path == path:
                return backend
        return None


from ._config_load import load_config  # noqa: E402 - the models above are what it loads

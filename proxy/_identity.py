"""Inbound identity: who is calling the gateway, from the one token the agent passes.

Two kinds of bearer token:

- gateway tokens (`swp_…` personal, `sws_…` service account), created with `slicewire tokens`,
  checked against their SHA-256 in the state DB;
- JWTs from a configured identity provider: signature (asymmetric algorithms on an allow-list, key
  from the issuer's JWKS — fetched again when a token names an unknown `kid`, at most every 30 s —
  or from a static file), `iss`, `aud`, `exp` and `nbf` (with the configured leeway).

A verified identity is kept for `auth.identity_cache_s` (never past the token's expiry), so the
hot path is one dict lookup; a revocation (`slicewire tokens revoke`) empties the cache within a
second (the state DB's data_version is polled at most once a second).

    auth = Authenticator(config.auth, state_db)
    identity = auth.cached(header) or await auth.authenticate(header, audiences)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ._config import AuthConfig, JwtIssuerConfig
from ._state import ChangeWatch, StateDB, split_token

logger = logging.getLogger(__name__)

__all__ = ["AuthError", "Authenticator", "Identity", "bearer_token"]

_JWKS_MIN_INTERVAL_S = 30.0
_CACHE_MAX = 10_000


class AuthError(Exception):
    """A token that does not identify anyone. `code` is the RFC 6750 error (None: no token at all)."""

    def __init__(self, message: str, code: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False, slots=True)
class Identity:
    subject: str
    kind: str  # "personal", "service" or "jwt"
    scopes: frozenset[str]
    groups: frozenset[str]
    expires_at: float | None
    issuer: str = ""
    # The JWT's `aud` when it was checked against a virtual server's URL (then it is good for that
    # server only); None when not tied to one (gateway tokens, issuers with configured audiences).
    audiences: frozenset[str] | None = None
    token: str = field(default="", repr=False)  # the bearer token as received (for passthrough backends)
    # Per-virtual-server decisions for this identity, keyed by (virtual server path, slice object id).
    views: dict[Any, Any] = field(default_factory=dict, repr=False)

    def principals(self) -> frozenset[str]:
        """How roles may name this caller: its subject and `group:NAME` for each group."""
        return frozenset({self.subject, *(f"group:{g}" for g in self.groups)})


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class _Issuer:
    """One identity provider's keys."""

    def __init__(self, config: JwtIssuerConfig) -> None:
        self.config = config
        self.keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        self.fetched_at = 0.0
        if config.keys_file is not None:
            self.keys = _load_static_keys(Path(config.keys_file))

    async def key_for(self, kid: str | None, alg: str, http: httpx.AsyncClient) -> Any:
        found = self.keys.get(kid)
        if found is None and kid is None and len(self.keys) == 1:
            found = next(iter(self.keys.values()))
        if found is None and self.config.jwks_url is not None:
            if time.monotonic() - self.fetched_at >= _JWKS_MIN_INTERVAL_S or not self.keys:
                await self.refresh(http)
                found = self.keys.get(kid)
        if found is None:
            raise AuthError(f"the token's signing key {kid!r} is not one of issuer {self.config.issuer}'s keys")
        key, declared = found
        if not _fits(key, declared, alg):
            raise AuthError(f"the token says algorithm {alg}, which its key ({key.key_type}) is not for")
        return key.key

    async def refresh(self, http: httpx.AsyncClient) -> None:
        assert self.config.jwks_url is not None
        self.fetched_at = time.monotonic()
        try:
            response = await http.get(self.config.jwks_url)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("cannot fetch the JWKS of %s from %s: %s", self.config.issuer, self.config.jwks_url, exc)
            return
        self.keys = _jwks(data)


def _jwks(data: Any) -> dict[str | None, tuple[jwt.PyJWK, str | None]]:
    keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
    for item in data.get("keys", []) if isinstance(data, dict) else []:
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        try:
            keys[item.get("kid")] = (jwt.PyJWK(item), item.get("alg"))
        except jwt.PyJWTError:
            continue  # a key type or algorithm this gateway does not use
    return keys


def _fits(key: jwt.PyJWK, declared: str | None, alg: str) -> bool:
    """The token's algorithm must be the key's: its declared `alg`, else one of its key type's."""
    if declared is not None:
        return declared == alg
    if key.key_type == "RSA":
        return alg[:2] in ("RS", "PS")
    return key.algorithm_name == alg  # EC: the curve's algorithm; OKP: EdDSA


def _load_static_keys(path: Path) -> dict[str | None, tuple[jwt.PyJWK, str | None]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return _jwks(json.loads(text))
    keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
    for i, block in enumerate(text.split("-----END PUBLIC KEY-----")):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        public = serialization.load_pem_public_key((block.strip() + "\n-----END PUBLIC KEY-----\n").encode())
        kty = "RS256" if isinstance(public, rsa.RSAPublicKey) else "ES256"
        data = json.loads(jwt.algorithms.get_default_algorithms()[kty].to_jwk(public))
        keys[None if i == 0 else f"pem-{i}"] = (jwt.PyJWK(data), None)
    return keys


class Authenticator:
    def __init__(self, config: AuthConfig, state: StateDB | None) -> None:
        self.config = config
        self.state = state
        self.issuers = {issuer.issuer: _Issuer(issuer) for issuer in config.jwt}
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._watch = ChangeWatch(state)
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def cached(self, token: str) -> Identity | None:
        """The identity of a token verified recently, or None. The hot path: a dict lookup."""
        if self._watch.changed():  # a token revoked with the CLI: verify everything again
            self._cache.clear()
        hit = self._cache.get(token)
        if hit is None:
            return None
        identity, until = hit
        if until <= time.monotonic() or (identity.expires_at is not None and identity.expires_at <= time.time()):
            del self._cache[token]
            return None
        return identity

    async def authenticate(self, token: str, audiences: frozenset[str]) -> Identity:
        """Verify a token not in the cache. Raises AuthError naming what is wrong with it."""
        if split_token(token) is not None:
            identity = self._gateway_token(token)
        elif token.count(".") == 2:
            identity = await self._jwt(token, audiences)
        else:
            raise AuthError("the bearer token is neither a Slicewire token nor a JWT")
        lifetime = self.config.identity_cache_s
        if identity.expires_at is not None:
            lifetime = min(lifetime, identity.expires_at - time.time())
        if lifetime > 0:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = (identity, time.monotonic() + lifetime)
        return identity

    def _scopes(self, scopes: tuple[str, ...] | list[str], groups: frozenset[str]) -> frozenset[str]:
        granted = set(scopes)
        for group in groups:
            granted.update(self.config.groups.get(group, ()))
        return frozenset(granted)

    def _gateway_token(self, token: str) -> Identity:
        if self.state is None:
            raise AuthError("this gateway has no token store")
        record = self.state.find_token(token)
        if record is None:
            raise AuthError("unknown, revoked or expired Slicewire token")
        groups = frozenset(record.groups)
        return Identity(
            record.subject, record.kind, self._scopes(record.scopes, groups), groups, record.expires_at, token=token
        )

    async def _jwt(self, token: str, audiences: frozenset[str]) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed JWT") from None
        alg = str(header.get("alg"))
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("the JWT's issuer is not one this gateway trusts")
        config = issuer.config
        if alg not in config.algorithms:
            raise AuthError(f"JWT algorithm {alg!r} is not accepted (allowed: {', '.join(config.algorithms)})")
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        key = await issuer.key_for(header.get("kid"), alg, self._http)
        accepted = list(config.audiences) or sorted(audiences)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=accepted,
                issuer=config.issuer,
                leeway=config.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the JWT is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the JWT was not issued for this gateway (aud)") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the JWT's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the JWT has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid JWT: {exc}") from None
        for claim in ("exp", "nbf", "iat"):
            # RFC 7519 NumericDate is a JSON number; PyJWT would read "9999999999" (a string) as one.
            value = claims.get(claim)
            if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError(f"the JWT's {claim!r} claim is not a number")
        subject = claims.get(config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthError(f"the JWT has no {config.subject_claim!r} claim naming its subject")
        subject = config.subject_prefix + subject  # issuers' users never merge (config: distinct prefixes)
        groups = frozenset(_claim_list(claims.get(config.groups_claim)))
        scopes = self._scopes(_claim_list(claims.get(config.scopes_claim)), groups)
        aud = None if config.audiences else frozenset(_claim_list(claims.get("aud")))
        return Identity(subject, "jwt", scopes, groups, float(claims["exp"]), config.issuer, aud, token=token)


def _claim_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []

"""One client request being answered (`Call`), and what every part of its handling shares: how a
backend's result is rewritten for the client (`Shaper`), the client's `_meta`, the consent error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ._access import View
from ._creds import ConsentRequired
from ._gateway import Gateway, VirtualServer
from ._identity import Identity
from ._jsonrpc import RequestId, encode_error
from ._mcp import AUTHORIZATION_REQUIRED, META_SERVER_INFO, Era
from ._observed import Observed
from ._responder import Responder
from ._sessions import LiveSession, SessionState
from ._upstream import Headers

__all__ = ["Call", "Shaper", "client_meta_of", "consent"]


class Shaper(Protocol):
    """Rewrites a backend's result for the client (its resource URIs and task ids to the slice's).
    `marker`: bytes every result needing it contains; a result arriving without them is passed as is."""

    @property
    def marker(self) -> bytes | None: ...

    def __call__(self, result: dict[str, Any], /) -> dict[str, Any]: ...


@dataclass(slots=True)
class Call:
    """One client request being answered: who asks, in which era, on which virtual server."""

    gateway: Gateway
    server: VirtualServer
    era: Era
    protocol_version: str
    responder: Responder
    observed: Observed  # what /metrics and the flight recorder learn of it
    session: SessionState | None = None
    live: LiveSession | None = None
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # Who is calling (None on a public virtual server), and the request's own downstream headers.
    identity: Identity | None = None
    overrides: dict[str, Headers] | None = None
    base_url: str = ""
    # The HTTP request's headers (lower-case names), for the 2026-07-28 Mcp-Param-* checks.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.identity.subject if self.identity is not None else ""

    def view(self) -> View:
        server = self.server
        return server.policy.view(self.identity, server.slice.tools, server.slice.routes)

    def stamp(self, result: dict[str, Any], cached: bool = False) -> dict[str, Any]:
        """Modern results carry `resultType` and the server's identity; `cached` ones (lists, reads) the
        caching hints the 2026-07-28 schema requires, when the backend gave none."""
        if self.era == "modern":
            result.setdefault("resultType", "complete")
            if cached:
                result.setdefault("ttlMs", self.gateway.config.tools_list_ttl_ms)
                result.setdefault("cacheScope", "private")
            meta = result.get("_meta")
            meta = dict(meta) if isinstance(meta, dict) else {}
            meta[META_SERVER_INFO] = self.server.server_info
            result["_meta"] = meta
        return result


def consent(request_id: RequestId | None, exc: ConsentRequired) -> bytes:
    return encode_error(
        request_id, AUTHORIZATION_REQUIRED, "Authorization required: connect your account first", exc.data
    )


def client_meta_of(params: dict[str, Any]) -> dict[str, Any]:
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}

"""Which HTTP proxy a backend URL goes through: HTTP_PROXY / HTTPS_PROXY / NO_PROXY (either case), read
the way curl and httpx read them. https:// backends are reached through a CONNECT tunnel, http:// ones
with absolute-form requests to the proxy.

    proxy = proxy_for("https://mcp.example.com/mcp")   # Proxy(host="proxy.corp", port=3128, ...) or None
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["Proxy", "proxy_for"]


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None = None  # Proxy-Authorization value, from user:password@ in the proxy URL

    def __repr__(self) -> str:  # never the credential
        return f"Proxy({self.host}:{self.port}{', with credentials' if self.authorization else ''})"


def proxy_for(url: str) -> Proxy | None:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(parts.scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # NO_PROXY, as curl reads it
    if not chosen or bypass(parts.hostname or "", proxies):
        return None
    if "://" not in chosen:
        chosen = f"http://{chosen}"
    proxy = urlsplit(chosen)
    authorization = None
    if proxy.username is not None:
        pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Proxy(proxy.hostname or "127.0.0.1", proxy.port or 8080, authorization)

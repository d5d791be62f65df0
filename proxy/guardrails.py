"""Guardrail hooks: Python that decides on a tool call before the gateway forwards it.

A hook is a function, plain or async, registered under the entry point group `slicewire.guardrails`
(or named `module:function` in the config) and used by an input rule:

    input_rules:
      - {hook: no-private-urls}                       # an entry point name
      - {hook: "mycompany.guards:check", budget_ms: 20} # or a module path

    # mycompany/guards.py
    from proxy.guardrails import Allow, CallContext, Deny, Rewrite

    def check(ctx: CallContext, name: str, arguments: dict) -> Allow | Deny | Rewrite:
        if ctx.subject.startswith("intern-") and arguments.get("env") == "prod":
            return Deny("interns may not touch prod: use env=staging")
        return Allow()

    # pyproject.toml of the package that ships it
    [project.entry-points."slicewire.guardrails"]
    intern-guard = "mycompany.guards:check"

`Deny(reason)` refuses the call (the reason is what the model is told); `Rewrite(arguments)` sends
these arguments instead; `Allow()` lets it pass. A hook that raises, returns anything else, or takes
longer than its budget (default 50 ms; an async hook is cancelled, a plain one is judged when it
returns) refuses the call: guardrails fail closed.

Shipped hooks: `no-private-urls` (an SSRF guard: refuses http(s) URLs in the arguments whose host is
a loopback, private, link-local or unspecified IP address, or `localhost`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Allow", "CallContext", "Deny", "Hook", "Rewrite", "no_private_urls"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling what: the virtual server, the exposed tool, the backend and its name for it,
    the caller's subject ("" for an anonymous caller of a public server), the protocol era."""

    virtual_server: str
    tool: str
    backend: str
    backend_tool: str
    subject: str
    era: str


@dataclass(frozen=True, slots=True)
class Allow:
    pass


@dataclass(frozen=True, slots=True)
class Deny:
    reason: str


@dataclass(frozen=True, slots=True)
class Rewrite:
    arguments: dict[str, Any] = field(default_factory=dict)


Decision = Allow | Deny | Rewrite
Hook = Callable[[CallContext, str, dict[str, Any]], "Decision | Awaitable[Decision]"]

_URL = re.compile(r"https?://[^\s\"'<>]+", re.IGNORECASE)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def no_private_urls(ctx: CallContext, name: str, arguments: dict[str, Any]) -> Decision:
    """Refuse http(s) URLs that point into the gateway's own networks (SSRF): loopback, private,
    link-local, unspecified addresses and `localhost`. Host names other than localhost are not
    resolved (a hook has a small budget); pin or narrow such arguments where that matters."""
    for text in _strings(arguments):
        for url in _URL.findall(text):
            host = (urlsplit(url).hostname or "").rstrip(".").lower()
            if host == "localhost" or host.endswith(".localhost"):
                return Deny(f"{url} points at this machine: use a public address")
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
            if address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified:
                return Deny(f"{url} points into a private network: use a public address")
    return Allow()

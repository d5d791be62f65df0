"""Authorization: what an identified caller may do on a virtual server.

Pure decisions over the config and the current slice:

- `admit`: may this caller use the virtual server at all? Its `roles.users` (when listed) must name
  the caller (subject or `group:NAME`; managers count as users), and the caller's scopes must cover
  the server's `required_scopes` — else 403 `insufficient_scope`, naming the scopes.
- `view`: which of the slice's tools this caller sees and may call. A tool whose
  `tool_scope_overrides` entry asks for scopes the caller lacks does not exist for it: it is absent
  from `tools/list` and calling it gets the same "Unknown tool" error as a tool outside the slice.
- `may_prompt` / `may_read`: the same for prompts (`prompt_scope_overrides`, by exposed name) and
  resources (`resource_scope_overrides`, by a mapping's exposed URI, prefix or template).

A view is computed once per (identity, slice) and kept on the identity, so the hot path is one dict
lookup; a reload builds new slices, and with them new views.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._config import VirtualServerConfig
from ._identity import Identity

__all__ = ["Policy", "View"]


@dataclass(frozen=True, slots=True)
class View:
    tools: tuple[dict[str, Any], ...]
    names: frozenset[str]


@dataclass(frozen=True)
class Policy:
    path: str
    public: bool
    required: frozenset[str]
    tool_scopes: dict[str, frozenset[str]]
    users: frozenset[str]
    managers: frozenset[str]
    admins: frozenset[str]
    # No per-tool scopes: every admitted caller may call every tool of the slice (the hot path skips views).
    open: bool = True
    prompt_scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    # Index of a resource mapping -> the scopes its resources need.
    resource_scopes: dict[int, frozenset[str]] = field(default_factory=dict)
    _anonymous: dict[Any, tuple[Any, View]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, vs: VirtualServerConfig, admins: Iterable[str] = ()) -> Policy:
        return cls(
            vs.path,
            vs.public,
            frozenset(vs.required_scopes),
            {o.tool_alias: frozenset(o.required_scopes) for o in vs.tool_scope_overrides},
            frozenset(vs.roles.users),
            frozenset(vs.roles.managers),
            frozenset(admins),
            not vs.tool_scope_overrides,
            {o.prompt_alias: frozenset(o.required_scopes) for o in vs.prompt_scope_overrides},
            {
                i: frozenset(o.required_scopes)
                for o in vs.resource_scope_overrides
                for i, m in enumerate(vs.resource_mappings)
                if m.exposed_form == o.resource
            },
        )

    def admit(self, identity: Identity | None) -> tuple[str, frozenset[str]] | None:
        """None if the caller may use this server, else (why not, the scopes it would need)."""
        if identity is None:
            return None if self.public else ("a gateway token is required", self.required)
        if self.users and identity.principals().isdisjoint(self.users | self.managers):
            return f"{identity.subject} is not a user of {self.path}", frozenset()
        missing = self.required - identity.scopes
        if missing:
            return f"missing scope(s) {' '.join(sorted(missing))} for {self.path}", self.required
        return None

    def may_manage(self, identity: Identity | None) -> bool:
        if identity is None:
            return False
        principals = identity.principals()
        return not principals.isdisjoint(self.managers) or not principals.isdisjoint(self.admins)

    def may_prompt(self, identity: Identity | None, name: str) -> bool:
        needed = self.prompt_scopes.get(name)
        return needed is None or needed <= (identity.scopes if identity is not None else frozenset())

    def may_read(self, identity: Identity | None, mapping: int) -> bool:
        """Whether the caller may read (list, subscribe to) the resources of one resource mapping."""
        needed = self.resource_scopes.get(mapping)
        return needed is None or needed <= (identity.scopes if identity is not None else frozenset())

    def view(self, identity: Identity | None, tools: tuple[dict[str, Any], ...], routes: Any) -> View:
        """The tools this caller may see and call, for one slice (cached on the identity)."""
        cache = identity.views if identity is not None else self._anonymous
        key: Any = (self.path, id(tools)) if identity is not None else id(tools)
        cached = cache.get(key)
        if cached is not None and cached[0] is tools:
            return cached[1]
        scopes = identity.scopes if identity is not None else frozenset()
        allowed = {name for name in routes if self.tool_scopes.get(name, frozenset()) <= scopes}
        view = View(tuple(t for t in tools if t["name"] in allowed), frozenset(allowed))
        if len(cache) > 64:
            cache.clear()
        cache[key] = (tools, view)  # holding `tools` keeps id(tools) from being reused
        return view

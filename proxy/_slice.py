"""Slicing: a virtual server's routing table, built from its mappings and what the backends offer.

Pure: given the config of one virtual server and the lists discovered from the backends, a `Slice`
knows which tools, prompts, resources and resource templates exist for the agent (aliases, renamed
URIs and description overrides applied; schemas, annotations and icons kept) and where each exposed
name or URI goes. Rebuilt whenever a backend's lists change or the config is reloaded; lookups on
the hot path are one dict access.

    >>> s = Slice.build(vs_config, {"/github": [{"name": "get_issue", "inputSchema": {...}}]}, {})
    >>> s.routes["get_issue"].backend
    '/github'
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ._guardrails import ToolGuard, expose_schema
from ._mcp import param_headers
from ._resources import LinkShaper, ResourceRoute, ResourceRouter

__all__ = ["Route", "Slice"]


class _Mapping(Protocol):
    @property
    def tool_name(self) -> str: ...
    @property
    def backend_server_path(self) -> str: ...
    @property
    def backend_version(self) -> str | None: ...
    @property
    def description_override(self) -> str | None: ...
    @property
    def exposed_name(self) -> str: ...
    @property
    def guardrails(self) -> Any: ...  # _config.GuardrailsConfig | None


class _VirtualServer(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def tool_mappings(self) -> Sequence[_Mapping]: ...
    @property
    def resource_mappings(self) -> Sequence[Any]: ...  # _config.ResourceMapping
    @property
    def prompt_mappings(self) -> Sequence[Any]: ...  # _config.PromptMapping
    @property
    def guardrails(self) -> Any: ...  # _config.GuardrailsConfig | None


class _Offer(Protocol):
    @property
    def resources(self) -> tuple[dict[str, Any], ...]: ...
    @property
    def templates(self) -> tuple[dict[str, Any], ...]: ...
    @property
    def prompts(self) -> tuple[dict[str, Any], ...]: ...
    @property
    def subscribe(self) -> bool: ...
    @property
    def completions(self) -> bool: ...
    @property
    def tasks(self) -> bool: ...
    @property
    def task_extension(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Where an exposed tool name goes."""

    exposed: str
    backend: str
    tool_name: str


@dataclass(frozen=True)
class Slice:
    path: str
    # Exposed tool definitions, in mapping order (deterministic, as the 2026-07-28 spec asks).
    tools: tuple[dict[str, Any], ...]
    routes: Mapping[str, Route]
    # Human-readable reasons a mapped tool is not currently exposed.
    problems: tuple[str, ...] = field(default=())
    prompts: tuple[dict[str, Any], ...] = ()
    prompt_routes: Mapping[str, Route] = field(default_factory=dict)
    resources: tuple[dict[str, Any], ...] = ()
    templates: tuple[dict[str, Any], ...] = ()
    router: ResourceRouter = field(default_factory=lambda: ResourceRouter([]))
    # Whether the backends behind the mapped resources serve resources/subscribe and completion/complete.
    subscribe: bool = False
    completions: bool = False
    # Exposed tool -> "optional" | "required": the tools whose backend runs 2025-11-25 tasks.
    task_modes: Mapping[str, str] = field(default_factory=dict)
    # The backends behind mapped tools that serve the 2026-07-28 tasks extension (they decide which
    # call becomes a task).
    task_backends: frozenset[str] = frozenset()
    # 2025-11-25 clients may ask for tasks (a mapped tool's backend runs them); 2026-07-28 clients may
    # follow tasks (the extension: relayed or bridged). Derived from the two above.
    tasks: bool = False
    task_extension: bool = False
    # What works, but not for every client: `slicewire check` shows these without failing.
    warnings: tuple[str, ...] = ()
    # Exposed tool -> its (header name, argument) pairs, for tools whose schema has `x-mcp-header`.
    param_headers: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # Exposed tool -> its guardrails (its own, then the server's), for tools that have any.
    guards: Mapping[str, ToolGuard] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        vs: _VirtualServer,
        discovered: Mapping[str, Sequence[dict[str, Any]] | None],
        versions: Mapping[str, str | None],
        offers: Mapping[str, _Offer] | None = None,
    ) -> Slice:
        """`discovered[backend]` is None while a backend has not answered discovery: its mappings still
        route (the call then fails naming the backend), but they cannot be listed without a schema.
        `offers[backend]`: its resources, templates and prompts, once discovered."""
        tools: list[dict[str, Any]] = []
        routes: dict[str, Route] = {}
        problems: list[str] = []
        by_backend = {path: {t["name"]: t for t in listed} for path, listed in discovered.items() if listed is not None}
        for mapping in vs.tool_mappings:
            exposed = mapping.exposed_name
            backend = mapping.backend_server_path
            route = Route(exposed, backend, mapping.tool_name)
            listed = by_backend.get(backend)
            if listed is None:
                routes[exposed] = route
                problems.append(f"{exposed}: backend {backend} has not answered discovery yet")
                continue
            if mapping.backend_version is not None and versions.get(backend) != mapping.backend_version:
                problems.append(
                    f"{exposed}: pinned to {backend} version {mapping.backend_version}, "
                    f"but the backend reports {versions.get(backend)!r}"
                )
                continue
            original = listed.get(mapping.tool_name)
            if original is None:
                problems.append(f"{exposed}: backend {backend} has no tool named {mapping.tool_name!r}")
                continue
            shown = _exposed(original, exposed, mapping.description_override)
            if mapping.guardrails is not None and "inputSchema" in shown:
                shown["inputSchema"] = expose_schema(shown["inputSchema"], mapping.guardrails)
            tools.append(shown)
            routes[exposed] = route
        offers = offers or {}
        prompts, prompt_routes = _prompts(vs, offers, problems)
        mappings = vs.resource_mappings
        router = ResourceRouter.build(
            (m.backend_server_path, m.kind, m.backend_form, m.exposed_form, i) for i, m in enumerate(mappings)
        )
        resources, templates = _resources(vs, offers, router)
        backends = {m.backend_server_path for m in vs.resource_mappings}
        prompt_backends = backends | {route.backend for route in prompt_routes.values()}
        task_modes, warnings = _task_support(tools, routes, offers)
        task_backends = frozenset(path for path, offer in offers.items() if offer.task_extension) & {
            route.backend for route in routes.values()
        }
        return cls(
            vs.path, tuple(tools), routes, tuple(problems), prompts, prompt_routes, resources, templates, router,
            subscribe=any(o.subscribe for p, o in offers.items() if p in backends),
            completions=any(o.completions for p, o in offers.items() if p in prompt_backends),
            task_modes=task_modes, task_backends=task_backends, tasks=bool(task_modes),
            task_extension=bool(task_modes or task_backends), warnings=tuple(warnings),
            param_headers={t["name"]: found for t in tools if (found := param_headers(t.get("inputSchema")))},
            guards=_guards(vs, tools),
        )  # fmt: skip

    _links: dict[str, LinkShaper] = field(default_factory=dict, init=False, repr=False, compare=False)

    def links(self, backend: str) -> LinkShaper:
        """The rewriter of resource links in `backend`'s tool results, for this slice."""
        shaper = self._links.get(backend)
        if shaper is None:
            shaper = self._links[backend] = LinkShaper(self.router, backend)
        return shaper

    # Encoded pages, shared by every caller with the same view (a Slice is rebuilt when its tools change).
    _encoded: dict[tuple[Any, int, int], orjson.Fragment] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def page(
        self, cursor: str | None, size: int, tools: tuple[dict[str, Any], ...] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of `tools` (default: all of the slice's; a caller's view of them, filtered by
        its scopes, otherwise). Cursors are opaque offsets; a bad one raises ValueError."""
        listed = self.tools if tools is None else tools
        start, end, next_cursor = _bounds(cursor, size, len(listed))
        return list(listed[start:end]), next_cursor

    def encoded_page(
        self, cursor: str | None, size: int, tools: tuple[dict[str, Any], ...], view: frozenset[str]
    ) -> tuple[orjson.Fragment, str | None]:
        """`page()` as a JSON fragment, encoded once per view (`view`: the names the caller may see, of
        which `tools` is the slice's filtered list): a 1,000-tool page is ~150 KB of JSON, the largest
        cost of a `tools/list`."""
        start, end, next_cursor = _bounds(cursor, size, len(tools))
        key = (view, start, end)
        fragment = self._encoded.get(key)
        if fragment is None:
            if len(self._encoded) >= 32:  # as many distinct views (scope sets) as that are rare: start over
                self._encoded.clear()
            fragment = self._encoded[key] = orjson.Fragment(orjson.dumps(tools[start:end]))
        return fragment, next_cursor


def _task_support(
    tools: list[dict[str, Any]], routes: Mapping[str, Route], offers: Mapping[str, _Offer]
) -> tuple[dict[str, str], list[str]]:
    """The task support of tools whose backend runs 2025-11-25 tasks, and the tools whose task support
    the gateway cannot serve to every client."""
    modes: dict[str, str] = {}
    warnings = []
    for tool in tools:
        execution = tool.get("execution")
        support = execution.get("taskSupport") if isinstance(execution, dict) else None
        if support not in ("optional", "required"):
            continue
        offer = offers.get(routes[tool["name"]].backend)
        if offer is not None and offer.tasks:
            modes[tool["name"]] = support
            if support == "required":
                warnings.append(
                    f"{tool['name']}: runs only as a task: clients with tasks (2025-11-25 tasks, or the 2026-07-28 "
                    f"tasks extension) can call it through the gateway; others are refused"
                )
        elif support == "required":
            warnings.append(
                f"{tool['name']}: runs only as a task, and the gateway cannot relay its backend's tasks (the "
                f"backend declares no 2025-11-25 tasks.requests.tools.call): no client can call it"
            )
    return modes, warnings


def _prompts(
    vs: _VirtualServer, offers: Mapping[str, _Offer], problems: list[str]
) -> tuple[tuple[dict[str, Any], ...], dict[str, Route]]:
    """The exposed prompts (renamed, re-described) and where each goes."""
    listed: list[dict[str, Any]] = []
    routes: dict[str, Route] = {}
    for mapping in vs.prompt_mappings:
        exposed, backend = mapping.exposed_name, mapping.backend_server_path
        routes[exposed] = Route(exposed, backend, mapping.prompt_name)
        offer = offers.get(backend)
        if offer is None:
            problems.append(f"prompt {exposed}: backend {backend} has not answered discovery yet")
            continue
        original = next((p for p in offer.prompts if p.get("name") == mapping.prompt_name), None)
        if original is None:
            problems.append(f"prompt {exposed}: backend {backend} has no prompt named {mapping.prompt_name!r}")
            continue
        listed.append(_exposed(original, exposed, mapping.description_override))
    return tuple(listed), routes


def _destructive(tool: dict[str, Any] | None) -> bool:
    annotations = (tool or {}).get("annotations")
    if not isinstance(annotations, dict):
        return False
    return annotations.get("destructiveHint") is True and annotations.get("readOnlyHint") is not True


def _guards(vs: _VirtualServer, tools: list[dict[str, Any]]) -> dict[str, ToolGuard]:
    """Each mapped tool's guardrails (its own, then the server's), for the tools that have any."""
    listed = {t["name"]: t for t in tools}
    guards = {}
    for m in vs.tool_mappings:
        guard = ToolGuard.build(m.exposed_name, m.guardrails, vs.guardrails, _destructive(listed.get(m.exposed_name)))
        if guard is not None:
            guards[m.exposed_name] = guard
    return guards


def _exposed(original: dict[str, Any], name: str, description: str | None) -> dict[str, Any]:
    """A backend's tool or prompt as the slice shows it: its exposed name, its description override."""
    shown = {**original, "name": name}
    if description is not None:
        shown["description"] = description
    return shown


def _resources(
    vs: _VirtualServer, offers: Mapping[str, _Offer], router: ResourceRouter
) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """The backends' listed resources and templates that the mappings expose, under their exposed URIs.
    A mapped URI a backend does not list can still be read; it is just not listed."""
    resources: list[dict[str, Any]] = []
    templates: list[dict[str, Any]] = []
    mappings = vs.resource_mappings
    for backend in dict.fromkeys(m.backend_server_path for m in mappings):
        offer = offers.get(backend)
        if offer is None:
            continue
        for resource in offer.resources:
            uri = resource.get("uri")
            exposed = router.outbound(backend, uri) if isinstance(uri, str) else None
            if exposed is not None:
                resources.append(_described({**resource, "uri": exposed}, router.inbound(exposed), mappings))
        for template in offer.templates:
            found = router.outbound_template(backend, template["uriTemplate"])
            if found is not None:
                exposed_template, index = found
                override = mappings[index].description_override
                listed = {**template, "uriTemplate": exposed_template}
                templates.append(listed if override is None else {**listed, "description": override})
    return tuple(resources), tuple(templates)


def _described(resource: dict[str, Any], route: ResourceRoute | None, mappings: Sequence[Any]) -> dict[str, Any]:
    """A resource with its mapping's description override (a URI mapping's only: a prefix's or a
    template's would give every resource under it the same description)."""
    if route is not None:
        mapping = mappings[route.mapping]
        if mapping.kind == "uri" and mapping.description_override is not None:
            return {**resource, "description": mapping.description_override}
    return resource


def _bounds(cursor: str | None, size: int, count: int) -> tuple[int, int, str | None]:
    """The page a cursor starts: (start, end, the next page's cursor or None). Cursors are opaque
    offsets; a bad one raises ValueError."""
    start = 0
    if cursor:
        try:
            start = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"Invalid cursor: {cursor!r}") from None
        if start < 0 or start > count:
            raise ValueError(f"Invalid cursor: {cursor!r}")
    end = start + size if size > 0 else count
    next_cursor = None
    if end < count:
        next_cursor = base64.urlsafe_b64encode(f"o:{end}".encode()).decode()
    return start, end, next_cursor

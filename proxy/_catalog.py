"""The backends and what each currently offers: tools, and the resources, resource templates and
prompts of backends that declare those capabilities.

Discovery runs in the background at start, again whenever a backend (re)connects or says one of its
lists changed (`notifications/{tools,resources,prompts}/list_changed`), and on config reload for
backends whose config changed. Listeners are told which backends' offers changed so the slices can
be rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._config import BackendConfig
from ._jsonrpc import Message
from ._mcp import TASKS_EXTENSION
from ._upstream import Backend, BackendError, Headers, create_backend
from ._upstream._h1 import DEFAULT_MAX_RESPONSE_BYTES

logger = logging.getLogger(__name__)

__all__ = ["BackendFactory", "Catalog", "Offer"]

_RETRY_S = (0.5, 1, 2, 5, 10, 30)
_LIST_CHANGED = frozenset({
    "notifications/tools/list_changed", "notifications/resources/list_changed", "notifications/prompts/list_changed",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Offer:
    """A backend's resources, resource templates and prompts (empty for a capability it lacks)."""

    resources: tuple[dict[str, Any], ...] = ()
    templates: tuple[dict[str, Any], ...] = ()
    prompts: tuple[dict[str, Any], ...] = ()
    # Which of resources/subscribe, completion/complete, logging/setLevel the backend serves.
    subscribe: bool = False
    completions: bool = False
    logging: bool = False
    # The backend runs task-augmented tools/call (2025-11-25 tasks: capabilities.tasks.requests.tools.call).
    tasks: bool = False
    # The backend serves the 2026-07-28 tasks extension (capabilities.extensions, SEP-2663).
    task_extension: bool = False


async def discover_offer(backend: Backend) -> Offer:
    """What a connected backend offers besides tools, as its capabilities declare. A list that fails
    is logged and left empty: a backend's tools do not wait on its resources."""
    identity = backend.identity
    capabilities = identity.capabilities if identity is not None else {}
    lists: dict[str, tuple[dict[str, Any], ...]] = {}
    wanted = [("resources/list", "resources", "uri", "resources"), ("prompts/list", "prompts", "name", "prompts"),
              ("resources/templates/list", "resourceTemplates", "uriTemplate", "resources")]  # fmt: skip
    for method, key, name, capability in wanted:
        if capability not in capabilities:
            continue
        try:
            lists[key] = tuple(await backend.list_all(method, key, name))
        except BackendError as exc:
            logger.warning("backend %s: %s failed: %s", backend.path, method, exc.detail)
    resources = capabilities.get("resources")
    tasks = capabilities.get("tasks")
    requests = tasks.get("requests") if isinstance(tasks, dict) else None
    tools = requests.get("tools") if isinstance(requests, dict) else None
    extensions = capabilities.get("extensions")
    return Offer(
        lists.get("resources", ()),
        lists.get("resourceTemplates", ()),
        lists.get("prompts", ()),
        subscribe=isinstance(resources, dict) and resources.get("subscribe") is True,
        completions="completions" in capabilities,
        logging="logging" in capabilities,
        tasks=isinstance(tools, dict) and "call" in tools and (identity is None or identity.era == "legacy"),
        task_extension=identity is not None
        and identity.era == "modern"
        and isinstance(extensions, dict)
        and TASKS_EXTENSION in extensions,
    )


BackendFactory = Callable[[BackendConfig], Backend]


class Catalog:
    def __init__(self, on_change: Callable[[set[str]], None], backend_factory: BackendFactory = create_backend) -> None:
        self.backends: dict[str, Backend] = {}
        # How a configured backend becomes a client: the transports, or (slicewire mock) a recording.
        self._create = backend_factory
        self.tools: dict[str, list[dict[str, Any]] | None] = {}
        self.offers: dict[str, Offer] = {}
        self._on_change = on_change
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self.ready_event = asyncio.Event()
        # Set once every backend has answered discovery at least once, with tools or with an error (a refused
        # connection is an answer): what `slicewire check` waits for.
        self.settled_event = asyncio.Event()
        self._answered: set[str] = set()
        # Given a backend's config, the headers every request to it carries (set by the gateway).
        self.shared_headers: Callable[[BackendConfig], Callable[[], Awaitable[Headers]] | None] = lambda c: None
        self.max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES  # limits.max_response_bytes (set by the gateway)
        # Told (backend path, the backend's URI) when a backend says a resource changed (set by the gateway).
        self.on_updated: Callable[[str, str], None] = lambda path, uri: None
        # Told (backend path, message) of a backend's log message outside any call (set by the gateway).
        self.on_log: Callable[[str, Message], None] = lambda path, msg: None
        # Told (backend path, message) of a backend's notifications/tasks/status (set by the gateway).
        self.on_task_status: Callable[[str, Message], None] = lambda path, msg: None
        # Told (backend path) when a backend says one of its lists changed: other workers and replicas,
        # whose own sessions with it may not hear it, rediscover it too (set by the gateway).
        self.on_list_changed: Callable[[str], None] = lambda path: None

    def versions(self) -> dict[str, str | None]:
        return {p: (b.identity.version if b.identity else None) for p, b in self.backends.items()}

    @property
    def ready(self) -> bool:
        """Every backend has answered discovery at least once."""
        return all(tools is not None for tools in self.tools.values())

    def apply(self, configs: Iterable[BackendConfig]) -> list[Backend]:
        """Reconcile with a (re)loaded config. Returns backends to close (removed or changed)."""
        wanted = {c.path: c for c in configs}
        stale: list[Backend] = []
        for path, backend in list(self.backends.items()):
            if path not in wanted or wanted[path] != backend.config:
                stale.append(self.backends.pop(path))
                self.tools.pop(path, None)
                self.offers.pop(path, None)
                task = self._tasks.pop(path, None)
                if task is not None:
                    task.cancel()
        for path, config in wanted.items():
            if path not in self.backends:
                backend = self._create(config)
                backend.on_notification = self._notification
                backend.on_connected = self._connected
                backend.shared_headers = self.shared_headers(config)
                backend.max_response_bytes = self.max_response_bytes
                self.backends[path] = backend
                self.tools[path] = None
                self._schedule(path)
        self._answered &= wanted.keys() - {b.path for b in stale}
        if self.ready:
            self.ready_event.set()
        else:
            self.ready_event.clear()
        self._settle()
        return stale

    def _settle(self, answered: str | None = None) -> None:
        if answered is not None:
            self._answered.add(answered)
        if self._answered >= self.backends.keys():
            self.settled_event.set()
        else:
            self.settled_event.clear()

    def _schedule(self, path: str) -> None:
        task = self._tasks.get(path)
        if task is not None and not task.done():
            task.cancel()
        self._tasks[path] = asyncio.get_running_loop().create_task(self._discover_loop(path), name=f"discover {path}")

    async def _discover_loop(self, path: str) -> None:
        attempt = 0
        while not self._closing:
            backend = self.backends.get(path)
            if backend is None:
                return
            try:
                tools = await backend.list_tools()
                offer = await discover_offer(backend)
            except BackendError as exc:
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                logger.warning("discovery of %s failed: %s (retrying in %ss)", path, exc.detail, delay)
                attempt += 1
                if self.backends.get(path) is backend:
                    self._settle(path)
                await asyncio.sleep(delay)
                continue
            if self.backends.get(path) is backend:
                changed = self.tools.get(path) != tools or self.offers.get(path) != offer
                self.tools[path], self.offers[path] = tools, offer
                logger.info(
                    "backend %s offers %d tools, %d resources, %d resource templates, %d prompts",
                    path, len(tools), len(offer.resources), len(offer.templates), len(offer.prompts),
                )  # fmt: skip
                self._settle(path)
                if self.ready:
                    self.ready_event.set()
                if changed:
                    self._on_change({path})
            return

    def _connected(self, backend: Backend) -> None:
        # A reconnection (restart, new session) may come with a different tool list.
        if self.tools.get(backend.path) is not None and self.backends.get(backend.path) is backend:
            task = self._tasks.get(backend.path)
            if task is None or task.done():
                self._schedule(backend.path)

    def rediscover(self, path: str) -> None:
        """Ask the backend for its lists again (another process heard that they changed)."""
        if path in self.backends and not self._closing:
            self._schedule(path)

    def heard(self, path: str, msg: Message) -> None:
        """A notification that arrived on a request's stream rather than a standing one."""
        backend = self.backends.get(path)
        if backend is not None:
            self._notification(backend, msg)

    def _notification(self, backend: Backend, msg: Message) -> None:
        if msg.method in _LIST_CHANGED and self.backends.get(backend.path) is backend:
            logger.info("backend %s: %s; rediscovering", backend.path, msg.method)
            self._schedule(backend.path)
            self.on_list_changed(backend.path)
        elif msg.method == "notifications/tasks/status":
            self.on_task_status(backend.path, msg)
        elif msg.method == "notifications/resources/updated" and isinstance(msg.params.get("uri"), str):
            self.on_updated(backend.path, msg.params["uri"])
        elif msg.method == "notifications/message":
            # A backend's log message that belongs to no client's call.
            logger.debug("backend %s logged (%s): %s", backend.path, msg.params.get("level"), msg.params.get("data"))
            self.on_log(backend.path, msg)

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)

"""The running gateway: config, backends, slices, sessions — and what changes them.

One `Gateway` per process. It is built from a validated `Config`, started inside the event loop,
swapped to a new config on reload without dropping sessions, and closed at shutdown. The HTTP
layer (`_endpoint`) and the method handlers (`_handlers`) read from it; nothing else holds state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from proto import SLICEWIRE_VERSION, pb
from proto._access import given_token

from ._access import Policy
from ._bus import Bus, LocalBus, make_bus
from ._catalog import BackendFactory, Catalog
from ._config import PER_USER_MODES, BackendConfig, Config, RecorderConfig, StartError, VirtualServerConfig
from ._creds import Credentials
from ._identity import Authenticator, Identity
from ._jsonrpc import Message, encode_notification
from ._mcp import META_SUBSCRIPTION_ID, TASKS_EXTENSION, log_passes
from ._metrics import Metrics
from ._sessions import (
    WORKER_KEY_ENV,
    KeyRing,
    LiveSession,
    SessionKeyError,
    Sessions,
    explicit_keys,
    parse_keys,
)
from ._slice import Route, Slice
from ._state import StateDB, StateDBError
from ._subscriptions import Subscriptions
from ._tasks import Tasks
from ._upstream import BackendError, Exchange
from ._vault import Vault, VaultKeyError, load_key
from .recording import SpanEmitter
from .recording._record import Record, session_trace_id

logger = logging.getLogger(__name__)

__all__ = ["Gateway", "Parked", "VirtualServer"]

GATEWAY_VERSION = SLICEWIRE_VERSION
_SWEEP_S = 30.0


@dataclass(frozen=True)
class VirtualServer:
    """What one endpoint serves right now: its config, its current slice, who may use what."""

    config: VirtualServerConfig
    slice: Slice
    policy: Policy
    # The configs of the backends its mappings use (for credentials and `x-mcp-headers`).
    backends: tuple[BackendConfig, ...] = ()
    # JWT audiences naming this server: `auth.public_url` and its resource URL (none without a public URL).
    audiences: frozenset[str] = frozenset()

    @property
    def server_info(self) -> dict[str, Any]:
        return {"name": self.config.server_name, "version": GATEWAY_VERSION}

    def tool_route(self, name: str, identity: Identity | None) -> Route | None:
        """Where an exposed tool goes for this caller; None when it does not exist for them (outside
        the slice, or a tool they may not use). Pure: no I/O, nothing asked of a backend."""
        sliced = self.slice
        route = sliced.routes.get(name)
        if route is None or self.policy.open or name in self.policy.view(identity, sliced.tools, sliced.routes).names:
            return route
        return None

    @cached_property
    def unserved(self) -> dict[str, frozenset[str]]:
        """Methods of the capabilities this server does not advertise, by client era: answered -32601,
        never routed."""
        config, sliced = self.config, self.slice
        methods: set[str] = set()
        if not config.prompt_mappings:
            methods |= {"prompts/list", "prompts/get"}
        if not config.resource_mappings:
            methods |= {"resources/list", "resources/templates/list", "resources/read"}
        if not sliced.subscribe:
            methods |= {"resources/subscribe", "resources/unsubscribe"}
        if not sliced.completions:
            methods.add("completion/complete")
        legacy, modern = set(methods), set(methods)
        if not sliced.tasks:
            legacy |= {"tasks/get", "tasks/result", "tasks/cancel", "tasks/list"}
        if not sliced.task_extension:
            modern |= {"tasks/get", "tasks/update", "tasks/cancel"}
        return {"legacy": frozenset(legacy), "modern": frozenset(modern)}

    def capabilities(self, era: str = "legacy") -> dict[str, Any]:
        """Only what this virtual server serves: the kinds it maps, completion when a backend behind them
        completes, logging (the gateway takes the level and relays backends' messages), and for
        tasks when its tools' backends run them (2025-11-25 tasks, or the 2026-07-28 extension, bridged
        to either kind of backend)."""
        config, sliced = self.config, self.slice
        capabilities: dict[str, Any] = {}
        if config.tool_mappings:
            capabilities["tools"] = {"listChanged": True}
        if config.resource_mappings:
            capabilities["resources"] = {"listChanged": True, **({"subscribe": True} if sliced.subscribe else {})}
        if config.prompt_mappings:
            capabilities["prompts"] = {"listChanged": True}
        if sliced.completions:
            capabilities["completions"] = {}
        capabilities["logging"] = {}
        if sliced.tasks and era == "legacy":
            capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        if sliced.task_extension and era == "modern":
            capabilities["extensions"] = {TASKS_EXTENSION: {}}
        return capabilities


@dataclass
class Parked:
    """A backend call waiting for a modern client to retry with `inputResponses` (MRTR)."""

    exchange: Exchange
    virtual_server: str
    target: str  # the request it answers: "tools/call <tool>", "prompts/get <prompt>", ...
    # key in inputRequests -> (the backend's request id awaiting that answer, its method, its params)
    pending: dict[str, Any]
    expires: float
    subject: str = ""  # only the caller who started the call may resume it
    # How the final result is rewritten for the client (exposed resource URIs), as when the call began.
    shape: Any = None  # a _handlers.Shaper


class Listener:
    """A modern client's `subscriptions/listen` stream and the notification types it was granted."""

    def __init__(self, subscription_id: Any, granted: dict[str, Any] | None = None) -> None:
        self.subscription_id = subscription_id
        self.granted = granted or {}
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()


# Which `subscriptions/listen` filter field asks for which list's changes.
LIST_FILTERS = {"tools": "toolsListChanged", "resources": "resourcesListChanged", "prompts": "promptsListChanged"}


def _sent_notification(session_id: str, virtual_server: str, method: str, message: bytes) -> Record:
    """A message the gateway sends on a session's own stream: a span in that session's trace."""
    now = time.time_ns()
    return Record(now, [], now, end_ns=now, trace_id=session_trace_id(session_id),
                  direction=pb.DIRECTION_GATEWAY_TO_CLIENT, method=method, request=message, era="legacy",
                  session=session_id, virtual_server=virtual_server)  # fmt: skip


class Gateway:
    def __init__(self, config: Config, backend_factory: BackendFactory | None = None) -> None:
        self.config = config
        # Legacy sessions (sealed ids; the keys are settled at start) and their parts in this process.
        self.sessions = Sessions(KeyRing([os.urandom(32)]), config.sessions.max_age_s)
        self.live: dict[str, LiveSession] = {}
        self.bus: Bus = LocalBus()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Loads the config file again and applies it (set by the app): what a "reload" on the bus runs.
        self.reload_from_file: Callable[[], Coroutine[Any, Any, bool]] | None = None
        # Retries of parked calls crossing processes (_resume): the asker's inboxes and the holder's
        # responders by request id, and what resumes a call for another process (set by the app).
        self.forwarded: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.forwarding: dict[str, Any] = {}
        self.on_resume: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None
        self._keys_from_db = False
        self._keys_checked = 0.0
        self.parked: dict[str, Parked] = {}
        # Approvals (sealed requestStates, _approval) already used here or elsewhere -> when they expire.
        self.used_approvals: dict[str, float] = {}
        self.listeners: dict[str, set[Listener]] = {}
        self.servers: dict[str, VirtualServer] = {}
        # endpoint path ("/virtual/x/mcp") -> virtual server path
        self.endpoints: dict[str, str] = {}
        self.catalog = (
            Catalog(self._tools_changed) if backend_factory is None else Catalog(self._tools_changed, backend_factory)
        )
        self.catalog.max_response_bytes = config.limits.max_response_bytes
        # Which clients asked for updates of which backend resources; the tasks relayed, and whose they are.
        self.subscriptions = Subscriptions()
        self.tasks = Tasks()
        self.catalog.on_task_status = self._task_status
        self.catalog.on_updated = self._resource_updated
        self.catalog.on_log = self._backend_logged
        self.catalog.on_list_changed = lambda path: self.bus.publish({"t": "rediscover", "b": path})
        self._sweeper: asyncio.Task[None] | None = None
        # The flight recorder's emitter; None when `recorder.target` is not configured.
        self.emitter: SpanEmitter | None = None
        self.started_at = time.time()
        self.reloads = 0
        # Auth: the state DB (gateway tokens, sealed credentials), inbound identities, outbound credentials.
        self.state: StateDB | None = None
        self.auth = Authenticator(config.auth, None)
        self.creds = Credentials(config, None, None)
        # /metrics; None when `metrics.enabled` is false. `in_flight`: client requests being served.
        self.in_flight = 0
        self.metrics: Metrics | None = Metrics(self._live_figures) if config.metrics.enabled else None

    def _live_figures(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "recorder": self.emitter.counters if self.emitter is not None else None,
            "backends": dict(self.catalog.tools),
            "sessions": len(self.live),
            "bus": dict(self.bus.counts),
        }

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.recorder.target is not None:
            self.emitter = SpanEmitter(self.config.recorder, token=_recorder_token(self.config.recorder))
            await self.emitter.start()
            logger.info("recording spans to %s", self.config.recorder.target)
        self._start_auth()
        self._start_sessions()
        self.bus = make_bus(self.config.sessions.channel)
        await self.bus.start(self._on_bus)
        self.catalog.apply(self.config.backends)
        self._rebuild(notify=False)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _start_auth(self) -> None:
        """Open the state DB and the vault when the config needs them; fail fast with a clear message."""
        config = self.config
        needs_state = (
            "://" in config.auth.state_db  # a shared database: sessions' keys live there too
            or any(not vs.public for vs in config.virtual_servers)
            or any(b.auth.mode in PER_USER_MODES for b in config.backends)
            or bool(config.auth.admins)
        )
        if needs_state and self.state is None:
            try:
                self.state = StateDB(config.auth.state_db)
            except StateDBError as exc:
                raise StartError(str(exc)) from None
        vault = None
        if any(b.auth.mode in ("per_user_key", "oauth2") for b in config.backends):
            try:
                vault = Vault(load_key(config.auth))
            except VaultKeyError as exc:
                raise StartError(str(exc)) from None
        on_secret = self.emitter.add_secret if self.emitter is not None else (lambda value: None)
        self.auth = Authenticator(config.auth, self.state)
        self.creds = Credentials(config, self.state, vault, on_secret)
        self.catalog.shared_headers = self.creds.shared
        for warning in self.creds.startup_warnings():
            logger.warning("%s", warning)

    def _start_sessions(self) -> None:
        """The session keys: the operator's, else the state DB's (shared by the replicas on it), else
        those of `serve --workers`, else this process's own."""
        sessions = self.config.sessions
        try:
            keys = explicit_keys(sessions.keys_file)
            if keys is None and self.state is not None:
                keys = self.state.session_keys(sessions.rotate_s, sessions.max_age_s)
                self._keys_from_db = True
            if keys is None and os.environ.get(WORKER_KEY_ENV):
                keys = parse_keys(os.environ[WORKER_KEY_ENV], f"${WORKER_KEY_ENV}")
        except SessionKeyError as exc:
            raise StartError(str(exc)) from None
        if keys is not None:
            self.sessions.rekey(KeyRing(keys))
        self.sessions.on_unknown_key = self.refresh_keys

    def refresh_keys(self) -> None:
        """Re-read the state DB's session keys (rotating them when due), at most once a second."""
        now = time.monotonic()
        if not self._keys_from_db or self.state is None or now - self._keys_checked < 1.0:
            return
        self._keys_checked = now
        sessions = self.config.sessions
        keys = self.state.session_keys(sessions.rotate_s, sessions.max_age_s)
        if keys != self.sessions.ring.keys:
            self.sessions.rekey(KeyRing(keys))

    # --- what crosses processes ----------------------------------------------------------------------

    def use_once(self, token: str, until: float) -> bool:
        """Take a one-use token (an approval): False when it was taken before, here or (as told over the
        bus) in another process."""
        if token in self.used_approvals:
            return False
        self.used_approvals[token] = until
        self.bus.publish({"t": "used", "k": token, "until": until})
        return True

    def to_stream(self, live: LiveSession, message: bytes) -> None:
        """A message for the session's GET stream: there if this process holds it, else to the one that does."""
        if live.stream is not None:
            live.stream.put_nowait(message)
        else:
            self.bus.publish({"t": "stream", "s": live.id, "m": message.decode()})

    def _on_bus(self, message: dict[str, Any]) -> None:
        """What another process could not finish: act if the part it names is in this one (the kinds of
        message: proxy/_bus.py)."""
        kind, sid = message.get("t"), message.get("s")
        if kind == "rediscover" and isinstance(message.get("b"), str):
            self.catalog.rediscover(message["b"])
            return
        if kind == "resume" and self.on_resume is not None and message.get("token") in self.parked:
            self._spawn(self.on_resume(message))
            return
        if kind == "resumed" and message.get("rid") in self.forwarded:
            self.forwarded[message["rid"]].put_nowait(message)
            return
        if kind == "gone" and message.get("rid") in self.forwarding:
            self.forwarding[message["rid"]].gone.set()
            return
        if kind == "used" and isinstance(message.get("k"), str):
            self.used_approvals[message["k"]] = float(message.get("until", 0))
            return
        if kind == "reload" and self.reload_from_file is not None:
            # Another process changed a virtual server through the admin API (files this one may not
            # hear of: another host, a network file system, --no-reload).
            self._spawn(self.reload_from_file())
            return
        if isinstance(sid, str):
            self._on_session_message(kind, sid, message)

    def _on_session_message(self, kind: Any, sid: str, message: dict[str, Any]) -> None:
        """A bus message about one 2025-11-25 session: for the part of it this process holds, if any."""
        if kind == "ended":
            self.sessions.ended(sid, float(message.get("until", 0)))
            live = self.live.pop(sid, None)
            if live is not None:
                self._spawn(self._forget(live))
            return
        live = self.live.get(sid)
        logger.debug("bus: %s for session %s (%s here)", kind, sid[:12], "held" if live is not None else "not held")
        if live is None and kind == "level" and isinstance(message.get("vs"), str):
            live = self.live[sid] = LiveSession(sid, message["vs"])
        if live is None:
            return
        if kind == "cancel":
            exchange = live.cancel(message.get("id"))
            if exchange is not None:
                self._spawn(exchange.close())
        elif kind == "unsubscribe" and isinstance(message.get("b"), str) and isinstance(message.get("u"), str):
            self._spawn(self.unwatch(message["b"], message["u"], sid))
        elif kind == "answer" and isinstance(message.get("r"), dict):
            live.answer(message.get("id"), message["r"])
        elif kind == "stream" and live.stream is not None and isinstance(message.get("m"), str):
            live.stream.put_nowait(message["m"].encode())
        elif kind == "level":
            live.log_level = message.get("level") if isinstance(message.get("level"), str) else None

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run what a bus message asks for, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self, live: LiveSession) -> None:
        await live.close()
        await self.release(live.id)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.bus.close()
        for live in list(self.live.values()):
            await live.close()
        for parked in list(self.parked.values()):
            await parked.exchange.close()
        self.tasks.close()
        for listeners in self.listeners.values():
            for listener in listeners:
                listener.queue.put_nowait(b"")
        await self.catalog.close()
        await self.auth.close()
        await self.creds.close()
        if self.state is not None:
            self.state.close()
        if self.emitter is not None:
            await self.emitter.close()

    async def reload(self, config: Config) -> None:
        """Serve a new config. Sessions stay open; backends whose config is unchanged stay connected."""
        old = self.config
        self.config = config
        old_auth, old_creds = self.auth, self.creds
        self._start_auth()
        await old_auth.close()
        await old_creds.close()
        self.catalog.max_response_bytes = config.limits.max_response_bytes  # for backends (re)made by this reload
        stale = self.catalog.apply(config.backends)
        for backend in self.catalog.backends.values():  # kept backends: the new credential layer's headers
            backend.shared_headers = self.creds.shared(backend.config)
        self._rebuild(notify=True, previous=old)
        if not config.metrics.enabled:
            self.metrics = None
        elif self.metrics is None:
            self.metrics = Metrics(self._live_figures)
        self.reloads += 1
        for backend in stale:
            with contextlib.suppress(Exception):
                await backend.close()
        logger.info(
            "config reloaded: %d backends, %d virtual servers", len(config.backends), len(config.virtual_servers)
        )

    # --- slices ----------------------------------------------------------------------------------

    def _tools_changed(self, backends: set[str]) -> None:
        self._rebuild(notify=True)

    def _rebuild(self, notify: bool, previous: Config | None = None) -> None:
        versions = self.catalog.versions()
        servers: dict[str, VirtualServer] = {}
        for vs in self.config.virtual_servers:
            if not vs.is_enabled:
                continue
            paths = vs.backend_paths
            backends = tuple(b for b in self.config.backends if b.path in paths)
            policy = Policy.build(vs, self.config.auth.admins)
            public = self.config.auth.public_url
            audiences = frozenset({public, f"{public}{vs.path}/mcp"}) if public is not None else frozenset()
            sliced = Slice.build(vs, self.catalog.tools, versions, self.catalog.offers)
            servers[vs.path] = VirtualServer(vs, sliced, policy, backends, audiences)
        old = self.servers
        self.servers = servers
        self.endpoints = {f"{path}/mcp": path for path in servers}
        if not notify:
            return
        for path, server in servers.items():
            before = old.get(path)
            now = server.slice
            if before is None or before.slice.tools != now.tools:
                self.notify_list_changed(path)
            if before is not None and server.config.prompt_mappings and before.slice.prompts != now.prompts:
                self.notify_list_changed(path, "prompts")
            changed = before is not None and (before.slice.resources, before.slice.templates) != (
                now.resources, now.templates)  # fmt: skip
            if server.config.resource_mappings and changed:
                self.notify_list_changed(path, "resources")

    def notify_list_changed(self, path: str, kind: str = "tools") -> None:
        """Tell every client of a virtual server that its list of tools (prompts, resources) changed."""
        method = f"notifications/{kind}/list_changed"
        message = encode_notification(method)
        count = 0
        for live in self.live.values():
            if live.stream is not None and live.virtual_server == path:
                live.stream.put_nowait(message)
                count += 1
                if self.emitter is not None:
                    self.emitter.emit(_sent_notification(live.id, path, method, message))
        wanted = LIST_FILTERS[kind]
        for listener in self.listeners.get(path, ()):
            if listener.granted.get(wanted):
                meta = {"_meta": {META_SUBSCRIPTION_ID: listener.subscription_id}}
                listener.queue.put_nowait(encode_notification(method, meta))
                count += 1
        if count:
            logger.info("told %d client stream(s) of %s that its %s changed", count, path, kind)

    # --- resource subscriptions ---------------------------------------------------------------------

    def _resource_updated(self, backend: str, uri: str) -> None:
        told = self.subscriptions.updated(backend, uri)
        logger.debug("backend %s: %s updated; told %d subscriber(s)", backend, uri, told)

    def _backend_logged(self, backend: str, msg: Message) -> None:
        """A backend's log message outside any call: to the legacy sessions that asked for logs (sent
        logging/setLevel) on a virtual server mapping that backend, at their level and above. The
        2026-07-28 era has no stream for it (subscriptions/listen carries no log filter)."""
        level = msg.params.get("level")
        message: bytes | None = None
        for live in self.live.values():
            if live.stream is None or live.log_level is None or not log_passes(level, live.log_level):
                continue
            server = self.servers.get(live.virtual_server)
            if server is None or backend not in server.config.backend_paths:
                continue
            if message is None:
                message = encode_notification("notifications/message", msg.params)
            live.stream.put_nowait(message)

    def _task_status(self, backend: str, msg: Message) -> None:
        """A backend's notifications/tasks/status outside a call: to the session that created the task."""
        ref = self.tasks.of_backend(backend, msg.params.get("taskId"))
        live = self.live.get(ref.session) if ref is not None and ref.session is not None else None
        if ref is None or ref.session is None:
            return
        message = encode_notification("notifications/tasks/status", {**msg.params, "taskId": ref.exposed})
        if live is not None:
            self.to_stream(live, message)
        else:
            self.bus.publish({"t": "stream", "s": ref.session, "m": message.decode()})

    async def unwatch(self, backend: str, uri: str, subscriber: Any) -> bool:
        """Forget one subscription of this process; unsubscribe at the backend when it was the URI's last.
        False when this process had no such subscription."""
        if not self.subscriptions.has(backend, uri, subscriber):
            return False
        if self.subscriptions.remove(backend, uri, subscriber):
            client = self.catalog.backends.get(backend)
            if client is not None:
                try:
                    await client.unsubscribe(uri)
                except BackendError as exc:
                    logger.debug("unsubscribing %s from %s failed: %s", backend, uri, exc.detail)
        return True

    async def release(self, subscriber: Any) -> None:
        """A client session or listen stream ended: forget its subscriptions, and unsubscribe at the
        backends from the URIs nobody else wants."""
        for path, uri in self.subscriptions.drop(subscriber):
            backend = self.catalog.backends.get(path)
            if backend is None:
                continue
            try:
                await backend.unsubscribe(uri)
            except BackendError as exc:
                logger.debug("unsubscribing %s from %s failed: %s", path, uri, exc.detail)

    # --- housekeeping ----------------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_S)
            now = time.monotonic()
            for token, parked in list(self.parked.items()):
                if parked.expires < now:
                    del self.parked[token]
                    await parked.exchange.close()
            wall = time.time()
            self.used_approvals = {token: until for token, until in self.used_approvals.items() if until > wall}
            self.tasks.sweep()
            self.sessions.sweep()
            self.refresh_keys()
            idle = now - self.config.limits.session_idle_s
            for sid, live in list(self.live.items()):
                gone = self.sessions.get(sid) is None  # expired, or ended
                if gone or (live.last_seen < idle and live.stream is None and not live.in_flight):
                    del self.live[sid]
                    await self._forget(live)

    def status(self) -> dict[str, Any]:
        """Backend and slice health, for /readyz and `slicewire check`."""
        backends = {}
        for path, backend in self.catalog.backends.items():
            identity = backend.identity
            offer = self.catalog.offers.get(path)
            backends[path] = {
                "transport": backend.config.transport,
                "connected": identity is not None,
                "discovered": self.catalog.tools.get(path) is not None,
                "era": identity.era if identity else None,
                "protocol_version": identity.protocol_version if identity else None,
                "server": identity.server_info if identity else None,
                "tools": len(self.catalog.tools.get(path) or []),
                "resources": len(offer.resources) if offer is not None else 0,
                "resource_templates": len(offer.templates) if offer is not None else 0,
                "prompts": len(offer.prompts) if offer is not None else 0,
                "restarts": getattr(backend, "restarts", 0),  # stdio processes restarted after exiting
                "error": backend.last_error,
            }
        servers = {
            path: {"tools": [t["name"] for t in vs.slice.tools], "problems": list(vs.slice.problems)}
            for path, vs in self.servers.items()
        }
        recorder = None
        if self.emitter is not None:
            recorder = {
                "target": self.config.recorder.target,
                "helper_pid": self.emitter.helper_pid,
                **self.emitter.counters,
            }
        return {
            "ready": self.catalog.ready,
            "pid": os.getpid(),  # which worker answered (`serve --workers N`)
            "started_at": self.started_at,
            "config_reloads": self.reloads,
            "backends": backends,
            "virtual_servers": servers,
            "recorder": recorder,
        }


def _recorder_token(config: RecorderConfig) -> str | None:
    """The recorder's token from recorder.token_file or $SLICEWIRE_RECORDER_TOKEN; None leaves the shipping
    helper to find the token file a recorder on this machine keeps."""
    try:
        token: str | None = given_token(config.token_file)
    except ValueError as exc:
        raise StartError(f"recorder.token_file: {exc}") from None
    return token

"""A 2026-07-28 client's retry of a multi round-trip request that reaches another process than the one
whose backend call waits for it.

When a 2025-11-25 backend asks the client something mid-call (elicitation, sampling), the gateway
answers the 2026-07-28 client InputRequiredResult and keeps the backend's call open in its process
(`_relay._park`). The client's retry (its `inputResponses` and the `requestState`) may reach any worker
or replica; one that does not hold the call asks the others over the bus:

    asker   {"t": "resume", "rid", "token", ...the retry}       every process
    holder  {"t": "resumed", "rid", "claimed": true}            the asker: someone has it
    holder  {"t": "resumed", "rid", "event": <JSON-RPC message>} progress and the like, as they come
    holder  {"t": "resumed", "rid", "status", "m": <answer>}     the answer; or "end": no answer
    asker   {"t": "gone", "rid"}                                 the client hung up: the call is closed

The holder resumes the call as if the retry had reached it, its answer going back over the bus; the
asker writes it to its client. No process claims the token within `CLAIM_S`: it is unknown or expired,
and the asker says so as before. The flight recorder keeps the retry in the asker's trace; the upstream
part of the resumed call is not recorded in either (a known gap: docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import secrets
import time
from typing import Any

from ._call import Call
from ._gateway import Gateway
from ._identity import Identity
from ._jsonrpc import Message, encode_error
from ._mcp import BACKEND_ERROR
from ._observed import Observed
from ._relay import resume
from ._responder import Responder
from .recording._record import Hop, Record

__all__ = ["CLAIM_S", "resume_anywhere", "serve_resume"]

logger = logging.getLogger(__name__)

CLAIM_S = 2.0  # how long an asker waits for a process to claim the token


async def resume_anywhere(call: Call, msg: Message, target: str, token: str, client_token: Any) -> None:
    """Resume the call `token` names: here when this process holds it, else wherever one does."""
    if token not in call.gateway.parked and await _resume_elsewhere(call, msg, target, token, client_token):
        return
    await resume(call, msg, target, token, client_token)


async def _resume_elsewhere(call: Call, msg: Message, target: str, token: str, client_token: Any) -> bool:
    """Ask the other processes to resume the call `token` names; True once one did (the answer, or the
    end of the exchange, is written to this client), False when none holds it."""
    gateway = call.gateway
    if not gateway.bus.shared:
        return False
    rid = secrets.token_hex(8)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    gateway.forwarded[rid] = inbox
    try:
        gateway.bus.publish({
            "t": "resume", "rid": rid, "token": token, "target": target, "vs": call.server.config.path,
            "subject": call.subject, "version": call.protocol_version, "caps": call.client_capabilities,
            "id": msg.id, "params": msg.params, "client_token": client_token,
        })  # fmt: skip
        try:
            claimed = await asyncio.wait_for(inbox.get(), CLAIM_S)
        except TimeoutError:
            return False
        if not claimed.get("claimed"):
            return False

        async def hang_up() -> None:
            gateway.bus.publish({"t": "gone", "rid": rid})

        call.responder.watch(hang_up)
        quiet_s = gateway.config.limits.input_required_ttl_s  # the holder died, or lost the bus
        while True:
            try:
                item = await asyncio.wait_for(inbox.get(), quiet_s)
            except TimeoutError:
                await call.responder.json(200, encode_error(msg.id, BACKEND_ERROR, (
                    f"The gateway process resuming this call stopped answering for {quiet_s:.0f} s: call the "
                    "tool again")))  # fmt: skip
                return True
            if isinstance(item.get("event"), str):
                await call.responder.event(item["event"].encode())
            elif isinstance(item.get("m"), str):
                for hop in _hops_in(item.get("hops")):
                    call.observed.record.add(hop)
                await call.responder.json(int(item.get("status", 200)), item["m"].encode())
                return True
            elif item.get("end"):
                await call.responder.withhold()
                return True
    finally:
        gateway.forwarded.pop(rid, None)


class _Forwarding(Responder):
    """The holder's responder: what it writes goes over the bus to the asker, which writes it to the client."""

    def __init__(self, gateway: Gateway, rid: str, record: Record) -> None:
        super().__init__(self._nowhere, self._until_gone)
        self.gateway, self.rid, self.record = gateway, rid, record
        self.gone = asyncio.Event()

    async def _nowhere(self, message: Any) -> None:
        raise AssertionError("a forwarding responder sends over the bus")

    async def _until_gone(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def _publish(self, **what: Any) -> None:
        self.gateway.bus.publish({"t": "resumed", "rid": self.rid, **what})

    async def json(self, status: int, body: bytes) -> None:
        self.sent_body, self.status = body, status
        if not self.disconnected.is_set() and not self.finished:
            self._publish(status=status, m=body.decode(), hops=_hops_out(self.record))
        self.started = self.finished = True
        self._stop_watch()

    async def start_stream(self) -> None:
        self.started = self.streaming = True

    async def event(self, data: bytes) -> None:
        self.started = self.streaming = True
        if not self.disconnected.is_set():
            self._publish(event=data.decode())

    async def comment(self) -> None:
        pass

    async def end(self) -> None:
        if not self.finished:
            self.finished = True
            self._publish(end=True)
        self._stop_watch()


async def serve_resume(gateway: Gateway, message: dict[str, Any]) -> None:
    """The holder's side: resume the call for the asker, if this process holds it."""
    token, rid = message.get("token"), message.get("rid")
    server = gateway.servers.get(str(message.get("vs")))
    if not isinstance(token, str) or not isinstance(rid, str) or token not in gateway.parked or server is None:
        return
    gateway.bus.publish({"t": "resumed", "rid": rid, "claimed": True})
    logger.debug("resuming %s for another process (%s)", message.get("target"), rid)
    record = Record.begin([], time.time_ns())  # collects the hops, which go back to the asker's record
    responder = _Forwarding(gateway, rid, record)
    gateway.forwarding[rid] = responder
    subject = str(message.get("subject") or "")
    # Who asked was authenticated by the asker; `resume` checks it is who the call was parked for.
    identity = Identity(subject, "forwarded", frozenset(), frozenset(), None) if subject else None
    caps = message.get("caps")
    call = Call(gateway, server, "modern", str(message.get("version")), responder, Observed(record),
                client_capabilities=caps if isinstance(caps, dict) else {}, identity=identity)  # fmt: skip
    target = str(message.get("target"))
    method = target.split(" ", 1)[0]  # "tools/call echo" -> tools/call
    raw = {"jsonrpc": "2.0", "id": message.get("id"), "method": method, "params": message.get("params")}
    msg = Message("request", raw, message.get("id"), method)
    try:
        await resume(call, msg, target, token, message.get("client_token"))
    finally:
        if not responder.finished:
            await responder.end()
        gateway.forwarding.pop(rid, None)


# --- hops across the bus ----------------------------------------------------------------------------

_HOP_FIELDS = [field.name for field in dataclasses.fields(Hop)]


def _hops_out(record: Record) -> list[dict[str, Any]]:
    return [{name: _plain(getattr(hop, name)) for name in _HOP_FIELDS} for hop in record.hops or ()]


def _hops_in(items: Any) -> list[Hop]:
    hops = []
    for item in items if isinstance(items, list) else ():
        try:
            hops.append(Hop(**{name: _typed(item.get(name)) for name in _HOP_FIELDS if name in item}))
        except (TypeError, AttributeError, ValueError):
            logger.warning("a resumed call's hop came back unreadable; left out of the trace")
    return hops


def _plain(value: Any) -> Any:
    """JSON for the bus: bytes as {"b64": ...}, tuples as lists (as they become crossing the helper's pipe)."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value

"""Human approval of a tool call, asked of the calling user through MCP elicitation before the call
is forwarded (guardrails `approval: required`, or `destructive` for tools annotated destructiveHint).

    2025-11-25  the gateway sends `elicitation/create` on the request's SSE stream and waits for the
                client's answer (as it relays a backend's questions)
    2026-07-28  the gateway answers InputRequiredResult asking `approval`; the client's retry with
                `inputResponses` and the `requestState` goes on if the same caller approved the same call

The 2026-07-28 `requestState` is the pending approval itself — virtual server, tool, a digest of the
exact arguments, caller, expiry — sealed with the session keys (`_sessions`), so the retry may reach
any worker or replica. Each is used once: the process that takes it remembers it until it expires and
tells the others over the bus.

The user is shown the exact call (tool and arguments) and answers a form with one boolean,
`approve`. Anything but accept + approve: true refuses the call, and so does a client that cannot be
asked (no elicitation capability): a JSON-RPC error saying so, never a silent drop.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from ._call import Call
from ._guardrails import Verdict
from ._jsonrpc import INVALID_PARAMS, Message, encode_error, encode_result
from ._mcp import MISSING_CLIENT_CAPABILITY
from ._relay import ask_client, refusal

__all__ = ["APPROVAL_PREFIX", "approve"]

APPROVAL_PREFIX = "sw-approval."
_KEY = "approval"  # the inputRequests key a modern client answers
_RULE = "approval"
_PURPOSE = b"slicewire approval v1"  # a session id never opens as an approval, nor the reverse


def elicitation(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The question: the exact call, and a form with one boolean."""
    shown = orjson.dumps(arguments, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return {
        "mode": "form",
        "message": f"An agent wants to call the tool {name!r} with these arguments. Allow it?\n\n{shown}",
        "requestedSchema": {
            "type": "object",
            "properties": {"approve": {"type": "boolean", "title": f"Allow {name}",
                                       "description": "Only this call, with exactly these arguments"}},
            "required": ["approve"],
        },
    }  # fmt: skip


def _digest(name: str, arguments: dict[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps([name, arguments], option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def _approved(answer: Any) -> bool:
    if not isinstance(answer, dict):
        return False
    content = answer.get("content")
    return answer.get("action") == "accept" and isinstance(content, dict) and content.get("approve") is True


async def approve(call: Call, msg: Message, name: str, arguments: dict[str, Any]) -> bool:
    """True when the user approved this call and it may be forwarded; False when it was answered
    here (refused, or a modern client asked to approve it)."""
    if call.era == "modern":
        return await _modern(call, msg, name, arguments)
    if call.live is None or refusal(call.client_capabilities, "elicitation/create") is not None:
        return await _cannot_ask(call, msg, name)
    answer = await ask_client(call, "elicitation/create", elicitation(name, arguments), None)
    return await _decided(call, msg, name, answer.get("result"))


async def _modern(call: Call, msg: Message, name: str, arguments: dict[str, Any]) -> bool:
    state = msg.params.get("requestState")
    gateway = call.gateway
    if isinstance(state, str) and state.startswith(APPROVAL_PREFIX):
        facts = gateway.sessions.unseal(state.removeprefix(APPROVAL_PREFIX), _PURPOSE)
        # Presented once, used up: a retry for another call spends it too.
        fresh = facts is not None and len(facts) == 5 and gateway.use_once(state, facts[4])
        expected = [call.server.config.path, name, _digest(name, arguments), call.subject]
        if not fresh or facts is None or facts[:4] != expected or facts[4] < time.time():
            call.observed.guarded([Verdict(_RULE, "deny", "requestState unknown, expired or for another call")])
            await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, (
                "The approval in requestState is unknown, expired, or for another call (approval covers one "
                "call with exactly the arguments shown): call the tool again")))  # fmt: skip
            return False
        responses = msg.params.get("inputResponses")
        answer = responses.get(_KEY) if isinstance(responses, dict) else None
        return await _decided(call, msg, name, answer)
    if "elicitation" not in call.client_capabilities:
        return await _cannot_ask(call, msg, name)
    expires = round(time.time() + gateway.config.limits.input_required_ttl_s, 3)
    facts = [call.server.config.path, name, _digest(name, arguments), call.subject, expires]
    token = APPROVAL_PREFIX + gateway.sessions.seal(facts, _PURPOSE)
    call.observed.guarded([Verdict(_RULE, "ask", name)])
    request = {"method": "elicitation/create", "params": elicitation(name, arguments)}
    result = {"resultType": "input_required", "inputRequests": {_KEY: request}, "requestState": token}
    await call.responder.json(200, encode_result(msg.id, call.stamp(result)))
    return False


async def _decided(call: Call, msg: Message, name: str, answer: Any) -> bool:
    if _approved(answer):
        call.observed.guarded([Verdict(_RULE, "approve", name)])
        return True
    action = answer.get("action") if isinstance(answer, dict) else None
    call.observed.guarded([Verdict(_RULE, "decline", str(action or "no answer"))])
    told = (f"The user did not approve this call of {name!r} ({action or 'no answer'}). Do not retry it "
            "unchanged; ask the user what they want instead.")  # fmt: skip
    await call.responder.json(200, encode_error(msg.id, INVALID_PARAMS, told, {"guardrail": _RULE}))
    return False


async def _cannot_ask(call: Call, msg: Message, name: str) -> bool:
    call.observed.guarded([Verdict(_RULE, "deny", "the client cannot elicit")])
    told = (f"The tool {name!r} needs the user's approval for each call, and this client cannot ask the "
            "user (it did not declare the elicitation capability): use a client that can, or ask an admin")  # fmt: skip
    status = 400 if call.era == "modern" else 200
    await call.responder.json(status, encode_error(msg.id, MISSING_CLIENT_CAPABILITY, told, {"guardrail": _RULE}))
    return False

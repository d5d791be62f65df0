"""Guardrail hooks the tests load by module path (`tests.support.hooks:NAME`)."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.guardrails import Allow, CallContext, Deny, Rewrite


def cap_limit(ctx: CallContext, name: str, arguments: dict[str, Any]) -> Allow | Rewrite:
    """At most 5 results, whatever the agent asks for."""
    if int(arguments.get("limit", 0)) > 5:
        return Rewrite({**arguments, "limit": 5})
    return Allow()


async def slow_or_failing(ctx: CallContext, name: str, arguments: dict[str, Any]) -> Allow | Deny:
    """Never answers for query "slow" (the gateway must cut it off at its budget), raises for "boom",
    refuses "prod" for anonymous callers."""
    query = arguments.get("query")
    if query == "slow":
        await asyncio.Event().wait()  # nothing sets it: only the budget's cancellation ends this
    if query == "boom":
        raise RuntimeError("the hook's own bug")
    if query == "prod" and not ctx.subject:
        return Deny(f"anonymous callers of {ctx.virtual_server} may not search prod: sign in")
    return Allow()


def not_a_decision(ctx: CallContext, name: str, arguments: dict[str, Any]) -> Any:
    return "yes"

"""Setup and teardown hooks: bring the backends to a known state before a replay, and clean up after.

    --setup 'psql -f fixtures.sql'                        a shell command (must exit 0)
    --setup 'call:reset_db {"seed": 42}'                  a tool call through the replay's target

A tool call goes where the replay's calls go (through the gateway by its exposed name, or straight
to the backend the session's virtual server maps it to) and must not fail (no JSON-RPC error, no
`isError`). Hooks run in the order given; a failed setup stops the replay before any call is sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._rebuild import UsageError
from ._run import error_line
from ._select import RecordedCall
from ._targets import Target

__all__ = ["Hook", "HookError", "parse_hook", "run_hooks"]


class HookError(Exception):
    """A hook failed; the message names it and says how."""


@dataclass(frozen=True)
class Hook:
    flag: str  # --setup or --teardown
    text: str
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str | None:
        return None if self.tool is not None else self.text


def parse_hook(text: str, flag: str) -> Hook:
    if not text.startswith("call:"):
        if not text.strip():
            raise UsageError(f"{flag}: empty command")
        return Hook(flag, text)
    tool, _, raw = text[5:].strip().partition(" ")
    if not tool:
        raise UsageError(f"{flag} {text!r}: expected call:TOOL [JSON arguments]")
    try:
        arguments = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{flag} {text!r}: the arguments are not JSON ({exc})") from None
    if not isinstance(arguments, dict):
        raise UsageError(f"{flag} {text!r}: the arguments must be a JSON object")
    return Hook(flag, text, tool, arguments)


async def run_hooks(hooks: list[Hook], target: Target, near: RecordedCall, timeout_s: float) -> None:
    """Run each hook in order; raise HookError at the first that fails."""
    for hook in hooks:
        if hook.command is not None:
            await _run_command(hook, timeout_s)
            continue
        assert hook.tool is not None
        reply = await target.hook_call(hook.tool, hook.arguments, near)
        failed = error_line(reply.message)
        if failed or "error" in reply.message:
            raise HookError(f"{hook.flag} {hook.text!r} failed: {failed or 'error'}")


async def _run_command(hook: Hook, timeout_s: float) -> None:
    proc = await asyncio.create_subprocess_shell(
        hook.text, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise HookError(f"{hook.flag} {hook.text!r} did not finish in {timeout_s:g} s") from None
    if proc.returncode != 0:
        last = (err.decode(errors="replace").strip().splitlines() or [""])[-1]
        raise HookError(f"{hook.flag} {hook.text!r} exited with {proc.returncode}" + (f": {last}" if last else ""))

"""Guardrails: how the tools of a slice may be used, checked on the protocol layer.

A slice decides which tools an agent sees; guardrails narrow what it may do with them, per mapped
tool (`guardrails:` on a tool mapping) and for every tool of a virtual server (`guardrails:` on it):

    pin            arguments fixed by the server: gone from the tool's input schema, set on every call
    narrow         JSON Schema keywords per argument (enum, pattern, maxLength, minimum, ...), shown to
                   the agent in tools/list and enforced before the call is forwarded
    input_rules    deny: a regex no argument value may match; max_bytes: the arguments' size
    output_rules   detect (email, card_number, us_ssn, api_key) or regex, action redact or block;
                   max_result_bytes with action truncate. Applied to content and structuredContent.

A refused call never reaches the backend: it is answered with a JSON-RPC error (-32602) whose
message says which rule refused it and what to change. Every rule that fired is a verdict: an event
in the flight recorder and a count in /metrics.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import inspect
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson

from .guardrails import Allow, CallContext, Deny, Rewrite

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

    from ._config import GuardrailsConfig, InputRule, OutputRule

logger = logging.getLogger(__name__)

__all__ = ["DETECTORS", "GuardedResult", "HookError", "Refused", "ToolGuard", "Verdict", "expose_schema", "load_hook"]

HOOK_GROUP = "slicewire.guardrails"


class HookError(Exception):
    """A hook named in the config cannot be loaded; the message says why."""


@functools.cache
def load_hook(spec: str) -> Callable[..., Any]:
    """An entry point of group slicewire.guardrails by name, or `module:function`."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise HookError(f"hook {spec!r}: cannot import {module_name} ({exc})") from None
        hook = getattr(module, attribute, None)
        if not callable(hook):
            raise HookError(f"hook {spec!r}: {module_name} has no function {attribute!r}")
        return cast(Callable[..., Any], hook)
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=HOOK_GROUP)}
    if spec not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise HookError(f"hook {spec!r}: no entry point of that name in group {HOOK_GROUP} (installed: {installed})")
    try:
        hook = found[spec].load()
    except Exception as exc:  # a third party's import error, whatever it is
        raise HookError(f"hook {spec!r}: its entry point {found[spec].value} failed to load ({exc})") from None
    if not callable(hook):
        raise HookError(f"hook {spec!r}: {found[spec].value} is not a function")
    return cast(Callable[..., Any], hook)


# Detectors for output rules: a pattern, a check of what it matched (card numbers: Luhn), and a
# substring every match contains, looked for first (a C scan: a text without "@" has no e-mail address,
# and the regex is not run over it).
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
DETECTORS: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None, str | None]] = {
    # (?<!…): a match starts where a run of name characters starts, so a long run without "@" is one
    # failed attempt, not one per character.
    "email": (re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
              None, "@"),
    "card_number": (_CARD, lambda text: _luhn("".join(c for c in text if c.isdigit())), None),
    "us_ssn": (re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)"), None, "-"),
    "api_key": (re.compile(
        r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
        r"|AIza[0-9A-Za-z_-]{35}|(?:sk|rk)_live_[0-9A-Za-z]{24,})\b"), None, None),
}  # fmt: skip


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return 13 <= len(digits) <= 19 and total % 10 == 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule that fired: its name, what it did (deny, pin, redact, block, truncate), and where."""

    rule: str
    action: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """A call a rule refused: the JSON-RPC error's message (for the model: what to change) and data."""

    verdict: Verdict
    message: str

    @property
    def data(self) -> dict[str, Any]:
        return {"guardrail": self.verdict.rule, "reason": self.verdict.detail}


def expose_schema(schema: Any, guard: GuardrailsConfig | None) -> Any:
    """A tool's input schema as the agent sees it: pinned arguments gone, narrowed ones narrowed."""
    if guard is None or not (guard.pin or guard.narrow) or not isinstance(schema, dict):
        return schema
    properties = dict(schema.get("properties") or {})
    for name in guard.pin:
        properties.pop(name, None)
    for name, keywords in guard.narrow.items():
        properties[name] = {**(properties.get(name) or {}), **keywords}
    shown = {**schema, "properties": properties}
    required = [r for r in schema.get("required") or [] if r not in guard.pin]
    if "required" in schema:
        shown["required"] = required
    return shown


@dataclass(slots=True)
class _InputCheck:
    rule: str
    deny: re.Pattern[str] | None
    argument: str | None
    max_bytes: int | None
    message: str | None


@dataclass(slots=True)
class _HookCheck:
    rule: str
    hook: Callable[..., Any]
    budget_s: float
    message: str | None


@dataclass(slots=True)
class _OutputCheck:
    rule: str
    pattern: re.Pattern[str] | None
    accept: Callable[[str], bool] | None
    action: str
    max_bytes: int | None
    needle: str | None = None


def _hook_check(index: int, rule: InputRule, where: str) -> _HookCheck:
    assert rule.hook is not None
    return _HookCheck(rule.name or rule.hook, load_hook(rule.hook), rule.budget_ms / 1000, rule.message)


def _input_check(index: int, rule: InputRule, where: str) -> _InputCheck:
    name = rule.name or f"{where}.input_rules[{index}]"
    return _InputCheck(name, re.compile(rule.deny) if rule.deny else None, rule.argument, rule.max_bytes, rule.message)


def _output_check(index: int, rule: OutputRule, where: str) -> _OutputCheck:
    name = rule.name or rule.detect or f"{where}.output_rules[{index}]"
    pattern: re.Pattern[str] | None = None
    accept: Callable[[str], bool] | None = None
    needle: str | None = None
    if rule.detect:
        pattern, accept, needle = DETECTORS[rule.detect]
    elif rule.regex:
        pattern = re.compile(rule.regex)
    return _OutputCheck(name, pattern, accept, rule.effective_action, rule.max_result_bytes, needle)


@dataclass(slots=True)
class ToolGuard:
    """The guardrails of one exposed tool, compiled once per slice."""

    tool: str
    pins: dict[str, Any] = field(default_factory=dict)
    narrowed: dict[str, Draft202012Validator] = field(default_factory=dict)
    inputs: list[_InputCheck] = field(default_factory=list)
    hooks: list[_HookCheck] = field(default_factory=list)
    outputs: list[_OutputCheck] = field(default_factory=list)
    approval: bool = False  # the calling user approves each call first (_approval)

    @classmethod
    def build(
        cls, tool: str, own: GuardrailsConfig | None, server: GuardrailsConfig | None, destructive: bool = False
    ) -> ToolGuard | None:
        """The tool's own guardrails, then its server's rules; None when there are none. `destructive`:
        the tool's annotations say destructiveHint (and not readOnlyHint)."""
        setting = (own.approval if own is not None else None) or (server.approval if server is not None else None)
        guard = cls(tool, approval=setting == "required" or (setting == "destructive" and destructive))
        for where, config in ((f"tool {tool}", own), ("virtual server", server)):
            if config is None:
                continue
            guard.pins.update(config.pin)
            if config.narrow:
                # Imported here: jsonschema (with the format checkers it finds) takes up to 2 s to import,
                # every gateway and CLI start would pay it.
                from jsonschema import Draft202012Validator

                guard.narrowed.update({name: Draft202012Validator(kw) for name, kw in config.narrow.items()})
            guard.inputs += [_input_check(i, r, where) for i, r in enumerate(config.input_rules) if r.hook is None]
            guard.hooks += [_hook_check(i, r, where) for i, r in enumerate(config.input_rules) if r.hook is not None]
            guard.outputs += [_output_check(i, rule, where) for i, rule in enumerate(config.output_rules)]
        used = guard.pins or guard.narrowed or guard.inputs or guard.hooks or guard.outputs or guard.approval
        return guard if used else None

    # --- before the call ---------------------------------------------------------------------------

    def check(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[Verdict], Refused | None]:
        """The arguments to forward (pins set), the verdicts, and the refusal if a rule refused."""
        verdicts: list[Verdict] = []
        for name, value in self.pins.items():
            given = arguments.get(name, _ABSENT)
            if given is not _ABSENT and given != value:
                verdict = Verdict(f"pin {name}", "deny", f"{name} is fixed")
                return arguments, [verdict], Refused(verdict, f"Argument {name!r} is fixed to {_show(value)} by this "
                                                              f"server: leave it out")  # fmt: skip
        if self.pins:
            arguments = {**arguments, **self.pins}
            verdicts.append(Verdict("pin", "pin", ", ".join(sorted(self.pins))))
        for name, validator in self.narrowed.items():
            if name not in arguments:
                continue
            error = next(iter(validator.iter_errors(arguments[name])), None)
            if error is not None:
                verdict = Verdict(f"narrow {name}", "deny", error.message)
                return (
                    arguments,
                    [*verdicts, verdict],
                    Refused(
                        verdict, f"Argument {name!r} is not allowed here: {error.message} (see the tool's input schema)"
                    ),
                )
        for check in self.inputs:
            refusal = _check_input(check, arguments)
            if refusal is not None:
                return arguments, [*verdicts, refusal.verdict], refusal
        return arguments, verdicts, None

    async def run_hooks(
        self, ctx: CallContext, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Verdict], Refused | None]:
        """The hooks, in order, after the other input rules: the arguments to forward, the verdicts,
        the refusal. A hook that fails, answers something else or overruns its budget refuses."""
        verdicts: list[Verdict] = []
        for check in self.hooks:
            decision, problem = await _decide(check, ctx, arguments)
            if problem is not None:
                verdict = Verdict(check.rule, "deny", problem)
                told = f"Refused by guardrail {check.rule!r}: it could not check this call; try again or ask an admin"
                return arguments, [*verdicts, verdict], Refused(verdict, check.message or told)
            if isinstance(decision, Deny):
                verdict = Verdict(check.rule, "deny", decision.reason)
                told = f"Refused by guardrail {check.rule!r}: {decision.reason}"
                return arguments, [*verdicts, verdict], Refused(verdict, check.message or told)
            if isinstance(decision, Rewrite):
                arguments = dict(decision.arguments)
                verdicts.append(Verdict(check.rule, "rewrite", ", ".join(sorted(arguments))))
        return arguments, verdicts, None

    # --- after the call ------------------------------------------------------------------------------

    def shape_result(self, result: dict[str, Any], size: int) -> tuple[dict[str, Any], list[Verdict]]:
        """The result with the output rules applied (`size`: its size as received, in bytes)."""
        verdicts: list[Verdict] = []
        for check in self.outputs:
            if check.max_bytes is not None:
                if size > check.max_bytes:
                    result = _truncated(result, check.max_bytes)
                    verdicts.append(Verdict(check.rule, "truncate", f"{size} bytes > {check.max_bytes}"))
                continue
            assert check.pattern is not None
            found = _find(check, result)
            if not found:
                continue
            if check.action == "block":
                verdicts.append(Verdict(check.rule, "block", f"{found} match(es)"))
                text = (f"The result was withheld by guardrail {check.rule!r}: it contained {check.rule} data. "
                        "Ask for the information without it.")  # fmt: skip
                return {"content": [{"type": "text", "text": text}], "isError": True}, verdicts
            result = _redacted(check, result)
            verdicts.append(Verdict(check.rule, "redact", f"{found} match(es)"))
        return result, verdicts


_ABSENT = object()


async def _decide(check: _HookCheck, ctx: CallContext, arguments: dict[str, Any]) -> tuple[Any, str | None]:
    """(the hook's decision, None) or (None, why it has none): it raised, overran, answered nonsense."""
    started = time.perf_counter()
    try:
        decision = check.hook(ctx, ctx.tool, dict(arguments))
        if inspect.isawaitable(decision):
            decision = await asyncio.wait_for(decision, check.budget_s)
    except TimeoutError:
        return None, f"no decision within {check.budget_s * 1000:g} ms"
    except Exception as exc:
        logger.exception("guardrail hook %s failed on %s", check.rule, ctx.tool)
        return None, f"the hook failed ({type(exc).__name__})"
    elapsed = time.perf_counter() - started
    if elapsed > check.budget_s:
        logger.warning("guardrail hook %s took %.1f ms (budget %g ms): call refused", check.rule, elapsed * 1000,
                       check.budget_s * 1000)  # fmt: skip
        return None, f"no decision within {check.budget_s * 1000:g} ms"
    if isinstance(decision, Rewrite) and not isinstance(decision.arguments, dict):
        return None, "the hook rewrote the arguments to something other than an object"
    if not isinstance(decision, Allow | Deny | Rewrite):
        return None, f"the hook answered {type(decision).__name__}, not Allow, Deny or Rewrite"
    return decision, None


class GuardedResult:
    """A tool result shaper (see _call.Shaper) applying the tool's output rules after `inner` (the
    slice's link rewriting), telling `verdicts` which rules fired. Every result passes through it."""

    marker = None

    def __init__(self, guard: ToolGuard, inner: Any, verdicts: Callable[[list[Verdict]], None]) -> None:
        self.guard, self.inner, self.verdicts = guard, inner, verdicts
        self.sized = any(check.max_bytes is not None for check in guard.outputs)
        self.error = getattr(inner, "error", None)  # errors are the inner shaper's to reshape

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        if self.inner is not None:
            result = self.inner(result)
        size = len(orjson.dumps(result)) if self.sized else 0
        result, fired = self.guard.shape_result(result, size)
        self.verdicts(fired)
        return result


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _check_input(check: _InputCheck, arguments: dict[str, Any]) -> Refused | None:
    if check.max_bytes is not None:
        size = len(orjson.dumps(arguments))
        if size > check.max_bytes:
            verdict = Verdict(check.rule, "deny", f"{size} bytes > {check.max_bytes}")
            told = f"Refused by guardrail {check.rule!r}: the arguments are {size} bytes, at most {check.max_bytes}"
            return Refused(verdict, check.message or f"{told} are allowed: send less")
        return None
    assert check.deny is not None
    scope = arguments.get(check.argument) if check.argument is not None else arguments
    for text in _strings(scope):
        if check.deny.search(text):
            where = f"argument {check.argument!r}" if check.argument else "an argument"
            verdict = Verdict(check.rule, "deny", f"{where} matches {check.deny.pattern!r}")
            told = f"Refused by guardrail {check.rule!r}: {where} matches a pattern this server does not allow"
            return Refused(verdict, check.message or f"{told}; rephrase without it")
    return None


def _matches(check: _OutputCheck, text: str) -> list[re.Match[str]]:
    assert check.pattern is not None
    if check.needle is not None and check.needle not in text:
        return []
    found = list(check.pattern.finditer(text))
    return [m for m in found if check.accept(m.group(0))] if check.accept is not None else found


def _texts(result: dict[str, Any]) -> Iterable[str]:
    for block in result.get("content") or []:
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                yield block["text"]
            resource = block.get("resource")
            if isinstance(resource, dict) and isinstance(resource.get("text"), str):
                yield resource["text"]
    yield from _strings(result.get("structuredContent"))


def _find(check: _OutputCheck, result: dict[str, Any]) -> int:
    return sum(len(_matches(check, text)) for text in _texts(result))


def _redacted(check: _OutputCheck, result: dict[str, Any]) -> dict[str, Any]:
    marker = f"[REDACTED:{check.rule}]"

    def scrub(text: str) -> str:
        for match in reversed(_matches(check, text)):
            text = text[: match.start()] + marker + text[match.end() :]
        return text

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    shaped = dict(result)
    if isinstance(result.get("content"), list):
        shaped["content"] = [_scrub_block(block, scrub) for block in result["content"]]
    if "structuredContent" in result:
        shaped["structuredContent"] = walk(result["structuredContent"])
    return shaped


def _scrub_block(block: Any, scrub: Callable[[str], str]) -> Any:
    if not isinstance(block, dict):
        return block
    if isinstance(block.get("text"), str):
        block = {**block, "text": scrub(block["text"])}
    resource = block.get("resource")
    if isinstance(resource, dict) and isinstance(resource.get("text"), str):
        block = {**block, "resource": {**resource, "text": scrub(resource["text"])}}
    return block


def _truncated(result: dict[str, Any], limit: int) -> dict[str, Any]:
    """Text blocks kept in order up to `limit` bytes (the last one cut, the rest left out) and a last
    block saying so; structuredContent's strings cut the same way (its shape kept: a tool with an
    output schema must still return one)."""
    kept: list[Any] = []
    budget = [limit]
    for block in result.get("content") or []:
        text = block.get("text") if isinstance(block, dict) else None
        if not isinstance(text, str):
            continue
        if budget[0] <= 0:
            break
        kept.append({**block, "text": _cut(text, budget)})
    note = f"[truncated by the gateway: the result was over {limit} bytes]"
    shaped = {**result, "content": [*kept, {"type": "text", "text": note}]}
    if "structuredContent" in result:
        shaped["structuredContent"] = _cut_strings(result["structuredContent"], [limit])
    return shaped


def _cut(text: str, budget: list[int]) -> str:
    """`text`, at most budget[0] bytes of it (whole characters), the budget reduced by what was kept."""
    encoded = text.encode()
    kept = encoded[: max(budget[0], 0)].decode(errors="ignore")
    budget[0] -= len(encoded)
    return kept


def _cut_strings(value: Any, budget: list[int]) -> Any:
    if isinstance(value, str):
        return _cut(value, budget)
    if isinstance(value, dict):
        return {k: _cut_strings(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, budget) for v in value]
    return value

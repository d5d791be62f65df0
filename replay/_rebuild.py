"""Rebuild a recorded call's arguments: apply `--set` overrides, put back redacted secrets.

    args, missing = rebuild(call, overrides, secrets)
    if missing: ...  # not replayable: these argument paths were redacted and no value was given

A recorded payload holds `[REDACTED]` where the gateway removed a secret. A call is sent only once
every such place has a value (`--secret NAME=VALUE`, or SLICEWIRE_SECRET_<NAME> in the environment,
NAME being the argument's key or its JSON path); it is never sent with the marker in it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.recording._redact import MARKER

from ._diff import PathStep, RulesError, parse_path, render_path
from ._select import RecordedCall

__all__ = ["Override", "Rebuilt", "Secrets", "UsageError", "parse_override", "parse_secret", "rebuild"]


class UsageError(ValueError):
    """A malformed --set or --secret."""


@dataclass(frozen=True)
class Override:
    """`--set [CALL:]PATH=VALUE`: CALL is a position (`3`) or an exposed tool name; none means every
    call that has PATH. PATH is a JSON path into the arguments; VALUE is JSON, else a string."""

    call: str | None
    path: tuple[PathStep, ...]
    value: Any

    def applies_to(self, call: RecordedCall) -> bool:
        return self.call is None or self.call == str(call.index) or self.call == call.tool


_CALL = re.compile(r"^(?P<call>[^:$=]+):(?P<rest>.*)$")


def parse_override(text: str) -> Override:
    target, sep, raw = text.partition("=")
    if not sep:
        raise UsageError(f"--set {text!r}: expected [CALL:]PATH=VALUE, e.g. --set 3:$.owner=octo")
    call = None
    match = _CALL.match(target)
    if match:
        call, target = match.group("call"), match.group("rest")
    if not target.startswith("$"):
        target = "$." + target
    try:
        path = parse_path(target)
    except RulesError as exc:
        raise UsageError(f"--set {text!r}: {exc}") from None
    if not path or any(step in ("..", "*", "[*]", "(json)") for step in path):
        raise UsageError(f"--set {text!r}: the path must name one argument (no wildcards)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return Override(call, tuple(path), value)


def parse_secret(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--secret: expected NAME=VALUE, found {text.split('=')[0]!r}=…")
    return name.removeprefix("$.").removeprefix("$"), value


def _env_name(name: str) -> str:
    return "SLICEWIRE_SECRET_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


class Secrets:
    """Values for redacted arguments, by key (`api_key`) or path (`auth.token`); never printed."""

    def __init__(self, given: Mapping[str, str], environ: Mapping[str, str] | None = None) -> None:
        self.given = dict(given)
        self.environ = os.environ if environ is None else environ

    def lookup(self, path: list[PathStep]) -> str | None:
        rendered = render_path(path).removeprefix("$.").removeprefix("$")
        keys = [k for k in path if isinstance(k, str)]
        names = [rendered] + ([keys[-1]] if keys else [])
        for name in names:
            if name in self.given:
                return self.given[name]
        for name in names:
            value = self.environ.get(_env_name(name))
            if value is not None:
                return value
        return None

    def hint(self, path: list[PathStep]) -> str:
        keys = [k for k in path if isinstance(k, str)]
        name = keys[-1] if keys else render_path(path).removeprefix("$.")
        return f"--secret {name}=… or {_env_name(name)}"


def _set(target: Any, path: tuple[PathStep, ...], value: Any) -> bool:
    for step in path[:-1]:
        if isinstance(step, int):
            if not isinstance(target, list) or step >= len(target):
                return False
            target = target[step]
        else:
            if not isinstance(target, dict):
                return False
            target = target.setdefault(step, {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(target, list) or last >= len(target):
            return False
        target[last] = value
    else:
        if not isinstance(target, dict):
            return False
        target[last] = value
    return True


def _exists(target: Any, path: tuple[PathStep, ...]) -> bool:
    for step in path:
        if isinstance(step, int):
            if not isinstance(target, list) or step >= len(target):
                return False
        elif not isinstance(target, dict) or step not in target:
            return False
        target = target[step]
    return True


def _fill(value: Any, path: list[PathStep], secrets: Secrets, missing: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, [*path, k], secrets, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, [*path, i], secrets, missing) for i, v in enumerate(value)]
    if isinstance(value, str) and MARKER in value:
        secret = secrets.lookup(path)
        if secret is None:
            missing.append(f"{render_path(path)} ({secrets.hint(path)})")
            return value
        return value.replace(MARKER, secret)
    return value


@dataclass
class Rebuilt:
    arguments: dict[str, Any] | None  # None: the recorded request cannot be read (cut at the payload cap)
    answers: list[tuple[str, dict[str, Any]]]  # the agent's answers to the backend's questions, filled
    missing: list[str]  # redacted places still without a value
    unapplied: list[str]  # overrides that did not apply


def rebuild(call: RecordedCall, overrides: list[Override], secrets: Secrets) -> Rebuilt:
    """The call's arguments and recorded answers, overrides applied and redacted values put back."""
    arguments = call.arguments
    if arguments is None or call.truncated:
        return Rebuilt(None, [], [], [])
    arguments = copy.deepcopy(arguments)
    unapplied = []
    for override in overrides:
        if not override.applies_to(call):
            continue
        if override.call is None and not _exists(arguments, override.path):
            continue  # "every call that has PATH"
        if not _set(arguments, override.path, override.value):
            unapplied.append(render_path(override.path))
    missing: list[str] = []
    arguments = _fill(arguments, [], secrets, missing)
    answers = []
    for method, answer in call.answers:
        lacking: list[str] = []
        answers.append((method, _fill(answer, [], secrets, lacking)))
        missing.extend(f"the agent's answer to {method}: {m}" for m in lacking)
    return Rebuilt(arguments, answers, missing, unapplied)

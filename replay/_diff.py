"""Structural diff of two tool results, with rules for what does not count as a difference.

    rules = Rules.default().with_ignored(["$.structuredContent.generated_at"])
    for change in diff(recorded, now, rules):
        print(change.path, change.old, "->", change.new)

JSON that sits inside a text content block (`content[].text` holding `{"a": 1}`) is compared as
JSON: a path into it reads `$.content[0].text(json).a`. By default `_meta` (anywhere) is ignored,
and two values of the same volatile kind are equal: two ISO 8601 timestamps, two UUIDs. User rules
ignore JSON paths: `$.a.b`, `$.items[*].id`, `$..updated_at` (any depth), `$.a.*`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

__all__ = ["ABSENT", "Change", "Rules", "RulesError", "diff", "parse_path", "render_path"]


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()
_JSON = "(json)"  # the path step into JSON parsed out of a string

PathStep = str | int


class RulesError(ValueError):
    """A rule (ignore path, rules file) is malformed."""


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "old": None if self.old is ABSENT else self.old,
            "new": None if self.new is ABSENT else self.new,
            "old_absent": self.old is ABSENT,
            "new_absent": self.new is ABSENT,
        }


_STEP = re.compile(r"\.\.|\.(?:[^.\[\]()]+)|\[(?:\*|\d+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]|\(json\)")


def parse_path(text: str) -> list[PathStep]:
    """`$.a[0]['b.c'].*..d(json).e` -> ['a', 0, 'b.c', '*', '..', 'd', '(json)', 'e']."""
    if not text.startswith("$"):
        raise RulesError(f"a JSON path starts with '$', found {text!r}")
    steps: list[PathStep] = []
    pos = 1
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            raise RulesError(f"cannot read the JSON path {text!r} at {text[pos:]!r}")
        token = match.group(0)
        if token == "..":
            steps.append("..")
            # `$..name`: the next step follows without its own dot
            nxt = re.match(r"[^.\[\]()]+", text[match.end() :])
            if nxt:
                steps.append(nxt.group(0))
                pos = match.end() + nxt.end()
                continue
        elif token == _JSON:
            steps.append(_JSON)
        elif token.startswith("."):
            steps.append(token[1:])
        elif token == "[*]":
            steps.append("[*]")
        elif token[1].isdigit():
            steps.append(int(token[1:-1]))
        else:
            steps.append(orjson.loads('"' + token[2:-2].replace('\\"', '"') + '"') if token[1] == '"' else
                         token[2:-2].replace("\\'", "'"))  # fmt: skip
        pos = match.end()
    return steps


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def render_path(steps: Iterable[PathStep]) -> str:
    out = ["$"]
    for step in steps:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif step == _JSON:
            out.append(_JSON)
        elif _PLAIN.match(step):
            out.append(f".{step}")
        else:
            out.append("[" + orjson.dumps(step).decode() + "]")
    return "".join(out)


def _matches(pattern: list[PathStep], path: list[PathStep]) -> bool:
    if not pattern:
        return not path
    head = pattern[0]
    if head == "..":
        return any(_matches(pattern[1:], path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    step = path[0]
    if head == "[*]":
        ok = isinstance(step, int)
    elif head == "*":
        ok = True
    else:
        ok = head == step
    return ok and _matches(pattern[1:], path[1:])


_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _volatile_kind(value: Any) -> str | None:
    if isinstance(value, str):
        if _ISO_TIME.match(value):
            return "timestamp"
        if _UUID.match(value):
            return "uuid"
    return None


@dataclass
class Rules:
    """What does not count as a difference."""

    ignore: list[list[PathStep]] = field(default_factory=list)
    ignore_meta: bool = True
    volatile: bool = True

    @classmethod
    def default(cls) -> Rules:
        return cls()

    def with_ignored(self, paths: Iterable[str]) -> Rules:
        return Rules(self.ignore + [parse_path(p) for p in paths], self.ignore_meta, self.volatile)

    @classmethod
    def load(cls, path: Path) -> Rules:
        """A rules file (YAML or JSON): `ignore: [paths]`, `ignore_meta: bool`, `volatile: bool`."""
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise RulesError(f"{path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise RulesError(f"{path}: not YAML/JSON ({str(exc).splitlines()[0]})") from None
        data = data or {}
        if not isinstance(data, dict) or set(data) - {"ignore", "ignore_meta", "volatile"}:
            raise RulesError(f"{path}: expected keys ignore, ignore_meta, volatile")
        ignore = data.get("ignore") or []
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise RulesError(f"{path}: 'ignore' must be a list of JSON paths")
        try:
            steps = [parse_path(p) for p in ignore]
        except RulesError as exc:
            raise RulesError(f"{path}: {exc}") from None
        return cls(steps, bool(data.get("ignore_meta", True)), bool(data.get("volatile", True)))

    def ignored(self, path: list[PathStep]) -> bool:
        if self.ignore_meta and "_meta" in path:
            return True
        return any(_matches(pattern, path) for pattern in self.ignore)


def _embedded(value: Any) -> Any:
    """A string holding a JSON object or array, parsed; else ABSENT."""
    if isinstance(value, str) and value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return ABSENT
    return ABSENT


def diff(old: Any, new: Any, rules: Rules | None = None) -> list[Change]:
    """Every difference between `old` and `new` that the rules do not excuse, as JSON paths."""
    changes: list[Change] = []
    _walk(old, new, [], rules or Rules.default(), changes)
    return changes


def _walk(old: Any, new: Any, path: list[PathStep], rules: Rules, out: list[Change]) -> None:
    if rules.ignored(path):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _walk(old.get(key, ABSENT), new.get(key, ABSENT), [*path, key], rules, out)
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            _walk(old[i] if i < len(old) else ABSENT, new[i] if i < len(new) else ABSENT, [*path, i], rules, out)
        return
    if old == new and type(old) is type(new):
        return
    if rules.volatile:
        kind = _volatile_kind(old)
        if kind is not None and kind == _volatile_kind(new):
            return
    parsed_old, parsed_new = _embedded(old), _embedded(new)
    if parsed_old is not ABSENT and parsed_new is not ABSENT:
        _walk(parsed_old, parsed_new, [*path, _JSON], rules, out)
        return
    out.append(Change(render_path(path), old, new))

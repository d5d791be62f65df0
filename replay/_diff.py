"""Structural diff of two tool results, with rules for what does not count as a difference.

    rules = Rules.default().with_ignored(["$.structuredContent.generated_at"])
    for change in diff(recorded, now, rules):
        print(change.path, change.old, "->", change.new)

JSON that sits inside a text content block (`content[].text` holding `{"a": 1}`) is compared as
JSON: a path into it reads `$.content[0].text(json).a`. By default `_meta` (anywhere) is ignored,
and two values of the same volatile kind are equal: ISO 8601 timestamps, UUIDs, epoch times,
prefixed ids (`req_8fK2x9Qa`), and strings that differ only in such values. Lists are aligned (by id,
else by longest common subsequence) so that an inserted item is one change. User rules ignore JSON
paths: `$.a.b`, `$.items[*].id`, `$..updated_at` (any depth), `$.a.*`, everywhere or per tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import orjson
import yaml

__all__ = [
    "ABSENT", "MIRROR_NOTE", "Change", "Rules", "RulesError", "diff", "fold_mirrors", "generalize", "parse_path",
    "render_path", "save_learned",
]  # fmt: skip


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
    """One difference at a JSON path. `kind`: changed (old -> new), added (an item or key only in the
    new answer), removed (only in the recorded one), reordered (a list's items by id, old -> new order)."""

    path: str
    old: Any
    new: Any
    kind: str = "changed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
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
        elif step == _JSON or step == "[*]":
            out.append(step)
        elif step == "*":
            out.append(".*")
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


# Values that differ on every run of an unchanged system ("volatile"): two values of the same kind
# are equal. Numbers count as epoch times in 2001-2100, in seconds to nanoseconds; a prefixed id is a
# short prefix and `_` or `-` before at least 8 letters and digits mixed (`req_8fK2x9Qa`, `msg_01XF…`),
# and two are equal only with the same prefix.
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PREFIXED_ID = re.compile(r"^([A-Za-z][A-Za-z0-9]{0,15}[_-])(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{8,}$")
_EPOCHS = ((1e9, 4.2e9, "epoch s"), (1e12, 4.2e12, "epoch ms"), (1e15, 4.2e15, "epoch us"), (1e18, 4.2e18, "epoch ns"))
# The same kinds inside prose ("generated at 2026-12-03T10:00:00Z by req_8fK2x9Qa"), and clock times.
_IN_PROSE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b([A-Za-z][A-Za-z0-9]{0,15}_)(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{8,}\b"
    r"|\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b|\b\d{10}(?:\d{3})?\b"
)


def _volatile_kind(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        if _ISO_TIME.match(value):
            return "timestamp"
        if _UUID.match(value):
            return "uuid"
        match = _PREFIXED_ID.match(value)
        if match:
            return "id " + match.group(1)
    elif kind is int or kind is float:
        for low, high, name in _EPOCHS:
            if low <= value < high:
                return name
    return None


def _same_prose(old: Any, new: Any) -> bool:
    """Two strings equal but for the volatile values inside them."""
    if type(old) is not str or type(new) is not str:
        return False
    masked_old, found = _IN_PROSE.subn(_placeholder, old)
    return found > 0 and masked_old == _IN_PROSE.sub(_placeholder, new)


def _placeholder(match: re.Match[str]) -> str:
    return "\0" + (match.group(1) or "")  # a prefixed id keeps its prefix


def generalize(path: str) -> str:
    """A changed path as a rule for any item of its lists: `$.items[3].ts` -> `$.items[*].ts`."""
    return render_path("[*]" if isinstance(step, int) else step for step in parse_path(path))


@dataclass
class Rules:
    """What does not count as a difference: paths ignored everywhere, paths ignored in one tool's
    answers (what `--learn-noise` saves), `_meta`, volatile values."""

    ignore: list[list[PathStep]] = field(default_factory=list)
    ignore_meta: bool = True
    volatile: bool = True
    tools: dict[str, list[str]] = field(default_factory=dict)  # tool -> paths, as written
    _per_tool: dict[str, Rules] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def default(cls) -> Rules:
        return cls()

    def with_ignored(self, paths: Iterable[str]) -> Rules:
        return Rules(self.ignore + [parse_path(p) for p in paths], self.ignore_meta, self.volatile, dict(self.tools))

    def for_tool(self, tool: str) -> Rules:
        """These rules plus the tool's own."""
        paths = self.tools.get(tool)
        if not paths:
            return self
        rules = self._per_tool.get(tool)
        if rules is None:
            rules = self._per_tool[tool] = Rules(self.ignore + [parse_path(p) for p in paths], self.ignore_meta,
                                                 self.volatile)  # fmt: skip
        return rules

    @classmethod
    def load(cls, path: Path) -> Rules:
        """A rules file (YAML or JSON): `ignore: [paths]`, `tools: {tool: {ignore: [paths]}}`,
        `ignore_meta: bool`, `volatile: bool`."""
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise RulesError(f"{path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise RulesError(f"{path}: not YAML/JSON ({str(exc).splitlines()[0]})") from None
        data = data or {}
        if not isinstance(data, dict) or set(data) - {"ignore", "ignore_meta", "volatile", "tools"}:
            raise RulesError(f"{path}: expected keys ignore, tools, ignore_meta, volatile")
        try:
            steps = [parse_path(p) for p in _paths(data.get("ignore"), "'ignore'")]
            tools = data.get("tools") or {}
            if not isinstance(tools, dict) or not all(isinstance(v, dict) and set(v) <= {"ignore"} for v in
                                                      tools.values()):  # fmt: skip
                raise RulesError("'tools' must map tool names to {ignore: [paths]}")
            per_tool = {str(name): _paths(v.get("ignore"), f"tools.{name}.ignore") for name, v in tools.items()}
            for paths in per_tool.values():
                for p in paths:
                    parse_path(p)
        except RulesError as exc:
            raise RulesError(f"{path}: {exc}") from None
        return cls(steps, bool(data.get("ignore_meta", True)), bool(data.get("volatile", True)), per_tool)

    def ignored(self, path: list[PathStep]) -> bool:
        if self.ignore_meta and "_meta" in path:
            return True
        return any(_matches(pattern, path) for pattern in self.ignore)


def save_learned(path: Path, learned: dict[str, list[str]]) -> None:
    """Add learned per-tool paths to a rules file (created if missing), keeping what it says already."""
    data: dict[str, Any] = {}
    if path.exists():
        Rules.load(path)  # a malformed file is reported, not overwritten
        data = yaml.safe_load(path.read_text()) or {}
    tools = data.get("tools") or {}
    for tool, paths in learned.items():
        entry = tools.get(tool) or {}
        entry["ignore"] = sorted(set(entry.get("ignore") or []) | set(paths))
        tools[tool] = entry
    data["tools"] = tools
    header = "# slicewire replay diff rules (docs/replay.md); `tools` entries are added by --learn-noise\n"
    try:
        path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    except OSError as exc:
        raise RulesError(f"{path}: {exc.strerror or exc}") from None


def _paths(value: Any, where: str) -> list[str]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise RulesError(f"{where} must be a list of JSON paths")
    return value


def _embedded(value: Any) -> Any:
    """A string holding a JSON object or array, parsed; else ABSENT."""
    if isinstance(value, str) and value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return ABSENT
    return ABSENT


def diff(old: Any, new: Any, rules: Rules | None = None) -> list[Change]:
    """Every difference between `old` and `new` that the rules do not excuse, as JSON paths.

    Lists are aligned before they are compared: by an id field when every item has a distinct one
    (`id`, `uri`, `name`, `key`), else by longest common subsequence when their lengths differ; an
    inserted or removed item is one change (`added`, `removed`). Paths count the recorded list's
    positions (an added item's, the new list's)."""
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
        _walk_list(old, new, path, rules, out)
        return
    if old == new and type(old) is type(new):
        return
    if rules.volatile:
        kind = _volatile_kind(old)
        if (kind is not None and kind == _volatile_kind(new)) or _same_prose(old, new):
            return
    parsed_old, parsed_new = _embedded(old), _embedded(new)
    if parsed_old is not ABSENT and parsed_new is not ABSENT:
        _walk(parsed_old, parsed_new, [*path, _JSON], rules, out)
        return
    kind = "added" if old is ABSENT else "removed" if new is ABSENT else "changed"
    out.append(Change(render_path(path), old, new, kind))


def _one_side(value: Any, path: list[PathStep], rules: Rules, out: list[Change], added: bool) -> None:
    if not rules.ignored(path):
        out.append(Change(render_path(path), ABSENT if added else value, value if added else ABSENT,
                          "added" if added else "removed"))  # fmt: skip


_ID_FIELDS = ("id", "uri", "name", "key")


def _id_field(old: list[Any], new: list[Any]) -> str | None:
    """The field that names every item of both lists, distinct within each, if any."""
    if not old or not new or type(old[0]) is not dict:
        return None
    for name in _ID_FIELDS:
        if all(_distinct_ids(items, name) for items in (old, new)):
            return name
    return None


def _distinct_ids(items: list[Any], name: str) -> bool:
    seen = set()
    for item in items:
        if type(item) is not dict:
            return False
        value = item.get(name)
        if type(value) is not str and type(value) is not int:
            return False
        seen.add(value)
    return len(seen) == len(items)


def _walk_list(old: list[Any], new: list[Any], path: list[PathStep], rules: Rules, out: list[Change]) -> None:
    name = _id_field(old, new)
    if name is not None:
        at = {item[name]: j for j, item in enumerate(new)}
        kept = []
        for i, item in enumerate(old):
            j = at.get(item[name])
            if j is None:
                _one_side(item, [*path, i], rules, out, added=False)
            else:
                kept.append(item[name])
                _walk(item, new[j], [*path, i], rules, out)
        known = {item[name] for item in old}
        for j, item in enumerate(new):
            if item[name] not in known:
                _one_side(item, [*path, j], rules, out, added=True)
        now = [item[name] for item in new if item[name] in known]
        if kept != now:
            out.append(Change(render_path(path), kept, now, "reordered"))
        return
    if len(old) == len(new):
        for i in range(len(old)):
            _walk(old[i], new[i], [*path, i], rules, out)
        return
    matcher = SequenceMatcher(None, [_shape(v, rules) for v in old], [_shape(v, rules) for v in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        paired = min(i2 - i1, j2 - j1) if tag in ("equal", "replace") else 0
        for k in range(paired):
            _walk(old[i1 + k], new[j1 + k], [*path, i1 + k], rules, out)
        for i in range(i1 + paired, i2):
            _one_side(old[i], [*path, i], rules, out, added=False)
        for j in range(j1 + paired, j2):
            _one_side(new[j], [*path, j], rules, out, added=True)


def _shape(value: Any, rules: Rules) -> Any:
    """A hashable form of a list item for alignment: volatile values by kind, `_meta` left out."""
    if isinstance(value, dict):
        kept = (item for item in value.items() if not (rules.ignore_meta and item[0] == "_meta"))
        return tuple(sorted((k, _shape(v, rules)) for k, v in kept))
    if isinstance(value, list):
        return ("[]", *(_shape(v, rules) for v in value))
    if rules.volatile:
        kind = _volatile_kind(value)
        if kind is not None:
            return ("~", kind)
    return (type(value).__name__, value)


# A tool result often carries its data twice: `structuredContent` and, for clients that only read
# text, the same data in a text block (FastMCP: the JSON of it; server-filesystem: the one string of
# `{"content": …}`). One change there is reported once, at `structuredContent`.
MIRROR_NOTE = "content[{}].text mirrors structuredContent: its changes are reported there once"


def _mirrored_blocks(result: Any) -> set[int]:
    if not isinstance(result, dict):
        return set()
    structured, content = result.get("structuredContent", ABSENT), result.get("content")
    if structured is ABSENT or not isinstance(content, list):
        return set()
    # The forms a text block takes of it: the JSON of it, of its one value ({"result": […]}), that value.
    single = next(iter(structured.values())) if isinstance(structured, dict) and len(structured) == 1 else ABSENT
    found = set()
    for i, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            text = block["text"]
            parsed = _embedded(text)
            if text == single or (parsed is not ABSENT and (parsed == structured or parsed == single)):
                found.add(i)
    return found


def fold_mirrors(old: Any, new: Any) -> tuple[Any, Any, list[int]]:
    """The two results with the text blocks that mirror `structuredContent` on both sides set aside
    (equal placeholders), and which blocks those are."""
    both = sorted(_mirrored_blocks(old) & _mirrored_blocks(new))
    if not both:
        return old, new, []
    return _set_aside(old, both), _set_aside(new, both), both


def _set_aside(result: dict[str, Any], blocks: list[int]) -> dict[str, Any]:
    content = list(result["content"])
    for i in blocks:
        content[i] = {**content[i], "text": "(mirrors structuredContent)"}
    return {**result, "content": content}

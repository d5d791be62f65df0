"""Schema drift: the definitions a session used (tools, prompts, resources), as listed when it was
recorded and as listed today, compared before any call is replayed.

    drifts = drift(recorded_definitions(rec, calls), await target.definitions(calls), calls)

A tool whose input schema gained a required argument, lost an output field, was re-described or
re-annotated is reported with the JSON path of each change, even when every call still answers the
same. A definition that is gone today is `removed`. Only what the session used is compared: a tool
it never called may change freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._diff import Change, Rules, diff
from ._select import RecordedCall

__all__ = ["KINDS", "Definitions", "Drift", "drift", "used"]

# method of the calls -> (kind, list method, list key, the field that names an item, fields compared)
KINDS: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "tools/call": ("tool", "tools/list", "tools", "name",
                   ("title", "description", "inputSchema", "outputSchema", "annotations")),
    "prompts/get": ("prompt", "prompts/list", "prompts", "name", ("title", "description", "arguments")),
    "resources/read": ("resource", "resources/list", "resources", "uri", ("name", "title", "description", "mimeType")),
}  # fmt: skip

_DEFINITIONS = Rules(ignore_meta=True, volatile=False)

Definitions = dict[str, dict[str, dict[str, Any]]]  # kind -> exposed name -> definition


@dataclass
class Drift:
    kind: str  # tool, prompt, resource
    name: str  # as the agent saw it
    status: str  # changed, removed
    changes: list[Change]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "status": self.status,
                "changes": [c.as_dict() for c in self.changes]}  # fmt: skip


def used(calls: list[RecordedCall]) -> dict[str, list[str]]:
    """kind -> the names the session's calls used, in first-use order."""
    found: dict[str, list[str]] = {}
    for call in calls:
        kind = KINDS.get(call.method)
        if kind is not None and call.tool not in found.setdefault(kind[0], []):
            found[kind[0]].append(call.tool)
    return found


def drift(recorded: Definitions, today: Definitions, calls: list[RecordedCall]) -> list[Drift]:
    """How each definition the calls used changed between the recorded lists and today's. A name the
    recording never listed cannot be compared and is left out."""
    out: list[Drift] = []
    for method, (kind, *_, compared) in KINDS.items():
        for name in used([c for c in calls if c.method == method]).get(kind, []):
            then = recorded.get(kind, {}).get(name)
            if then is None:
                continue
            now = today.get(kind, {}).get(name)
            if now is None:
                out.append(Drift(kind, name, "removed", []))
                continue
            changes = diff({k: then[k] for k in compared if k in then}, {k: now[k] for k in compared if k in now},
                           _DEFINITIONS)  # fmt: skip
            if changes:
                out.append(Drift(kind, name, "changed", changes))
    return out

"""Replay: re-issue recorded tool-call sequences against today's backends and report every difference.

    from replay import Selection, select, replay, Options, GatewayTarget
    with recorder.connect("traces.duckdb") as rec:
        calls = select(rec, Selection(session="…"))
    results = await replay(calls, GatewayTarget("http://127.0.0.1:8080", token), Options(), [])

The command line is `slicewire replay` (and `slicewire mock` for serving a recording); see
docs/replay.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._diff import Change, Rules, RulesError, diff
    from ._rebuild import Override, Secrets, parse_override
    from ._run import Options, Result, compare, replay
    from ._select import RecordedCall, Selection, SelectionError, recorded_tools, select
    from ._targets import DirectTarget, GatewayTarget, Target, TargetError

# Loaded on first use: `slicewire serve` registers the replay commands (replay._cli) but must not pay
# for what replaying needs (the recorder client: DuckDB, Arrow, gRPC: ~60 MB of a gateway's RSS).
_WHERE = {
    **dict.fromkeys(["Change", "Rules", "RulesError", "diff"], "._diff"),
    **dict.fromkeys(["Override", "Secrets", "parse_override"], "._rebuild"),
    **dict.fromkeys(["Options", "Result", "compare", "replay"], "._run"),
    **dict.fromkeys(["RecordedCall", "Selection", "SelectionError", "recorded_tools", "select"], "._select"),
    **dict.fromkeys(["DirectTarget", "GatewayTarget", "Target", "TargetError"], "._targets"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'replay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Change",
    "DirectTarget",
    "GatewayTarget",
    "Options",
    "Override",
    "RecordedCall",
    "Result",
    "Rules",
    "RulesError",
    "Secrets",
    "Selection",
    "SelectionError",
    "Target",
    "TargetError",
    "compare",
    "diff",
    "parse_override",
    "recorded_tools",
    "replay",
    "select",
]

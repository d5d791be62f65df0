"""Replay: re-issue recorded tool-call sequences against today's backends and report every difference.

    from replay import Selection, select, replay, Options, GatewayTarget
    with recorder.connect("traces.duckdb") as rec:
        calls = select(rec, Selection(session="…"))
    results = await replay(calls, GatewayTarget("http://127.0.0.1:8080", token), Options(), [])

The command line is `slicewire replay` (and `slicewire mock` for serving a recording); see
docs/replay.md.
"""

from ._diff import Change, Rules, RulesError, diff
from ._rebuild import Override, Secrets, parse_override
from ._run import Options, Result, compare, replay
from ._select import RecordedCall, Selection, SelectionError, recorded_tools, select
from ._targets import DirectTarget, GatewayTarget, Target, TargetError

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

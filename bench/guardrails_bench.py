"""Guardrail cost per call, in the gateway's process but without the network: the bench's `say` tool
with its three regex rules (bench/run.py GUARDRAILS: two deny rules on the arguments, the email
detector on the result), checked and shaped as the gateway does, and each rule alone. Medians of
timeit rounds, in µs per call.

    .venv/bin/python bench/guardrails_bench.py

The end-to-end figure (CPU per request of slicewire-guarded against slicewire, same run) comes from
`bench/run.py --systems slicewire,slicewire-guarded`.
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import GUARDRAILS

from proxy._config import GuardrailsConfig
from proxy._guardrails import GuardedResult, ToolGuard

# What bench/loadgen.py sends and the echo backend answers.
ARGUMENTS = {"text": "x" * 200}  # loadgen.py --arg-bytes default
RESULT = {"content": [{"type": "text", "text": json.dumps(ARGUMENTS)}], "structuredContent": ARGUMENTS}


def per_call(guard: ToolGuard, number: int = 20_000, rounds: int = 7) -> float:
    shaper = GuardedResult(guard, None, lambda verdicts: None)

    def call() -> None:
        guard.check(ARGUMENTS)
        shaper(RESULT)

    return statistics.median(timeit.repeat(call, number=number, repeat=rounds)) / number * 1e6


def main() -> None:
    config = GuardrailsConfig.model_validate(GUARDRAILS)
    three = ToolGuard.build("say", config, None)
    assert three is not None
    figures = {"three_rules_us_per_call": round(per_call(three), 2)}
    for i, rule in enumerate(config.input_rules):
        alone = ToolGuard.build("say", GuardrailsConfig(input_rules=[rule]), None)
        assert alone is not None
        figures[f"input_rule_{i}_{rule.name}_us"] = round(per_call(alone), 2)
    for rule in config.output_rules:
        alone = ToolGuard.build("say", GuardrailsConfig(output_rules=[rule]), None)
        assert alone is not None
        figures[f"output_rule_{rule.detect}_us"] = round(per_call(alone), 2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

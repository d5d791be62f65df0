"""The official MCP conformance suite through a Slicewire virtual server.

The bar for wire fidelity: every scenario the fixture backend (tests/support/conformance_backend.py)
passes when the suite talks to it directly also passes when the suite talks to a virtual server that
maps all of the backend's tools, resources and prompts. Both suite packages run: 0.1.16 (2025-11-25)
and 0.2.0-alpha.12 with `--requirements 2026-07-28`, scored and unscored scenarios alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.conformance import SUITES, Outcome, Suite, run_suite, start_backend
from tests.support.gateway import RunningGateway

TOOLS = [
    "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
    "test_multiple_content_types", "test_tool_with_logging", "test_tool_with_progress", "test_error_handling",
    "test_sampling", "test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums",
    "json_schema_2020_12_tool", "test_input_required_result_elicitation", "test_input_required_result_sampling",
    "test_input_required_result_list_roots", "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs", "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state", "test_input_required_result_capabilities", "test_missing_capability",
    "test_logging_tool", "test_streaming_elicitation", "test_header_param",
    # the tasks extension's (SEP-2663)
    "greet", "slow_compute", "failing_job", "protocol_error_job", "confirm_delete", "multi_input",
    "test_tool_with_task",
]  # fmt: skip
PROMPTS = [
    "test_simple_prompt", "test_prompt_with_arguments", "test_prompt_with_embedded_resource", "test_prompt_with_image",
    "test_input_required_result_prompt",
]  # fmt: skip


def virtual_server(path: str, backend_path: str) -> dict[str, Any]:
    return {
        "path": path,
        "server_name": "conformance-slice",
        "tool_mappings": [{"tool_name": t, "backend_server_path": backend_path} for t in TOOLS],
        # Every test:// URI, as the backend names it (the suite asks for fixed URIs).
        "resource_mappings": [{"uri_prefix": "test://", "backend_server_path": backend_path}],
        "prompt_mappings": [{"prompt_name": p, "backend_server_path": backend_path} for p in PROMPTS],
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RunningGateway, Path]]:
    """The fixture backend, and a gateway connected to it twice: in the era it prefers (2026-07-28,
    behind /modern) and pinned to 2025-11-25 (behind /legacy)."""
    workdir = tmp_path_factory.mktemp("conformance")
    backend, url = start_backend(workdir)
    gateway = None
    try:
        modern = {"path": "/fixtures", "transport": "streamable-http", "url": url}
        legacy = {**modern, "path": "/fixtures-legacy", "protocol_version": "2025-11-25"}
        config = {
            "backends": [modern, legacy],
            "virtual_servers": [virtual_server("/modern", "/fixtures"), virtual_server("/legacy", "/fixtures-legacy")],
        }
        gateway = RunningGateway(config, workdir)
        yield url, gateway, workdir
    finally:
        if gateway is not None:
            gateway.proc.stop()
        backend.stop()


_TASK_SCENARIOS = (
    "tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields", "tasks-request-state-removal",
    "tasks-mrtr-input", "tasks-request-headers", "tasks-dispatch-and-envelope", "tasks-mrtr-composition",
)  # fmt: skip

# Scenarios that pass against the backend directly but cannot pass through one of the gateway's two
# connections to it, and why. A gap that closes fails the test too: the list stays exact.
KNOWN_GAPS = {
    ("2025-11-25", "modern"): {
        "resources-subscribe": "in its 2026-07-28 era the backend offers no resource subscriptions "
        "(its server/discover says resources.subscribe: false); through /legacy they pass",
        "resources-unsubscribe": "as resources-subscribe",
    },
    # A 2026-07-28 client through a 2025-11-25 connection: the backend asks its questions one request
    # at a time and knows only the gateway's session, so the gateway turns each into an
    # InputRequiredResult of its own.
    ("2026-07-28", "legacy"): {
        "input-required-result-basic-elicitation": "the suite wants the backend's own key (user_name) for the "
        "input request; a 2025-11-25 request has no key, so the gateway names it input-1",
        "input-required-result-multiple-input-requests": "the suite wants three input requests at once; a 2025-11-25 "
        "backend asks one at a time (each becomes its own InputRequiredResult)",
        "server-stateless": "test_missing_capability checks the session's capabilities, which are the gateway's "
        "(sampling included), not the 2026-07-28 client's",
        # The backend runs tasks only in its 2026-07-28 era (fastmcp-tasks implements the extension, not
        # 2025-11-25 tasks), so a 2025-11-25 connection to it has no task to relay or bridge: its task
        # tools answer at once. (Bridging onto 2025-11-25 tasks is tested with server-everything.)
        **dict.fromkeys(_TASK_SCENARIOS, "the backend's 2025-11-25 era runs no tasks"),
    },
}


def _regressions(direct: dict[str, Outcome], through: dict[str, Outcome]) -> list[str]:
    problems = []
    for scenario, outcome in sorted(direct.items()):
        if not outcome.ok:
            continue
        gated = through.get(scenario)
        if gated is None:
            problems.append(f"{scenario}: did not run through the gateway")
        elif not gated.ok:
            problems.append(f"{scenario}: " + "; ".join(gated.failures))
    return problems


MATRIX = [(SUITES[0], "legacy"), (SUITES[0], "modern"), (SUITES[1], "modern"), (SUITES[1], "legacy")]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("suite", "backend_era"), MATRIX, ids=[f"{s.name}-via-{era}" for s, era in MATRIX])
def test_every_scenario_the_backend_passes_passes_through_the_gateway(
    suite: Suite, backend_era: str, servers: tuple[str, RunningGateway, Path]
) -> None:
    backend_url, gateway, workdir = servers
    gateway_url = gateway.url(f"/{backend_era}")
    direct = run_suite(suite, backend_url, workdir)
    passing = [name for name, outcome in direct.items() if outcome.ok]
    # The fixtures are complete: the backend alone passes the suite's scored scenarios.
    assert len(passing) >= 30, {name: o.failures for name, o in direct.items() if not o.ok}
    through = run_suite(suite, gateway_url, workdir)
    gaps = KNOWN_GAPS.get((suite.name, backend_era), {})
    regressions = _regressions(direct, through)
    assert {r.split(":", 1)[0] for r in regressions} == set(gaps), regressions
    if suite.name == "2026-07-28":
        # The gateway checks Mcp-Param-* headers itself (SEP-2243), whether or not its backend does.
        assert through["http-custom-header-server-validation"].ok, through["http-custom-header-server-validation"]

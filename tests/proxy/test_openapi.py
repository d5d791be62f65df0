"""The admin API for virtual servers against its own OpenAPI document, property-based: schemathesis
generates requests from /api/v1/openapi.json (valid and invalid documents, paths, ratings, If-Match
values) and sends them, as an admin, to a real gateway; every answer must be a documented status with
a documented body, and none a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.gateway import RunningGateway

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def gateway(backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("openapi")
    (tmp / "vs.d").mkdir()
    (tmp / "vs.d" / "probe.json").write_text(
        '{"path": "/virtual/probe", "server_name": "Probe", "tool_mappings": '
        '[{"tool_name": "echo", "backend_server_path": "/alpha"}]}'
    )
    config = {
        "backends": [{"path": "/alpha", "transport": "streamable-http", "url": backends["alpha"]}],
        "virtual_servers_dir": "vs.d",
        "virtual_servers": [{"path": "/virtual/inline", "server_name": "Inline",
                             "tool_mappings": [{"tool_name": "echo", "backend_server_path": "/alpha"}]}],
    }  # fmt: skip
    gw = RunningGateway(config, Path(tmp), "openapi")
    try:
        yield gw
    finally:
        gw.stop()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_answer_is_documented(gateway: RunningGateway) -> None:
    """Each operation with 25 generated requests (hypothesis, through schemathesis' strategies; the
    pytest integration `schemathesis.pytest.from_fixture` does not run under pytest 9)."""
    schema = schemathesis.openapi.from_url(f"{gateway.base}/api/v1/openapi.json")
    headers = {"authorization": f"Bearer {gateway.admin_token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=20)

        answers_as_documented()


def test_the_document_is_served_without_a_token(gateway: RunningGateway) -> None:
    import httpx

    document = httpx.get(f"{gateway.base}/api/v1/openapi.json", timeout=5).json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["schemas"]["VirtualServer"]["required"] == ["path", "server_name"]
    operations = {
        op["operationId"] for path in document["paths"].values() for op in path.values() if "operationId" in op
    }
    assert operations == {
        "listVirtualServers",
        "createVirtualServer",
        "getVirtualServer",
        "updateVirtualServer",
        "deleteVirtualServer",
        "toggleVirtualServer",
        "rateVirtualServer",
        "getVirtualServerRating",
    }

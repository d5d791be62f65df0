"""Gateway metrics in the Prometheus text format, served at `/metrics`.

    mcp_server_operation_duration_seconds   histogram: every client request, by method, virtual
                                             server, tool, backend and outcome (ok | error | tool_error)
    mcp_client_operation_duration_seconds   histogram: every upstream tools/call, by backend and outcome
    slicewire_requests_in_flight             gauge: client requests being served
    slicewire_guardrail_verdicts_total       counter: guardrails that fired, by virtual server, tool, rule
                                             and action
    slicewire_recorder_spans_total           counter: the flight recorder's emitted, sent, spooled,
                                             resent and dropped spans
    slicewire_sessions_open                  gauge: 2025-11-25 sessions with parts in this process
    slicewire_bus_messages_total             counter: messages between gateway processes, by kind and
                                             direction (sent, received, lost)
    slicewire_backend_up                     gauge: 1 once a backend answered discovery, else 0
    slicewire_backend_tools                  gauge: the tools a backend offers now

The names follow the OpenTelemetry MCP semantic conventions (`mcp.server.operation.duration`,
`mcp.client.operation.duration`, attributes `mcp.method.name`, `gen_ai.tool.name`) with dots made
underscores, as Prometheus requires. On the request path a measurement is a dict lookup, a bisect
and two additions (no locks: the gateway serves on one event loop); prometheus_client writes the
exposition at scrape time, when the in-flight count and the recorder's and backends' figures are
read too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics", "outcome_of"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# MCP calls are mostly fast local hops with a long tail of slow tools: 1 ms to 1 min.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SERVER_LABELS = ("mcp_method_name", "virtual_server", "gen_ai_tool_name", "backend", "outcome")
_CLIENT_LABELS = ("backend", "mcp_method_name", "outcome")


def outcome_of(status: int, error: tuple[int, str] | None, tool_error: bool = False) -> str:
    """'error' for an HTTP error or a JSON-RPC error answer (`error`: what its encoder said, see
    ErrorAnswer); 'tool_error' for a tool result with `isError: true` (the handler says so: it holds
    the result); else 'ok'."""
    if status >= 400 or error is not None:
        return "error"
    return "tool_error" if tool_error else "ok"


class _Histogram:
    """Counts per bucket (`le` = the bucket's upper bound; the last is +Inf) and the sum. Observing is
    a bisect and two additions: prometheus_client's own histograms cost ~12k instructions per
    observation (locks, Python-level bucket loop), measured; its exposition is used at scrape time."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:  # (le, observations at or under it)
        running = 0.0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, _BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class _Collector(Collector):
    """The histograms, and figures read at scrape time from the running gateway."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for name, doc, labels, histograms in (
            ("mcp_server_operation_duration_seconds",
             "Client requests served by the gateway (mcp.server.operation.duration).", _SERVER_LABELS, m.server),
            ("mcp_client_operation_duration_seconds",
             "Calls the gateway made to backends (mcp.client.operation.duration).", _CLIENT_LABELS, m.client),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=labels)
            for key, histogram in list(histograms.items()):
                family.add_metric(list(key), histogram.cumulative(), sum_value=histogram.total)
            yield family
        verdicts = CounterMetricFamily(
            "slicewire_guardrail_verdicts", "Guardrails that fired, by rule and action (deny, pin, redact, block, "
            "truncate).", labels=["virtual_server", "gen_ai_tool_name", "rule", "action"],
        )  # fmt: skip
        for key, count in list(m.verdicts.items()):
            verdicts.add_metric(list(key), count)
        yield verdicts
        state = m.read()
        in_flight = GaugeMetricFamily("slicewire_requests_in_flight", "Client requests being served.")
        in_flight.add_metric([], state["in_flight"])
        yield in_flight
        if state["recorder"] is not None:
            spans = CounterMetricFamily(
                "slicewire_recorder_spans", "Flight recorder spans, by what became of them.", labels=["state"]
            )
            for name in ("emitted", "sent", "spooled", "resent", "dropped"):
                spans.add_metric([name], state["recorder"].get(name, 0))
            yield spans
            replaced = CounterMetricFamily(
                "slicewire_recorder_payloads_replaced",
                "Payloads stored as a marker because they could not be redacted (nested too deep).",
            )
            replaced.add_metric([], state["recorder"].get("payloads_replaced", 0))
            yield replaced
        sessions = GaugeMetricFamily("slicewire_sessions_open", "2025-11-25 sessions with parts in this process.")
        sessions.add_metric([], state.get("sessions", 0))
        yield sessions
        bus = CounterMetricFamily(
            "slicewire_bus_messages", "Messages between gateway processes (docs/deployment.md), by kind and "
            "direction: sent, received, lost.", labels=["kind", "direction"],
        )  # fmt: skip
        for (kind, direction), count in sorted(state.get("bus", {}).items()):
            bus.add_metric([kind, direction], count)
        yield bus
        up = GaugeMetricFamily("slicewire_backend_up", "1 once the backend answered discovery.", labels=["backend"])
        tools = GaugeMetricFamily("slicewire_backend_tools", "Tools the backend offers now.", labels=["backend"])
        for path, offered in state["backends"].items():
            up.add_metric([path], 0 if offered is None else 1)
            tools.add_metric([path], 0 if offered is None else len(offered))
        yield up
        yield tools


class Metrics:
    """The gateway's metrics. `read` gives the scrape-time figures: {"in_flight": int,
    "recorder": counters or None, "backends": {path: tools list or None}, "sessions": int,
    "bus": {(kind, direction): count}}."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read
        self.server: dict[tuple[str, ...], _Histogram] = {}
        self.client: dict[tuple[str, ...], _Histogram] = {}
        self.verdicts: dict[tuple[str, str, str, str], int] = {}  # (virtual server, tool, rule, action)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def request(self, method: str, virtual_server: str, tool: str, backend: str, outcome: str, seconds: float) -> None:
        key = (method, virtual_server, tool, backend, outcome)
        histogram = self.server.get(key)
        if histogram is None:
            histogram = self.server[key] = _Histogram()
        histogram.observe(seconds)

    def upstream(self, backend: str, method: str, outcome: str, seconds: float) -> None:
        key = (backend, method, outcome)
        histogram = self.client.get(key)
        if histogram is None:
            histogram = self.client[key] = _Histogram()
        histogram.observe(seconds)

    def guardrail(self, virtual_server: str, tool: str, rule: str, action: str) -> None:
        key = (virtual_server, tool, rule, action)
        self.verdicts[key] = self.verdicts.get(key, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

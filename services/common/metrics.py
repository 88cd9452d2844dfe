"""Prometheus metrics shared by every service. Service-specific metrics live with their service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

# Buckets fine enough to read p95/p99 between 1 and 100 ms, the range of our latency objective.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

RPC_LATENCY = Histogram(
    "agentfactory_rpc_server_duration_seconds",
    "Server-side RPC latency by service, method and status code.",
    ["service", "method", "code"],
    buckets=LATENCY_BUCKETS,
)
RPC_TOTAL = Counter(
    "agentfactory_rpc_server_handled_total",
    "RPCs handled by service, method and status code.",
    ["service", "method", "code"],
)

POLICY_DENIALS = Counter(
    "agentfactory_policy_denials_total",
    "Requests refused by policy (PERMISSION_DENIED raised by a service), by service and rule.",
    ["service", "rule"],
)


def start_metrics_server(addr: str | None) -> None:
    """Serve /metrics on host:port (loopback in the local mesh); no-op when addr is empty."""
    if not addr:
        return
    host, _, port = addr.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")

"""The tests' OTLP/gRPC trace receiver: the same implementation as `make run`'s trace sink
(observability/trace_sink.py, built on the official opentelemetry-proto service), in memory.

`OtlpReceiver()` listens on a free loopback port; give its `endpoint` to AF_OTLP_ENDPOINT or to a
topology's `telemetry.otlp`, then assert trace trees with `wait_for`, `traces` and `children`.
"""

from __future__ import annotations

from observability.trace_sink import OtlpReceiver, Span, children, traces

ReceivedSpan = Span

__all__ = ["OtlpReceiver", "ReceivedSpan", "Span", "children", "traces"]

"""The tests' OTLP/gRPC trace receiver: the same implementation as `make run`'s trace sink
(observability/trace_sink.py, built on the official opentelemetry-proto service), in memory.

`OtlpReceiver()` listens on a free loopback port; give its `endpoint` to AF_OTLP_ENDPOINT or to a
topology's `telemetry.otlp`, then assert trace trees with `spans_when`, `traces` and `children`.
"""

from __future__ import annotations

from collections.abc import Callable

from observability.trace_sink import OtlpReceiver, Span, children, traces
from tests.harness import eventually

ReceivedSpan = Span

__all__ = ["OtlpReceiver", "ReceivedSpan", "Span", "children", "spans_when", "traces"]


def spans_when(receiver: OtlpReceiver, predicate: Callable[[list[Span]], bool], what: str) -> list[Span]:
    """Every span received so far, once `predicate(those spans)` holds. No time bound: exporters send
    what they batched eventually, a loaded machine decides when (pytest's timeout ends a hang)."""
    held: list[list[Span]] = []

    def holds() -> bool:
        spans = receiver.spans()
        if predicate(spans):
            held.append(spans)
        return bool(held)

    eventually(holds, what)
    return held[0]

"""OpenTelemetry tracing for every service: gRPC server/client spans plus a tracer for domain spans.

One `Telemetry` per process, built once by the process entry (services/common/app.py) from the
settings (AF_OTLP_ENDPOINT) and handed to `serve()` and to every channel factory: the object, not
import order or a global, decides whether a server or a channel carries tracing interceptors. Tracing
is on only when AF_OTLP_ENDPOINT is set, so the hot path pays nothing otherwise. Trace context travels
as W3C `traceparent` metadata; Envoy's OpenTelemetry tracer uses the same header, so one request
yields one trace across gateway, sidecars and services.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# Domain spans (span(), resumed(), current_traceparent()) go through OpenTelemetry's process-wide tracer
# provider, which OpenTelemetry lets a process install once. This flag only mirrors whether
# Telemetry.start installed one, so those helpers cost one read when tracing is off; interceptors never
# look at it (they come from the Telemetry object).
_domain_spans = False


class Telemetry:
    """Tracing for one process: whether it is on, the interceptors that follow from that, the flush."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider

    @classmethod
    def off(cls) -> Telemetry:
        return cls(None)

    @classmethod
    def start(cls, service_id: str, service_name: str, endpoint: str | None) -> Telemetry:
        """Tracing exported over OTLP/gRPC to `endpoint`, installed for domain spans too; off without one."""
        global _domain_spans
        if not endpoint:
            return cls.off()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": service_name, "service.instance.id": service_id})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        trace.set_tracer_provider(provider)
        _domain_spans = True
        return cls(provider)

    @property
    def on(self) -> bool:
        return self._provider is not None

    def server_interceptors(self) -> list[Any]:
        if self._provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        return [aio_server_interceptor(tracer_provider=self._provider, filter_=_not_plumbing())]

    def client_interceptors(self) -> list[Any]:
        if self._provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        return list(aio_client_interceptors(tracer_provider=self._provider, filter_=_not_plumbing()))

    def shutdown(self) -> None:
        """Flush spans still buffered (the last step of a graceful shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()


def _not_plumbing() -> Any:
    """Health checks (Envoy probes every few seconds) and reflection would drown real traces."""
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection")))


def tracing_enabled() -> bool:
    """Whether domain spans are recorded (a Telemetry with an endpoint was started in this process)."""
    return _domain_spans


def tracer() -> Tracer:
    """The tracer for domain spans (verification, cache lookups, compile, sandbox run, journal writes)."""
    return trace.get_tracer("agentfactory")


def current_traceparent() -> str:
    """The W3C `traceparent` of the span in progress ("" when none or tracing is off).

    For work that crosses a queue or a journal (the scheduler accepts an agent in one task and
    dispatches it from another, maybe after a restart): keep this string with the work item and run
    the later step inside `resumed(traceparent)`, so its spans join the request's trace."""
    if not _domain_spans:
        return ""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def resumed(traceparent: str) -> Iterator[None]:
    """Make `traceparent` the parent of spans started inside the block (no-op when empty)."""
    if not traceparent or not _domain_spans:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[None]:
    """A domain span (cache lookup, verification, compile, journal write, ...); free when tracing is off."""
    if not _domain_spans:
        yield
        return
    with tracer().start_as_current_span(name, attributes=attributes):
        yield

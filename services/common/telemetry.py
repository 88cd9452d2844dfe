"""OpenTelemetry tracing for every service: gRPC server/client spans plus a tracer for domain spans.

Tracing is on only when AF_OTLP_ENDPOINT is set, so the hot path pays nothing otherwise. Trace
context travels as W3C `traceparent` metadata; Envoy's OpenTelemetry tracer uses the same header,
so one request yields one trace across gateway, sidecars and services.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer

_provider: Any = None
# Set as soon as the settings say tracing will be on, which is before any composition root opens
# its client channels (a grpc.aio channel's interceptors are fixed when it is created).
_expected = False


def expect_tracing(endpoint: str | None) -> None:
    """Announce, at settings time, that `serve()` will switch tracing on. Channels opened from now on
    carry the client interceptors; their spans go through OpenTelemetry's proxy tracer, which binds
    to the real provider once `setup_tracing` installs it, so no span is lost to the ordering."""
    global _expected
    _expected = _expected or bool(endpoint)


def setup_tracing(service_id: str, service_name: str, endpoint: str | None) -> bool:
    """Install an OTLP/gRPC exporting tracer provider. Returns whether tracing is on."""
    global _provider
    if not endpoint or _provider is not None:
        return _provider is not None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name, "service.instance.id": service_id})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def tracing_enabled() -> bool:
    return _provider is not None


def shutdown_tracing() -> None:
    """Flush spans still buffered (called on graceful shutdown)."""
    if _provider is not None:
        _provider.shutdown()


def _not_plumbing() -> Any:
    """Health checks (Envoy probes every few seconds) and reflection would drown real traces."""
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection")))


def server_interceptors() -> list[Any]:
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_not_plumbing())]


def client_interceptors() -> list[Any]:
    if not (tracing_enabled() or _expected):
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(filter_=_not_plumbing()))


def tracer() -> Tracer:
    """The tracer for domain spans (verification, cache lookups, compile, sandbox run, journal writes)."""
    return trace.get_tracer("agentfactory")


def current_traceparent() -> str:
    """The W3C `traceparent` of the span in progress ("" when none or tracing is off).

    For work that crosses a queue or a journal (the scheduler accepts an agent in one task and
    dispatches it from another, maybe after a restart): keep this string with the work item and run
    the later step inside `resumed(traceparent)`, so its spans join the request's trace."""
    if not tracing_enabled():
        return ""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def resumed(traceparent: str) -> Iterator[None]:
    """Make `traceparent` the parent of spans started inside the block (no-op when empty)."""
    if not traceparent or not tracing_enabled():
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
    if not tracing_enabled():
        yield
        return
    with tracer().start_as_current_span(name, attributes=attributes):
        yield

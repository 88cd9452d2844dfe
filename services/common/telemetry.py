"""OpenTelemetry tracing for every service: gRPC server/client spans plus a tracer for domain spans.

Tracing is on only when AF_OTLP_ENDPOINT is set, so the hot path pays nothing otherwise. Trace
context travels as W3C `traceparent` metadata; Envoy's OpenTelemetry tracer uses the same header,
so one request yields one trace across gateway, sidecars and services.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer

_provider: Any = None


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


def server_interceptors() -> list[Any]:
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]


def client_interceptors() -> list[Any]:
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def tracer() -> Tracer:
    """The tracer for domain spans (verification, cache lookups, compile, sandbox run, journal writes)."""
    return trace.get_tracer("agentfactory")

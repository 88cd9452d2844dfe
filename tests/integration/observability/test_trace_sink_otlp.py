"""The trace sink over real OTLP/gRPC: the SDK's own exporter talking to the sink's receiver (a gRPC
server on loopback), spans stored whole and read back by the reader behind `afctl traces`."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from observability import traces as reader
from observability.trace_sink import JsonlStore, OtlpReceiver
from tests.harness_otlp import spans_when


def test_spans_exported_by_the_sdk_arrive_whole_and_are_stored(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "spans.jsonl")
    with OtlpReceiver(store=store) as receiver:
        provider = TracerProvider(resource=Resource.create({"service.name": "demo", "service.instance.id": "demo-1"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
        tracer = provider.get_tracer("test")
        with (
            tracer.start_as_current_span("outer", attributes={"k": "v", "n": 3}),
            tracer.start_as_current_span("inner") as inner,
        ):
            inner.set_status(Status(StatusCode.ERROR, "boom"))
        provider.shutdown()
        spans = spans_when(receiver, lambda s: len(s) == 2, "both spans")
    outer = next(s for s in spans if s.name == "outer")
    inner_span = next(s for s in spans if s.name == "inner")
    assert (outer.service, outer.instance, outer.kind, outer.parent_span_id) == ("demo", "demo-1", "internal", "")
    assert outer.attributes == {"k": "v", "n": 3}
    assert inner_span.parent_span_id == outer.span_id and inner_span.trace_id == outer.trace_id
    assert inner_span.error and inner_span.status_message == "boom"
    assert outer.end_ns >= inner_span.end_ns > inner_span.start_ns > 0
    assert sorted(s.name for s in reader.load_spans(store.path)) == ["inner", "outer"]

"""A real OTLP/gRPC trace receiver for tests, built on the official opentelemetry-proto service.

Services export with the stock OTLP exporter (services.common.telemetry); this receiver speaks the
same `opentelemetry.proto.collector.trace.v1.TraceService/Export` RPC and keeps every span in
memory, flattened with its resource's `service.name`, so tests can assert whole trace trees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.harness import free_port

SPAN_KINDS = {v: k.removeprefix("SPAN_KIND_").lower() for k, v in trace_pb2.Span.SpanKind.items()}


def _value(v: common_pb2.AnyValue) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else str(v)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str  # server, client, internal, ...
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, object] = field(default_factory=dict)
    status_code: int = 0  # 0 unset, 1 ok, 2 error

    def __str__(self) -> str:
        return f"{self.service}:{self.kind}:{self.name} ({self.span_id} <- {self.parent_span_id or 'root'})"


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Callable[[list[ReceivedSpan]], None]) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans: list[ReceivedSpan] = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            service = str(resource.get("service.name", ""))
            for scope in rs.scope_spans:
                for s in scope.spans:
                    spans.append(
                        ReceivedSpan(
                            service=service,
                            name=s.name,
                            kind=SPAN_KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            status_code=s.status.code,
                        )
                    )
        self._sink(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """Listens on a free loopback port; `endpoint` is what AF_OTLP_ENDPOINT should say."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._spans: list[ReceivedSpan] = []
        self._cond = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self._add), self._server)
        if self._server.add_insecure_port(self.endpoint) == 0:
            raise OSError(f"cannot bind {self.endpoint}")

    def _add(self, spans: list[ReceivedSpan]) -> None:
        with self._cond:
            self._spans.extend(spans)
            self._cond.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        with self._cond:
            return list(self._spans)

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0) -> list[ReceivedSpan]:
        """Block until `predicate(all spans so far)` holds; on timeout, fail listing what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "\n  ".join(str(s) for s in self._spans) or "(none)"
                    raise AssertionError(f"spans did not arrive within {timeout}s; received:\n  {got}")
                self._cond.wait(left)
            return list(self._spans)

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def traces(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for s in spans:
        out.setdefault(s.trace_id, []).append(s)
    return out


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> Iterator[ReceivedSpan]:
    return (s for s in spans if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id)

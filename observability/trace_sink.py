"""A small, real OTLP/gRPC trace receiver: the trace sink of `make run` and the receiver of the tests.

    python -m observability.trace_sink --listen 127.0.0.1:4317 --out var/traces/spans.jsonl

It serves `opentelemetry.proto.collector.trace.v1.TraceService/Export` (the official
opentelemetry-proto service definitions), so anything that speaks OTLP/gRPC exports to it: the
services' OpenTelemetry SDK exporter and every Envoy's OpenTelemetry tracer. Each span is flattened
with its resource's `service.name` and kept in memory (`OtlpReceiver.spans()`, for tests) and/or
appended to a JSON-lines file, one span per line, which `afctl traces` reads. The file is bounded:
past `max_bytes` it is rotated to `<file>.1` (one generation kept), so disk use stays under twice
the cap however long the mesh runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SPAN_KINDS = {v: k.removeprefix("SPAN_KIND_").lower() for k, v in trace_pb2.Span.SpanKind.items()}
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


def _value(v: common_pb2.AnyValue) -> object:
    kind = v.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return str(v) if kind else None


@dataclass(frozen=True)
class Span:
    """One received span, flattened with its resource's service name (an Envoy's id, or a service)."""

    service: str
    name: str
    kind: str  # server, client, internal, ...
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    start_ns: int = 0
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    instance: str = ""  # service.instance.id when the exporter says it

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def error(self) -> bool:
        return self.status_code == STATUS_ERROR

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, line: str) -> Span:
        return cls(**json.loads(line))

    def __str__(self) -> str:
        return f"{self.service}:{self.kind}:{self.name} ({self.span_id} <- {self.parent_span_id or 'root'})"


def spans_from_request(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    spans: list[Span] = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        service = str(resource.get("service.name", ""))
        instance = str(resource.get("service.instance.id", ""))
        for scope in rs.scope_spans:
            for s in scope.spans:
                spans.append(
                    Span(
                        service=service,
                        name=s.name,
                        kind=SPAN_KINDS.get(s.kind, str(s.kind)),
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status_code=s.status.code,
                        status_message=s.status.message,
                        instance=instance,
                    )
                )
    return spans


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Callable[[list[Span]], None]) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink(spans_from_request(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class JsonlStore:
    """Appends spans as JSON lines; rotates to `<path>.1` once the file passes `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, spans: list[Span]) -> None:
        if not spans:
            return
        text = "".join(s.to_json() + "\n" for s in spans)
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                size = f.tell()
            if size > self.max_bytes:
                # One rename: readers see either the old file or the new one, never half of either.
                os.replace(self.path, rotated(self.path))


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class OtlpReceiver:
    """An OTLP/gRPC receiver on `listen` (port 0 = a free one); `endpoint` is what exporters dial.

    Spans are kept in memory for `spans()` / `wait_for()` (bounded by `keep`, oldest dropped) and,
    with a `store`, appended to its file as well."""

    def __init__(self, listen: str = "127.0.0.1:0", store: JsonlStore | None = None, keep: int = 200_000) -> None:
        self._spans: list[Span] = []
        self._keep = keep
        self._store = store
        self._cond = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self._add), self._server)
        host = listen.rpartition(":")[0]
        self.port = self._server.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot bind {listen}")
        self.endpoint = f"{host}:{self.port}"

    def _add(self, spans: list[Span]) -> None:
        if self._store is not None:
            self._store.add(spans)
        with self._cond:
            self._spans.extend(spans)
            del self._spans[: max(0, len(self._spans) - self._keep)]
            self._cond.notify_all()

    def spans(self) -> list[Span]:
        with self._cond:
            return list(self._spans)

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float = 15.0) -> list[Span]:
        """Block until `predicate(all spans so far)` holds; on timeout, fail listing what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "\n  ".join(str(s) for s in self._spans[-200:]) or "(none)"
                    raise AssertionError(f"spans did not arrive within {timeout}s; received (last 200):\n  {got}")
                self._cond.wait(left)
            return list(self._spans)

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace=grace).wait()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def traces(spans: Sequence[Span]) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for s in spans:
        out.setdefault(s.trace_id, []).append(s)
    return out


def children(spans: Sequence[Span], parent: Span) -> Iterator[Span]:
    return (s for s in spans if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.trace_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:4317", help="host:port for OTLP/gRPC")
    parser.add_argument("--out", type=Path, default=Path("var/traces/spans.jsonl"), help="JSON-lines span file")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="rotate the file past this size")
    args = parser.parse_args(argv)
    # Memory holds only a little: the file is the record, the receiver's list serves tests.
    receiver = OtlpReceiver(args.listen, JsonlStore(args.out, args.max_bytes), keep=1000).start()
    print(f"trace sink: OTLP/gRPC on {receiver.endpoint}, spans to {args.out}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    receiver.stop(grace=2)  # finish the exports in flight
    return 0


if __name__ == "__main__":
    sys.exit(main())

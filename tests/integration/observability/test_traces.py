"""One trace per request: registry and signer export spans over OTLP to a real receiver.

A publish enters the registry (server span), which calls the signer (client span), which answers
(server span): the three must share one trace id and chain parent → child in that order. An
incoming W3C `traceparent` (what the gateway's Envoy sends) must become the trace's root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from afctl.client import Client, Endpoints
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from tests.harness import ServiceProcess
from tests.harness_otlp import OtlpReceiver, ReceivedSpan, children, spans_when

PUBLISH = "/agentfactory.registry.v1.RegistryService/PublishTemplate"
SIGN = "/agentfactory.signer.v1.SignerService/Sign"
WASM = bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
EDGE_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Client]:
    # Export every 100 ms instead of the SDK's 5 s, so the test waits for spans, not for a timer.
    env = {"AF_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    workdir: Path = tmp_path_factory.mktemp("traced")
    with (
        ServiceProcess("signer", workdir, {**env, "AF_SIGNER_BACKEND": "local"}) as signer,
        ServiceProcess("registry", workdir, {**env, "AF_SIGNER_ADDR": signer.addr}) as registry,
        Client(Endpoints(registry=registry.addr, signer=signer.addr, scheduler=registry.addr)) as client,
    ):
        yield client
        assert registry.alive() and signer.alive()
        assert "trace_id" in registry.logs(), "registry logs carry no trace id while tracing is on"


def _publish(client: Client, name: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    header = reg_pb.PublishHeader(
        manifest_json=json.dumps({"name": name, "version": "1.0.0"}).encode(), module_size=len(WASM)
    )
    requests = iter([reg_pb.PublishTemplateRequest(header=header), reg_pb.PublishTemplateRequest(chunk=WASM)])
    client.registry.PublishTemplate(requests, timeout=10, metadata=metadata)


def _chain(spans: list[ReceivedSpan], root: ReceivedSpan) -> tuple[ReceivedSpan, ReceivedSpan] | None:
    """(registry client span for Sign, signer server span under it), if both arrived."""
    for client_span in children(spans, root):
        if client_span.service == "registry" and client_span.kind == "client" and client_span.name == SIGN:
            for server_span in children(spans, client_span):
                if server_span.service == "signer" and server_span.kind == "server" and server_span.name == SIGN:
                    return client_span, server_span
    return None


def _publish_roots(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == "registry" and s.kind == "server" and s.name == PUBLISH]


def test_publish_yields_one_trace_registry_then_signer(traced: Client, receiver: OtlpReceiver) -> None:
    before = {s.span_id for s in _publish_roots(receiver.spans())}
    _publish(traced, "traced-plain")

    def complete(spans: list[ReceivedSpan]) -> bool:
        return any(_chain(spans, r) for r in _publish_roots(spans) if r.span_id not in before)

    spans = spans_when(receiver, complete, "the whole trace")
    root = next(r for r in _publish_roots(spans) if r.span_id not in before and _chain(spans, r))
    assert root.parent_span_id == "", "an untraced caller must make the registry span the root"
    client_span, server_span = _chain(spans, root) or (None, None)
    assert client_span and server_span
    assert {s.trace_id for s in (root, client_span, server_span)} == {root.trace_id}
    assert server_span.status_code != 2 and root.status_code != 2
    # Health checks and reflection are not traced: they would drown real requests.
    assert not [s for s in spans if "grpc.health" in s.name or "grpc.reflection" in s.name]


def test_incoming_traceparent_becomes_the_parent(traced: Client, receiver: OtlpReceiver) -> None:
    _publish(traced, "traced-edge", metadata=(("traceparent", f"00-{TRACE_ID}-{EDGE_SPAN}-01"),))

    def arrived(spans: list[ReceivedSpan]) -> bool:
        return any(r.trace_id == TRACE_ID and _chain(spans, r) for r in _publish_roots(spans))

    spans = spans_when(receiver, arrived, "the spans")
    root = next(r for r in _publish_roots(spans) if r.trace_id == TRACE_ID)
    assert root.parent_span_id == EDGE_SPAN
    client_span, server_span = _chain(spans, root) or (None, None)
    assert client_span and server_span and server_span.trace_id == TRACE_ID

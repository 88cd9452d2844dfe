"""The Telemetry object, not a module global or the order things were built in, decides whether a
channel carries client spans: two objects in one process, one on and one off, each gives its own
channels what it says. No server runs: a call to a closed loopback port fails at once, and the client
interceptor records its span anyway."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfactory.signer.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common import telemetry as telemetry_module
from services.common.channels import aio_channel
from services.common.telemetry import Telemetry


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed again when the block ends: connections refused


def _traced() -> tuple[Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry(provider), exporter


async def _call(telemetry: Telemetry, target: str) -> grpc.StatusCode:
    async with aio_channel(target, telemetry) as channel:
        stub = signer_service_pb2_grpc.SignerServiceStub(channel)
        try:
            await stub.GetPublicKeys(signer_service_pb2.GetPublicKeysRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    raise AssertionError("a closed port answered")


def test_each_telemetry_decides_for_its_own_channels_whatever_the_order() -> None:
    target = _closed_port()
    on, exported = _traced()
    off = Telemetry.off()
    assert on.on and not off.on

    async def calls() -> list[grpc.StatusCode]:
        # off after on, then on after off: neither leaks into the other's channels.
        return [await _call(off, target), await _call(on, target), await _call(off, target)]

    assert asyncio.run(calls()) == [grpc.StatusCode.UNAVAILABLE] * 3
    spans = exported.get_finished_spans()
    assert [s.name for s in spans] == ["/agentfactory.signer.v1.SignerService/GetPublicKeys"]
    assert spans[0].kind.name == "CLIENT"


def test_plumbing_calls_carry_no_span() -> None:
    on, exported = _traced()

    async def health_check() -> None:
        async with aio_channel(_closed_port(), on) as channel:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)

    asyncio.run(health_check())
    assert exported.get_finished_spans() == ()


def test_off_adds_no_interceptor_and_a_telemetry_made_by_hand_leaves_domain_spans_off() -> None:
    assert Telemetry.off().client_interceptors() == [] and Telemetry.off().server_interceptors() == []
    on, _ = _traced()
    assert len(on.client_interceptors()) == 4 and len(on.server_interceptors()) == 1  # one per call shape
    # Only Telemetry.start (the process entry, with AF_OTLP_ENDPOINT) installs the process-wide provider
    # that domain spans use; objects made here do not, so this test process records no domain spans.
    assert not telemetry_module.tracing_enabled()
    Telemetry.off().shutdown()  # nothing to flush: a no-op

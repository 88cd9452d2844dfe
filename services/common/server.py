"""grpc.aio server bootstrap shared by every service: health, reflection, interceptors, metrics,
and a graceful shutdown on SIGTERM/SIGINT (health goes NOT_SERVING first so the mesh drains us)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.config import Env, loopback_addr
from services.common.interceptors import ServiceInterceptor
from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.common.reflection import enable as enable_reflection
from services.common.telemetry import expect_tracing, server_interceptors, setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # explicit, so the limit is a decision and not a default
GC_GEN0_THRESHOLD = 5_000

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # The sidecar PINGs its app every 5 s (resilience.keepalive_interval in mesh/topology.yaml) to
    # find a stopped app; a client pinging more often than every 4 s gets GOAWAY.
    ("grpc.http2.min_ping_interval_without_data_ms", 4_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class ServerSettings:
    """What every service process needs to serve, read from AF_* environment variables."""

    service_id: str
    listen_addr: str
    metrics_addr: str | None
    log_level: str
    grace_seconds: float
    otlp_endpoint: str | None = None
    # How long a thread may hold the GIL while another waits for it (AF_GIL_SWITCH_INTERVAL_MS; 0 keeps
    # CPython's 5 ms). Measured with the scheduler under RunAgent load (perf/NOTES.md): 0.5 ms and 2 ms
    # gave no lower latency and less throughput than 5 ms once the journal stopped bouncing the GIL per
    # statement, so the default stays CPython's.
    switch_interval_ms: float = 0.0

    @classmethod
    def from_env(cls, env: Env, default_service_id: str, default_port: int) -> ServerSettings:
        settings = cls(
            service_id=env.str("AF_SERVICE_ID", default_service_id),
            listen_addr=loopback_addr(env.str("AF_LISTEN_ADDR", f"127.0.0.1:{default_port}"), "AF_LISTEN_ADDR"),
            metrics_addr=env.optional("AF_METRICS_ADDR"),
            log_level=env.str("AF_LOG_LEVEL", "info"),
            grace_seconds=env.float("AF_SHUTDOWN_GRACE_SECONDS", 5.0),
            otlp_endpoint=env.optional("AF_OTLP_ENDPOINT"),
            switch_interval_ms=env.float("AF_GIL_SWITCH_INTERVAL_MS", 0.0),
        )
        # Composition roots open their upstream channels before serve() runs setup_tracing; telling
        # telemetry now is what gives those channels their client spans.
        expect_tracing(settings.otlp_endpoint)
        return settings


Register = Callable[[grpc.aio.Server], Sequence[str]]
"""Adds servicers to the server and returns their full service names (for health and reflection)."""


class Readiness:
    """Service health as the gRPC health protocol reports it. A service calls set_serving() only once
    it can do its job, and set_not_serving() when it cannot (e.g. its store is not writable)."""

    def __init__(self, servicer: health.aio.HealthServicer, names: Sequence[str]) -> None:
        self._servicer = servicer
        self._names = ["", *names]

    async def set_serving(self) -> None:
        for name in self._names:
            await self._servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        for name in self._names:
            await self._servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


async def serve(
    settings: ServerSettings,
    register: Register,
    *,
    service_name: str,
    on_started: Callable[[Readiness], Awaitable[None]] | None = None,
    on_stopping: Callable[[], Awaitable[None]] | None = None,
    reflect_also: Sequence[str] = (),
) -> None:
    """Serve until SIGTERM/SIGINT. `on_started` must mark the service serving when it is ready
    (the default marks it serving at once); `on_stopping` runs after draining, before exit.
    `reflect_also` names services reflection describes besides this one's (the gateway's reflection
    upstream describes the whole API)."""
    setup_logging(settings.service_id, settings.log_level)
    if settings.switch_interval_ms > 0:
        sys.setswitchinterval(settings.switch_interval_ms / 1000)
    start_metrics_server(settings.metrics_addr)
    setup_tracing(settings.service_id, service_name, settings.otlp_endpoint)
    interceptors = [*server_interceptors(), ServiceInterceptor(service_name)]
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    # The servicer starts with the overall "" entry SERVING; say NOT_SERVING until the service is ready.
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, list(dict.fromkeys([*names, *reflect_also, health.SERVICE_NAME])))
    bound = server.add_insecure_port(settings.listen_addr)
    if bound == 0:
        raise OSError(f"could not bind {settings.listen_addr}")
    # Everything built so far (modules, descriptors, stubs, servicers) lives as long as the process: move
    # it out of the collector's sight, and collect the young generation less often. Each gRPC call makes
    # many short-lived objects; the default threshold (700) ran a collection every few calls.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    await server.start()
    readiness = Readiness(health_servicer, names)
    log.info("serving", extra={"fields": {"addr": settings.listen_addr, "services": names}})
    if on_started is not None:
        await on_started(readiness)
    else:
        await readiness.set_serving()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"fields": {"grace_seconds": settings.grace_seconds}})
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    if on_stopping is not None:
        await on_stopping()
    shutdown_tracing()
    log.info("stopped")

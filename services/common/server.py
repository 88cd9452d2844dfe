"""The grpc.aio server every service listens with: options, interceptors (tracing from the process's
Telemetry, then request guard, error mapping and metrics), health (NOT_SERVING until the service says
otherwise) and reflection. When and how it stops is the lifecycle's (services/common/lifecycle.py)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.config import ConfigError, Env, loopback_addr
from services.common.interceptors import ServiceInterceptor
from services.common.reflection import enable as enable_reflection
from services.common.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # explicit, so the limit is a decision and not a default
GC_GEN0_THRESHOLD = 5_000
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

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
        log_level = env.str("AF_LOG_LEVEL", "info").lower()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"AF_LOG_LEVEL={log_level[:40]!r} is not one of {', '.join(LOG_LEVELS)}")
        metrics_addr = env.optional("AF_METRICS_ADDR")
        if metrics_addr is not None and not metrics_addr.rpartition(":")[2].isdigit():
            raise ConfigError(f"AF_METRICS_ADDR={metrics_addr[:80]!r} must be host:port")
        grace = env.float("AF_SHUTDOWN_GRACE_SECONDS", 5.0)
        if grace < 0:
            raise ConfigError(f"AF_SHUTDOWN_GRACE_SECONDS={grace} must be >= 0")
        return cls(
            service_id=env.str("AF_SERVICE_ID", default_service_id),
            listen_addr=loopback_addr(env.str("AF_LISTEN_ADDR", f"127.0.0.1:{default_port}"), "AF_LISTEN_ADDR"),
            metrics_addr=metrics_addr,
            log_level=log_level,
            grace_seconds=grace,
            otlp_endpoint=env.optional("AF_OTLP_ENDPOINT"),
            switch_interval_ms=env.float("AF_GIL_SWITCH_INTERVAL_MS", 0.0),
        )


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


@dataclass(frozen=True)
class Listening:
    """A started server: what the lifecycle reports readiness through and stops."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    readiness: Readiness
    names: Sequence[str]


async def open_server(
    settings: ServerSettings,
    telemetry: Telemetry,
    servicers: Sequence[Register],
    *,
    service_name: str,
    reflect_also: Sequence[str] = (),
) -> Listening:
    """Register `servicers`, bind `settings.listen_addr` and start serving, health NOT_SERVING.
    `reflect_also` names services reflection describes besides this one's (the gateway's reflection
    upstream describes the whole API)."""
    interceptors = [*telemetry.server_interceptors(), ServiceInterceptor(service_name)]
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    names = [name for register in servicers for name in register(server)]
    health_servicer = health.aio.HealthServicer()
    readiness = Readiness(health_servicer, names)
    # The servicer starts with the overall "" entry SERVING; every name says NOT_SERVING until the service
    # is ready, so nothing (mesh health checks, the test harness) routes calls here before.
    await readiness.set_not_serving()
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
    log.info("serving", extra={"fields": {"addr": settings.listen_addr, "services": names}})
    return Listening(server, health_servicer, readiness, names)

"""A service made only of the kit (`python -m tests.integration.common.kit_service`): it serves nothing but
health, and logs each lifecycle step it sees, so a test can read the order a real SIGTERM produced.

Its close steps check what the kit promises came before them: the server no longer answers, the
background task has ended."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.app import Service, run_service
from services.common.config import Env
from services.common.lifecycle import App
from services.common.logs import log_event
from services.common.server import ServerSettings
from services.common.telemetry import Telemetry

log = logging.getLogger("kit_service")


@dataclass(frozen=True)
class KitSettings:
    server: ServerSettings
    ready_file: Path  # ready() returns once this file exists: the test decides when the service is ready

    @classmethod
    def from_env(cls, env: Env) -> KitSettings:
        return cls(ServerSettings.from_env(env, "kit", 7000), env.path("KIT_READY_FILE", "ready"))


async def build(settings: KitSettings, telemetry: Telemetry) -> App:
    background_ended = asyncio.Event()

    async def ready() -> bool:
        while not settings.ready_file.exists():
            await asyncio.sleep(0.05)
        log_event(log, "step", step="ready")
        return True

    async def heartbeat() -> None:
        log_event(log, "step", step="background started")
        try:
            await asyncio.Event().wait()
        finally:
            background_ended.set()
            log_event(log, "step", step="background ended")

    async def close_client() -> None:
        async with grpc.aio.insecure_channel(settings.server.listen_addr) as channel:
            try:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                answer = "answered"
            except grpc.aio.AioRpcError as exc:
                answer = exc.code().name
        log_event(log, "step", step="close client", server=answer, background_ended=background_ended.is_set())

    def close_store() -> None:
        log_event(log, "step", step="close store")

    return App(servicers=[], ready=ready, background=[heartbeat], close=[close_client, close_store])


if __name__ == "__main__":
    sys.exit(run_service(Service("kit", KitSettings.from_env, build)))

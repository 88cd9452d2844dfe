"""Composition root: settings -> sandbox, caches, upstream clients -> executor service -> gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable

import grpc

from agentfactory.executor.v1 import executor_service_pb2, executor_service_pb2_grpc
from services.common import app
from services.common.channels import aio_channel
from services.common.config import Env
from services.common.errors import AgentFactoryError
from services.common.logs import log_event, setup_logging
from services.common.server import Readiness, ServerSettings, serve
from services.executor import metrics
from services.executor.clients import RegistryClient, SignerClient
from services.executor.files import TemplateFiles
from services.executor.kvstore import KvStore
from services.executor.modules import ModuleCache
from services.executor.pool import WorkerPool
from services.executor.sandbox import Sandbox
from services.executor.service import ExecutorService
from services.executor.servicer import ExecutorServicer
from services.executor.settings import DEFAULT_PORT, ExecutorSettings
from services.executor.trust import Trust
from services.templates.policy import Policy, PolicyError
from services.templates.published import PublishedTemplate

log = logging.getLogger("services.executor")


async def _until_ok(what: str, attempt: Callable[[], Awaitable[object]], stop: asyncio.Event) -> bool:
    """Retry `attempt` with backoff until it succeeds (True) or we are stopping (False)."""
    backoff = 0.1
    while not stop.is_set():
        try:
            await attempt()
            return True
        except AgentFactoryError as exc:
            log_event(log, f"{what} not possible yet", logging.WARNING, error=exc.message, retry_in=backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, 5.0)
    return False


async def run(server: ServerSettings, settings: ExecutorSettings, policy: Policy) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(settings.engine, policy.module_bounds)
    registry_channel = aio_channel(settings.registry_addr)
    signer_channel = aio_channel(settings.signer_addr)
    signer = SignerClient(signer_channel)
    trust = Trust(signer.public_keys, policy)
    source = RegistryClient(registry_channel)
    service = ExecutorService(
        executor_id=server.service_id,
        source=source,
        trust=trust,
        modules=ModuleCache(
            sandbox,
            settings.data_dir,
            settings.module_cache_entries,
            policy.max_module_bytes,
            policy.max_module_imports,
            memory_bytes=settings.module_memory_bytes,
            disk_bytes=settings.module_disk_bytes,
        ),
        sandbox=sandbox,
        pool=WorkerPool(settings.min_workers, settings.max_workers, settings.max_queue, settings.idle_seconds),
        kv=KvStore(settings.data_dir / "kv.sqlite3"),
        policy=policy,
        inline_fuel=settings.inline_fuel,
        files=TemplateFiles(
            settings.data_dir / "files", settings.files_cache_bytes, policy.file_bounds, source.fetch_module
        ),
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def refresh_keys_periodically() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.keys_refresh_seconds)
            with contextlib.suppress(AgentFactoryError):
                await trust.refresh()  # learns revocations without a run having to miss first

    async def follow_registry() -> None:
        # In the background, after SERVING: what to watch from, then the watch and the warm-up side by side
        # (a publish during a long warm-up is precompiled at once). Runs never wait for either: a module not
        # loaded yet loads on its first run (disk, else registry), as after any eviction.
        listed: list[list[PublishedTemplate]] = []

        async def list_catalog() -> None:
            listed.append(await service.catalog())

        if not await _until_ok("listing templates", list_catalog, stop):
            return
        templates = listed[0]
        tasks.append(asyncio.create_task(service.watch(stop)))
        await service.fill(templates)

    async def follow_key_pushes() -> None:
        # The signer pushes every key-set change: a revocation reaches this executor within about a
        # second. The periodic refresh above stays as the fallback while the stream is down.
        backoff = 0.2
        while not stop.is_set():
            try:
                async for keys, min_versions in signer.watch_keys():
                    trust.apply(keys, min_versions)
                    metrics.KEY_PUSHES.inc()
                    backoff = 0.2
            except AgentFactoryError as exc:
                log_event(log, "signer key watch interrupted", logging.INFO, error=exc.message, retry_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    async def become_ready(readiness: Readiness) -> None:
        # SERVING as soon as runs can be verified (keys): start-up time does not grow with the catalog.
        if not await _until_ok("fetching public keys", trust.refresh, stop):
            return
        await readiness.set_serving()
        log_event(log, "executor ready", fingerprint=sandbox.fingerprint)
        tasks.append(asyncio.create_task(follow_registry()))
        tasks.append(asyncio.create_task(refresh_keys_periodically()))
        if settings.keys_watch:
            tasks.append(asyncio.create_task(follow_key_pushes()))

    async def on_started(readiness: Readiness) -> None:
        # grpc's aio HealthServicer starts with the overall "" entry SERVING; until the keys are fetched,
        # nothing (mesh health checks, the test harness) may route runs here.
        await readiness.set_not_serving()
        tasks.append(asyncio.create_task(become_ready(readiness)))

    async def on_stopping() -> None:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def register(grpc_server: grpc.aio.Server) -> list[str]:
        executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(ExecutorServicer(service), grpc_server)
        return [executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name]

    try:
        await serve(server, register, service_name="executor", on_started=on_started, on_stopping=on_stopping)
    finally:
        service.pool.close()
        sandbox.close()
        await registry_channel.close()
        await signer_channel.close()


def configure(env: Env) -> tuple[ServerSettings, ExecutorSettings, Policy]:
    server = ServerSettings.from_env(env, "executor", DEFAULT_PORT)
    settings = ExecutorSettings.from_env(env)
    return server, settings, Policy.load(settings.policy_file)


async def start(config: tuple[ServerSettings, ExecutorSettings, Policy]) -> None:
    server, settings, policy = config
    setup_logging(server.service_id, server.log_level)
    await run(server, settings, policy)


if __name__ == "__main__":
    sys.exit(app.run_service("executor", configure, start, setting_errors=(PolicyError,)))

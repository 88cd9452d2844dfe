"""The executor's wiring: settings → sandbox, caches, upstream clients → ExecutorService → App.

SERVING as soon as runs can be verified (the signer's public keys), so start-up time does not grow with
the catalog; the warm-up, the registry watch and the key refreshes run in the background after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from agentfactory.executor.v1 import executor_service_pb2, executor_service_pb2_grpc
from services.common.channels import aio_channel
from services.common.errors import AgentFactoryError
from services.common.lifecycle import App
from services.common.logs import log_event
from services.common.telemetry import Telemetry
from services.executor import metrics, run_dirs
from services.executor.clients import RegistryClient, SignerClient
from services.executor.files import TemplateFiles
from services.executor.kvstore import KvStore
from services.executor.modules import ModuleCache
from services.executor.pool import WorkerPool
from services.executor.sandbox import Sandbox
from services.executor.service import ExecutorService
from services.executor.servicer import ExecutorServicer
from services.executor.settings import ExecutorSettings
from services.executor.trust import Trust
from services.templates.published import PublishedTemplate

log = logging.getLogger("services.executor")

SERVICE_NAME = executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name


async def until_ok(what: str, attempt: Callable[[], Awaitable[object]], stop: asyncio.Event) -> bool:
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


async def build(settings: ExecutorSettings, telemetry: Telemetry) -> App:
    policy = settings.policy
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Before anything can run: what an earlier process left mid-run (killed) goes, runs start clean.
    await asyncio.to_thread(run_dirs.sweep, settings.run_root)
    sandbox = Sandbox(
        settings.engine, policy.module_bounds, settings.compile_budget, settings.scratch, settings.max_descriptors
    )
    registry_channel = aio_channel(settings.registry_addr, telemetry)
    signer_channel = aio_channel(settings.signer_addr, telemetry)
    signer = SignerClient(signer_channel)
    trust = Trust(signer.public_keys, policy)
    source = RegistryClient(registry_channel)
    service = ExecutorService(
        executor_id=settings.server.service_id,
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
    stopping = asyncio.Event()

    async def ready() -> bool:
        if not await until_ok("fetching public keys", trust.refresh, stopping):
            return False
        log_event(log, "executor ready", fingerprint=sandbox.fingerprint)
        return True

    async def refresh_keys_periodically() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), settings.keys_refresh_seconds)
            with contextlib.suppress(AgentFactoryError):
                await trust.refresh()  # learns revocations without a run having to miss first

    async def follow_registry() -> None:
        # What to watch from, then the watch and the warm-up side by side (a publish during a long warm-up
        # is precompiled at once). Runs never wait for either: a module not loaded yet loads on its first
        # run (disk, else registry), as after any eviction.
        listed: list[PublishedTemplate] = []

        async def list_catalog() -> None:
            listed.extend(await service.catalog())

        if not await until_ok("listing templates", list_catalog, stopping):
            return

        async def warm_up() -> None:
            try:
                await service.fill(listed)
            except AgentFactoryError as exc:  # what is left cold loads on its first run
                log_event(log, "warm-up stopped", logging.WARNING, error=exc.message)

        await asyncio.gather(service.watch(stopping), warm_up())

    async def follow_key_pushes() -> None:
        # The signer pushes every key-set change: a revocation reaches this executor within about a
        # second. The periodic refresh above stays as the fallback while the stream is down.
        backoff = 0.2
        while not stopping.is_set():
            try:
                async for keys, min_versions in signer.watch_keys():
                    trust.apply(keys, min_versions)
                    metrics.KEY_PUSHES.inc()
                    backoff = 0.2
            except AgentFactoryError as exc:
                log_event(log, "signer key watch interrupted", logging.INFO, error=exc.message, retry_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    def register(server: grpc.aio.Server) -> list[str]:
        executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(ExecutorServicer(service), server)
        return [SERVICE_NAME]

    background = [follow_registry, refresh_keys_periodically]
    if settings.keys_watch:
        background.append(follow_key_pushes)
    return App(
        servicers=[register],
        ready=ready,
        background=background,
        # The pool's threads run guests in the sandbox's engine: the pool goes first.
        close=[service.pool.close, sandbox.close, registry_channel.close, signer_channel.close],
        stopping=stopping,
    )

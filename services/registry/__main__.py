"""Composition root: settings → store, policy, signer client, cache, watch hub → Registry → serve()."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from agentfactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from services.common import app
from services.common.cache import LruTtlCache
from services.common.config import ConfigError, Env
from services.common.errors import AgentFactoryError, Unavailable
from services.common.logs import log_event, setup_logging
from services.common.postgres import is_unreachable
from services.common.server import Readiness, ServerSettings, serve
from services.registry.ports import TemplateStore
from services.registry.service import Registry
from services.registry.servicer import RegistryServicer
from services.registry.signer_client import GrpcSigner
from services.registry.storage import RegistryStore
from services.registry.store_pg import PgRegistryStore
from services.registry.watch import WatchHub
from services.registry.watch_feed import follow_store
from services.templates.policy import DEFAULT_POLICY_PATH, Policy, PolicyError
from services.templates.published import PublishedTemplate

log = logging.getLogger("services.registry")

SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


@dataclass(frozen=True)
class RegistrySettings:
    server: ServerSettings
    data_dir: Path
    signer_addr: str
    signer_timeout_seconds: float
    policy_file: Path
    cache_entries: int
    cache_ttl_seconds: float
    watch_queue: int
    # PostgreSQL DSN of the store every registry replica shares; unset: the embedded store in data_dir.
    database_url: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> RegistrySettings:
        settings = cls(
            server=ServerSettings.from_env(env, "registry", 7110),
            data_dir=env.path("AF_DATA_DIR", "var/registry"),
            signer_addr=env.str("AF_SIGNER_ADDR", "127.0.0.1:7120"),
            signer_timeout_seconds=env.float("AF_SIGNER_TIMEOUT_SECONDS", 5.0),
            policy_file=env.path("AF_POLICY_FILE", str(DEFAULT_POLICY_PATH)),
            cache_entries=env.int("AF_REGISTRY_CACHE_ENTRIES", 1024),
            cache_ttl_seconds=env.float("AF_REGISTRY_CACHE_TTL_SECONDS", 300.0),
            watch_queue=env.int("AF_REGISTRY_WATCH_QUEUE", 1024),
            database_url=env.optional("AF_DATABASE_URL"),
        )
        if settings.cache_entries < 0:
            raise ConfigError("AF_REGISTRY_CACHE_ENTRIES must be >= 0")
        if settings.cache_ttl_seconds <= 0:
            raise ConfigError("AF_REGISTRY_CACHE_TTL_SECONDS must be > 0")
        if settings.watch_queue < 1:
            raise ConfigError("AF_REGISTRY_WATCH_QUEUE must be >= 1")
        if settings.signer_timeout_seconds <= 0:
            raise ConfigError("AF_SIGNER_TIMEOUT_SECONDS must be > 0")
        return settings


def open_store(settings: RegistrySettings) -> TemplateStore:
    """The embedded store, or the shared PostgreSQL one; waits (logging) while the database is unreachable
    instead of exiting, so a database outage at start-up is not a crash loop."""
    if settings.database_url is None:
        return RegistryStore(settings.data_dir)
    delay = 0.5
    while True:
        try:
            return PgRegistryStore(settings.database_url)
        except Exception as exc:
            if not is_unreachable(exc) and not isinstance(exc, Unavailable):
                raise
            log_event(log, "database unreachable; retrying", logging.WARNING, error=type(exc).__name__, delay=delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


async def run(settings: RegistrySettings, policy: Policy, store: TemplateStore, writable: bool) -> None:
    signer = GrpcSigner(settings.signer_addr, settings.signer_timeout_seconds)
    cache: LruTtlCache[tuple[str, str], PublishedTemplate] = LruTtlCache(
        "registry_manifest", settings.cache_entries, settings.cache_ttl_seconds
    )
    registry = Registry(store, policy, signer, cache, WatchHub(settings.watch_queue))

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def follow_signer_keys() -> None:
        # Marks reads of templates signed by a revoked (or lost) key version (the scheduler refuses those),
        # and keeps every public key version in the store, so backups carry the key set, revoked ones too.
        backoff = 0.2
        while not stop.is_set():
            try:
                async for seen in signer.watch_keys():
                    registry.live_keys = seen.live
                    backoff = 0.2
                    try:
                        await asyncio.to_thread(store.record_keys, seen.keys, seen.min_versions)
                    except Exception as exc:  # a full disk must not stop the revocation marks
                        log_event(log, "could not record the signer's keys", logging.ERROR, error=repr(exc))
            except AgentFactoryError as exc:
                log_event(log, "signer key watch interrupted", logging.INFO, error=exc.message, retry_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    def register(server: grpc.aio.Server) -> list[str]:
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(registry), server)
        return [SERVICE_NAME]

    async def on_started(readiness: Readiness) -> None:
        # Reads would work without a writable store, but a registry that cannot accept a publish
        # must not attract traffic: it stays NOT_SERVING and says why in the log.
        tasks.append(asyncio.create_task(follow_signer_keys()))
        if store.shared:  # every replica's publishes reach this one's watchers, in revision order
            tasks.append(asyncio.create_task(follow_store(registry, registry.feed_wake)))
        if writable:
            await readiness.set_serving()

    async def on_stopping() -> None:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await signer.close()
        store.close()

    await serve(settings.server, register, service_name="registry", on_started=on_started, on_stopping=on_stopping)


def configure(env: Env) -> tuple[RegistrySettings, Policy]:
    settings = RegistrySettings.from_env(env)
    return settings, Policy.load(settings.policy_file)


async def start(config: tuple[RegistrySettings, Policy]) -> int | None:
    settings, policy = config
    setup_logging(settings.server.service_id, settings.server.log_level)
    # The store opens before anything serves (nothing else runs on the loop yet, so blocking is harmless).
    try:
        store = open_store(settings)
    except Exception as exc:
        log_event(
            log, "cannot open the registry store", level=logging.ERROR, data_dir=str(settings.data_dir), error=repr(exc)
        )
        return 1
    writable = True
    try:
        store.sweep()  # before serving: nothing can be in flight yet
        store.check_writable()
    except Exception as exc:
        writable = False
        log_event(
            log,
            "registry store is not writable; staying NOT_SERVING",
            level=logging.ERROR,
            data_dir=str(settings.data_dir),
            error=repr(exc),
        )
    log_event(log, "registry store open", data_dir=str(settings.data_dir), revision=store.current_revision())
    await run(settings, policy, store, writable)
    return None


if __name__ == "__main__":
    sys.exit(app.run_service("registry", configure, start, setting_errors=(PolicyError,)))

"""The registry's wiring: settings → store, policy, signer client, cache, watch hub → Registry → App."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from agentfactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from services.common.app import CannotStart
from services.common.cache import LruTtlCache
from services.common.errors import AgentFactoryError, Unavailable
from services.common.lifecycle import App
from services.common.logs import log_event
from services.common.postgres import is_unreachable
from services.common.telemetry import Telemetry
from services.registry.clients import GrpcSigner
from services.registry.ports import TemplateStore
from services.registry.service import Registry
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings
from services.registry.storage import RegistryStore
from services.registry.store_pg import PgRegistryStore
from services.registry.watch import WatchHub
from services.registry.watch_feed import follow_store
from services.templates.published import PublishedTemplate

log = logging.getLogger("services.registry")

SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


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
            time.sleep(delay)  # nothing else runs on the loop yet: blocking is harmless
            delay = min(delay * 2, 5.0)


def _open_checked(settings: RegistrySettings) -> tuple[TemplateStore, bool]:
    """The store and whether it is writable. Reads would work without a writable store, but a registry
    that cannot accept a publish must not attract traffic: it stays NOT_SERVING and says why in the log."""
    try:
        store = open_store(settings)
    except Exception as exc:
        raise CannotStart(f"cannot open the registry store in {settings.data_dir}: {exc!r}") from exc
    writable = True
    try:
        store.sweep()  # before serving: nothing can be in flight yet
        store.check_writable()
    except Exception as exc:
        writable = False
        log_event(log, "registry store is not writable; staying NOT_SERVING", logging.ERROR,
                  data_dir=str(settings.data_dir), error=repr(exc))  # fmt: skip
    log_event(log, "registry store open", data_dir=str(settings.data_dir), revision=store.current_revision())
    return store, writable


async def build(settings: RegistrySettings, telemetry: Telemetry) -> App:
    store, writable = _open_checked(settings)
    signer = GrpcSigner(settings.signer_addr, settings.signer_timeout_seconds, telemetry)
    cache: LruTtlCache[tuple[str, str], PublishedTemplate] = LruTtlCache(
        "registry_manifest", settings.cache_entries, settings.cache_ttl_seconds
    )
    registry = Registry(store, settings.policy, signer, cache, WatchHub(settings.watch_queue))
    stopping = asyncio.Event()

    async def follow_signer_keys() -> None:
        # Marks reads of templates signed by a revoked (or lost) key version (the scheduler refuses those),
        # and keeps every public key version in the store, so backups carry the key set, revoked ones too.
        backoff = 0.2
        while not stopping.is_set():
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
                await asyncio.wait_for(stopping.wait(), backoff)
            backoff = min(backoff * 2, 5.0)

    async def follow_shared_store() -> None:
        # Every replica's publishes reach this one's watchers, in revision order.
        await follow_store(registry, registry.feed_wake)

    def register(server: grpc.aio.Server) -> list[str]:
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(registry), server)
        return [SERVICE_NAME]

    async def ready() -> bool:
        return writable

    return App(
        servicers=[register],
        ready=ready,
        background=[follow_signer_keys, follow_shared_store] if store.shared else [follow_signer_keys],
        close=[signer.close, store.close],
        stopping=stopping,
    )

"""The scheduler's wiring: settings → journal, registry and executor clients, peers → SchedulerService → App."""

from __future__ import annotations

import asyncio
import logging
import uuid

from services.common.lifecycle import App, Close
from services.common.logs import log_event
from services.common.postgres import is_unreachable
from services.common.reflection import api_service_names
from services.common.telemetry import Telemetry
from services.scheduler.clients import GrpcExecutors, RegistryTemplates
from services.scheduler.journal import Journal
from services.scheduler.journal_pg import PgJournal
from services.scheduler.peers import GrpcPeers
from services.scheduler.ports import AgentJournal
from services.scheduler.service import SchedulerService
from services.scheduler.servicer import register
from services.scheduler.settings import SchedulerSettings

log = logging.getLogger("services.scheduler")


async def open_shared_journal(settings: SchedulerSettings) -> PgJournal:
    """The PostgreSQL journal; waits (logging) while the database is unreachable instead of exiting, so a
    database outage at start-up is not a crash loop."""
    assert settings.database_url is not None
    # A new owner per process: a restart's agents are orphans.
    owner = f"{settings.server.service_id}-{uuid.uuid4().hex[:8]}"
    delay = 0.5
    while True:
        try:
            return await PgJournal.open(settings.database_url, owner, settings.lease_seconds,
                                        settings.database_pool_size)  # fmt: skip
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            log_event(log, "database unreachable; retrying", logging.WARNING, error=type(exc).__name__, delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def build(settings: SchedulerSettings, telemetry: Telemetry) -> App:
    shared = settings.database_url is not None
    journal: AgentJournal
    close_journal: Close
    if shared:
        journal = pg = await open_shared_journal(settings)
        close_journal = pg.close
    else:
        journal = sqlite = Journal.open(settings.data_dir, settings.journal_synchronous)
        close_journal = sqlite.close
    templates = RegistryTemplates(settings.registry_addr, telemetry, settings.template_cache_ttl_seconds)
    executors = GrpcExecutors(settings.executor_addrs, telemetry)
    service = SchedulerService(journal, templates, executors, settings.service)
    peers = None
    # With a shared journal every replica of every color answers for every agent: no peers to ask.
    if settings.peers_addr and settings.peer_colors and not shared:
        peers = GrpcPeers(settings.peers_addr, settings.peer_colors, settings.server.service_id, telemetry)

    async def ready() -> bool:
        # Serving only once recovery has re-queued or failed everything the journal left unfinished.
        await service.start(shared_journal=shared)
        return True

    async def stop_dispatching() -> None:
        await service.stop(settings.server.grace_seconds)

    close: list[Close] = [stop_dispatching, executors.close, templates.close]
    if peers is not None:
        close.append(peers.close)
    close.append(close_journal)
    return App(
        servicers=[register(service, peers)],
        ready=ready,
        close=close,
        # The gateway sends every client's reflection to a scheduler (mesh/topology.yaml).
        reflect_also=api_service_names(),
    )

"""Composition root: settings → journal and clients → service → serve()."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid

from services.common import app
from services.common.config import Env
from services.common.logs import log_event
from services.common.postgres import is_unreachable
from services.common.reflection import api_service_names
from services.common.server import Readiness, ServerSettings, serve
from services.scheduler.clients import GrpcExecutors, RegistryTemplates
from services.scheduler.journal import Journal
from services.scheduler.journal_pg import PgJournal
from services.scheduler.peers import Peers
from services.scheduler.ports import AgentJournal
from services.scheduler.service import SchedulerService
from services.scheduler.servicer import register
from services.scheduler.settings import DEFAULT_PORT, SchedulerSettings

log = logging.getLogger("services.scheduler")


async def open_shared_journal(settings: SchedulerSettings, service_id: str) -> PgJournal:
    """The PostgreSQL journal; waits (logging) while the database is unreachable instead of exiting, so a
    database outage at start-up is not a crash loop."""
    assert settings.database_url is not None
    owner = f"{service_id}-{uuid.uuid4().hex[:8]}"  # a new owner per process: a restart's agents are orphans
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


def configure(env: Env) -> tuple[ServerSettings, SchedulerSettings]:
    return ServerSettings.from_env(env, "scheduler", DEFAULT_PORT), SchedulerSettings.from_env(env)


async def run(config: tuple[ServerSettings, SchedulerSettings]) -> None:
    server_settings, settings = config
    shared = settings.database_url is not None
    journal: AgentJournal
    if shared:
        journal = await open_shared_journal(settings, server_settings.service_id)
    else:
        journal = Journal.open(settings.data_dir, settings.journal_synchronous)
    templates = RegistryTemplates(settings.registry_addr, settings.template_cache_ttl_seconds)
    executors = GrpcExecutors(settings.executor_addrs)
    service = SchedulerService(journal, templates, executors, settings.service)
    peers = None
    # With a shared journal every replica of every color answers for every agent: no peers to ask.
    if settings.peers_addr and settings.peer_colors and not shared:
        peers = Peers(settings.peers_addr, settings.peer_colors, server_settings.service_id)

    async def on_started(readiness: Readiness) -> None:
        # Serving only once recovery has re-queued or failed everything the journal left unfinished.
        await service.start(shared_journal=shared)
        await readiness.set_serving()

    async def on_stopping() -> None:
        await service.stop(server_settings.grace_seconds)
        await executors.close()
        await templates.close()
        if peers is not None:
            await peers.close()
        if isinstance(journal, PgJournal):
            await journal.close()
        else:
            journal.close()

    await serve(
        server_settings,
        register(service, peers),
        service_name="scheduler",
        on_started=on_started,
        on_stopping=on_stopping,
        # The gateway sends every client's reflection to a scheduler (mesh/topology.yaml).
        reflect_also=api_service_names(),
    )


if __name__ == "__main__":
    sys.exit(app.run_service("scheduler", configure, run))

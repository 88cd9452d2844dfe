"""Composition root: settings → journal and clients → service → serve()."""

from __future__ import annotations

from services.common import event_loop
from services.common.config import Env
from services.common.reflection import api_service_names
from services.common.server import Readiness, ServerSettings, serve
from services.scheduler.clients import GrpcExecutors, RegistryTemplates
from services.scheduler.journal import Journal
from services.scheduler.peers import Peers
from services.scheduler.service import SchedulerService
from services.scheduler.servicer import register
from services.scheduler.settings import DEFAULT_PORT, SchedulerSettings


async def main() -> None:
    env = Env()
    server_settings = ServerSettings.from_env(env, "scheduler", DEFAULT_PORT)
    settings = SchedulerSettings.from_env(env)
    journal = Journal.open(settings.data_dir, settings.journal_synchronous)
    templates = RegistryTemplates(settings.registry_addr, settings.template_cache_ttl_seconds)
    executors = GrpcExecutors(settings.executor_addrs)
    service = SchedulerService(journal, templates, executors, settings.service)
    peers = None
    if settings.peers_addr and settings.peer_colors:
        peers = Peers(settings.peers_addr, settings.peer_colors, server_settings.service_id)

    async def on_started(readiness: Readiness) -> None:
        # Serving only once recovery has re-queued or failed everything the journal left unfinished.
        await service.start()
        await readiness.set_serving()

    async def on_stopping() -> None:
        await service.stop(server_settings.grace_seconds)
        await executors.close()
        await templates.close()
        if peers is not None:
            await peers.close()
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
    event_loop.run(main())

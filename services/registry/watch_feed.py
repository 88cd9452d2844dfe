"""Watch events of a shared (PostgreSQL) registry store: every replica follows the store's events by
revision and is the only source of its own hub's live events, so a watcher on any replica sees every
publish from every replica, in revision order, with no gap (revisions are gapless and commit in order,
store_pg.py). A local write wakes the follower at once; other replicas' writes are seen within
`interval` seconds. Each event also drops the template from this replica's cache (a deprecation or a
re-sign on another replica must not be served stale for the cache's TTL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.errors import AgentFactoryError
from services.common.logs import log_event
from services.registry.service import REPLAY_PAGE, Registry

log = logging.getLogger(__name__)


async def follow_store(registry: Registry, wake: asyncio.Event, interval: float = 0.1) -> None:
    last = await registry._io(registry.store.current_revision)
    while True:
        try:
            rows = await registry._io(registry.store.events_after, last, REPLAY_PAGE)
            for row in rows:
                registry.cache.invalidate((row.name, row.version))
                registry.hub.publish(await registry._event(row.revision, row.kind, row.name, row.version))
                last = row.revision
            if len(rows) == REPLAY_PAGE:
                continue
        except AgentFactoryError as exc:  # the database is away: watchers wait, the feed resumes from `last`
            log_event(log, "watch feed could not read events", logging.WARNING, error=exc.message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)
        wake.clear()

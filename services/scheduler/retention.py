"""Retention of finished agents: the policy, the background job that applies it, and what an expired id says.

Journal-independent: an adapter provides the five primitives of `RetentionJournal` (the SQLite journal in
journal.py does; a PostgreSQL adapter implements the same five and reuses everything here). What the
policy means:
- a finished agent (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT) is deleted once it finished more than
  `max_age_seconds` ago, and beyond the newest `keep_per_template` finished agents of its template;
  unfinished agents are never touched;
- a deleted id leaves a tombstone for `tombstone_seconds` (and among the newest `max_tombstones`), so
  GetAgent answers NOT_FOUND saying it expired (and when) instead of "does not exist"; tombstones are
  pruned by the same job, so the journal stays bounded under a constant load.

The job deletes in batches of `batch` ids, each its own journal write, and yields between batches: a large
backlog (a first run on an old journal) never holds the event loop or the writer for long. Finding the
ids is a read the adapter does off the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import Counter, Gauge

from services.common.config import ConfigError, Env
from services.common.errors import AgentFactoryError
from services.common.logs import log_event

log = logging.getLogger(__name__)

EXPIRED = Counter(
    "agentfactory_scheduler_agents_expired_total", "Finished agents deleted by retention, by rule.", ["rule"]
)
TOMBSTONES_PRUNED = Counter(
    "agentfactory_scheduler_tombstones_pruned_total", "Tombstones of expired agents deleted after their own period."
)
LAST_PASS = Gauge("agentfactory_scheduler_retention_last_pass_timestamp_seconds", "When retention last completed.")


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_seconds: float | None = 7 * 24 * 3600.0  # None: no age limit
    keep_per_template: int | None = None  # None: no count limit
    tombstone_seconds: float = 30 * 24 * 3600.0
    max_tombstones: int = 100_000  # and at most this many (the newest), whatever their age
    interval_seconds: float = 60.0
    batch: int = 200

    def __post_init__(self) -> None:
        if self.max_age_seconds is not None and self.max_age_seconds <= 0:
            raise ValueError("the retention period must be positive (or unset: keep forever)")
        if self.keep_per_template is not None and self.keep_per_template < 0:
            raise ValueError("the per-template count must be >= 0 (or unset: no count limit)")
        if self.tombstone_seconds < 0 or self.max_tombstones < 0 or self.interval_seconds <= 0 or self.batch <= 0:
            raise ValueError("tombstone period and count >= 0, interval > 0 and batch > 0 are required")

    @classmethod
    def from_env(cls, env: Env) -> RetentionPolicy:
        """AF_RETENTION_SECONDS (7 days; 0 keeps finished agents forever), AF_RETENTION_PER_TEMPLATE (unset
        or 0: no count limit), AF_RETENTION_TOMBSTONE_SECONDS (30 days), AF_RETENTION_TOMBSTONES
        (100,000), AF_RETENTION_INTERVAL_SECONDS (60), AF_RETENTION_BATCH (200)."""
        age = env.float("AF_RETENTION_SECONDS", 7 * 24 * 3600.0)
        per_template = env.int("AF_RETENTION_PER_TEMPLATE", 0)
        if age < 0 or per_template < 0:
            raise ConfigError("AF_RETENTION_SECONDS and AF_RETENTION_PER_TEMPLATE must be >= 0 (0: no limit)")
        try:
            return cls(
                max_age_seconds=age if age > 0 else None,
                keep_per_template=per_template if per_template > 0 else None,
                tombstone_seconds=env.float("AF_RETENTION_TOMBSTONE_SECONDS", 30 * 24 * 3600.0),
                max_tombstones=env.int("AF_RETENTION_TOMBSTONES", 100_000),
                interval_seconds=env.float("AF_RETENTION_INTERVAL_SECONDS", 60.0),
                batch=env.int("AF_RETENTION_BATCH", 200),
            )
        except ValueError as exc:
            raise ConfigError(f"retention settings: {exc}") from exc

    @property
    def enabled(self) -> bool:
        return self.max_age_seconds is not None or self.keep_per_template is not None

    def describe(self) -> str:
        rules = []
        if self.max_age_seconds is not None:
            rules.append(f"for {_duration(self.max_age_seconds)} after they finish")
        if self.keep_per_template is not None:
            rules.append(f"at most {self.keep_per_template} per template")
        return "finished agents are kept " + (" and ".join(rules) if rules else "forever")


@runtime_checkable
class RetentionJournal(Protocol):
    """What retention needs from a journal. Times are microseconds since the epoch."""

    async def expired_ids(
        self, finished_before_us: int | None, keep_per_template: int | None, limit: int
    ) -> list[tuple[str, str]]:
        """Up to `limit` (id, rule) of finished agents past the policy: finished before the cut-off (rule
        "age") or beyond the newest `keep_per_template` finished of their template (rule "count").
        Never an unfinished agent. Must not block the event loop."""
        ...

    async def delete_expired(self, ids: Sequence[str], now_us: int) -> int:
        """Delete these agents if still finished (with everything indexed for them) and leave a tombstone
        for each; returns how many were deleted. One journal write."""
        ...

    async def prune_tombstones(self, before_us: int, limit: int) -> int:
        """Delete up to `limit` tombstones written before `before_us`; returns how many."""
        ...

    async def tombstone_cutoff(self, keep: int) -> int | None:
        """When the newest tombstone beyond the newest `keep` was written (None if there are at most `keep`).
        Must not block the event loop."""
        ...

    async def expired_at(self, agent_id: str) -> int | None:
        """When this id was deleted by retention (its tombstone), or None."""
        ...


class Retention:
    def __init__(self, journal: RetentionJournal, policy: RetentionPolicy) -> None:
        self.journal = journal
        self.policy = policy

    async def run_once(self, now: float | None = None) -> int:
        """Apply the policy until nothing is left to delete; returns how many agents were deleted."""
        now = time.time() if now is None else now
        policy = self.policy
        cutoff = None if policy.max_age_seconds is None else round((now - policy.max_age_seconds) * 1_000_000)
        deleted = 0
        if policy.enabled:
            while True:
                found = await self.journal.expired_ids(cutoff, policy.keep_per_template, policy.batch)
                if not found:
                    break
                count = await self.journal.delete_expired([agent_id for agent_id, _ in found], round(now * 1_000_000))
                for _, rule in found:
                    EXPIRED.labels(rule).inc()
                deleted += count
                if len(found) < policy.batch or count == 0:
                    break
                await asyncio.sleep(0)  # let the hot path in between batches
        horizon = round((now - policy.tombstone_seconds) * 1_000_000)
        cutoff = await self.journal.tombstone_cutoff(policy.max_tombstones)
        if cutoff is not None:  # past the count: the oldest go, even if younger than the period
            horizon = max(horizon, cutoff + 1)  # at most `max_tombstones` stay (fewer if times tie)
        while (pruned := await self.journal.prune_tombstones(horizon, policy.batch)) > 0:
            TOMBSTONES_PRUNED.inc(pruned)
            if pruned < policy.batch:
                break
            await asyncio.sleep(0)
        LAST_PASS.set(now)
        return deleted

    async def run(self, stop: asyncio.Event) -> None:
        """Every `interval_seconds` until `stop`; a failed pass is logged and retried at the next one."""
        while not stop.is_set():
            try:
                deleted = await self.run_once()
                if deleted:
                    log_event(log, "retention deleted finished agents", deleted=deleted)
            except AgentFactoryError as exc:
                log_event(log, "retention pass failed", logging.WARNING, error=exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.policy.interval_seconds)

    async def explain_missing(self, agent_id: str) -> str | None:
        """The NOT_FOUND message for an id retention deleted, or None if it has no tombstone."""
        when = await self.journal.expired_at(agent_id)
        if when is None:
            return None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when / 1_000_000))
        return f"agent {agent_id!r} expired: deleted at {stamp} by the retention policy ({self.policy.describe()})"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"

"""A bounded LRU cache with a time-to-live, counted in Prometheus. Thread-safe, pure Python.

Used in front of slower tiers (disk, the registry over the network). Every lookup counts a hit or a
miss; every entry that leaves because of capacity or age counts an eviction; every hit records how
old the served entry was, so dashboards can show how stale served data is against the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from prometheus_client import Counter, Histogram

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CACHE_REQUESTS = Counter(
    "agentfactory_cache_requests_total",
    "Cache lookups by cache and result (hit or miss).",
    ["cache", "result"],
)
CACHE_EVICTIONS = Counter(
    "agentfactory_cache_evictions_total",
    "Entries removed from a cache by reason: capacity (LRU), expired (TTL) or invalidated.",
    ["cache", "reason"],
)
CACHE_ENTRY_AGE = Histogram(
    "agentfactory_cache_entry_age_seconds",
    "Age of entries when they are served from a cache.",
    ["cache"],
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)


class LruTtlCache(Generic[K, V]):
    """At most `max_entries` entries, each served for at most `ttl_seconds` after it was stored.

    `max_entries=0` disables caching (every get is a miss) without changing callers.
    """

    def __init__(
        self,
        name: str,
        max_entries: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be > 0")
        self.name = name
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._hit = CACHE_REQUESTS.labels(name, "hit")
        self._miss = CACHE_REQUESTS.labels(name, "miss")
        self._age = CACHE_ENTRY_AGE.labels(name)

    def get(self, key: K) -> V | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                stored, value = entry
                age = now - stored
                if age < self.ttl_seconds:
                    self._entries.move_to_end(key)
                    self._hit.inc()
                    self._age.observe(age)
                    return value
                del self._entries[key]
                CACHE_EVICTIONS.labels(self.name, "expired").inc()
            self._miss.inc()
            return None

    def put(self, key: K, value: V) -> None:
        if self.max_entries == 0:
            return
        now = self._clock()
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                CACHE_EVICTIONS.labels(self.name, "capacity").inc()

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """Return the cached value or load, store and return it. `load` runs outside the lock, so two
        threads may both load the same key; the cache stays correct, only the work is doubled."""
        value = self.get(key)
        if value is None:
            value = load()
            self.put(key, value)
        return value

    def invalidate(self, key: K) -> None:
        with self._lock:
            if self._entries.pop(key, None) is not None:
                CACHE_EVICTIONS.labels(self.name, "invalidated").inc()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

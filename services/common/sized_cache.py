"""An LRU bounded by the bytes its entries hold (and by a count), counted in Prometheus. Thread-safe.

For values whose cost varies by orders of magnitude (compiled modules: a few KiB to hundreds of MiB), a
count bound says nothing about memory. Each entry carries its size, given by the caller; the cache evicts
least recently used entries until the total fits. Background fill-ins (warm-up, precompilation) call
`put(..., evict=False)`: they only take free room and never push out what demand put there.

Lookups and evictions are counted with the shared `agentfactory_cache_*` series of services.common.cache;
the bytes held are the gauge `agentfactory_cache_bytes{cache}`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from prometheus_client import Gauge

from services.common.cache import CACHE_EVICTIONS, CACHE_REQUESTS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CACHE_BYTES = Gauge("agentfactory_cache_bytes", "Bytes held by a cache bounded by size.", ["cache"])
CACHE_BUDGET = Gauge("agentfactory_cache_budget_bytes", "The byte bound of a cache bounded by size.", ["cache"])


class SizedLru(Generic[K, V]):
    """At most `max_bytes` bytes in at most `max_entries` entries; an entry larger than the whole budget
    is never stored (its caller keeps using it, uncached)."""

    def __init__(self, name: str, max_bytes: int, max_entries: int) -> None:
        if max_bytes < 0 or max_entries < 0:
            raise ValueError("max_bytes and max_entries must be >= 0")
        self.name = name
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[int, V]] = OrderedDict()
        self._bytes = 0
        self._hit = CACHE_REQUESTS.labels(name, "hit")
        self._miss = CACHE_REQUESTS.labels(name, "miss")
        self._capacity = CACHE_EVICTIONS.labels(name, "capacity")
        self._invalidated = CACHE_EVICTIONS.labels(name, "invalidated")
        self._gauge = CACHE_BYTES.labels(name)
        self._gauge.set(0)
        CACHE_BUDGET.labels(name).set(max_bytes)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._miss.inc()
                return None
            self._entries.move_to_end(key)
            self._hit.inc()
            return entry[1]

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes fit in the free room (no eviction needed)."""
        with self._lock:
            return self._bytes + size <= self.max_bytes and len(self._entries) < self.max_entries

    def put(self, key: K, value: V, size: int, evict: bool = True) -> bool:
        """Store `value` as `size` bytes; True if stored. With `evict=False` only free room is used."""
        if size > self.max_bytes or self.max_entries == 0:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[0]
            if not evict and (self._bytes + size > self.max_bytes or len(self._entries) >= self.max_entries):
                if old is not None:  # put back what was there: a refused fill-in changes nothing
                    self._entries[key] = old
                    self._bytes += old[0]
                return False
            self._entries[key] = (size, value)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, (gone, _) = self._entries.popitem(last=False)
                self._bytes -= gone
                self._capacity.inc()
            self._gauge.set(self._bytes)
            return True

    def invalidate(self, key: K) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry[0]
                self._invalidated.inc()
                self._gauge.set(self._bytes)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

from __future__ import annotations

import threading

from prometheus_client import REGISTRY

from services.common.cache import LruTtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_hit_miss_and_age_are_counted() -> None:
    clock = Clock()
    cache: LruTtlCache[str, int] = LruTtlCache("t_hits", 4, ttl_seconds=10, clock=clock)
    assert cache.get("a") is None
    cache.put("a", 1)
    clock.now += 3
    assert cache.get("a") == 1
    assert sample("agentfactory_cache_requests_total", cache="t_hits", result="hit") == 1
    assert sample("agentfactory_cache_requests_total", cache="t_hits", result="miss") == 1
    assert sample("agentfactory_cache_entry_age_seconds_count", cache="t_hits") == 1
    assert sample("agentfactory_cache_entry_age_seconds_sum", cache="t_hits") == 3


def test_least_recently_used_entry_is_evicted() -> None:
    cache: LruTtlCache[str, int] = LruTtlCache("t_lru", 2, ttl_seconds=10, clock=Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    assert sample("agentfactory_cache_evictions_total", cache="t_lru", reason="capacity") == 1


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache: LruTtlCache[str, int] = LruTtlCache("t_ttl", 4, ttl_seconds=5, clock=clock)
    cache.put("a", 1)
    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None
    assert len(cache) == 0
    assert sample("agentfactory_cache_evictions_total", cache="t_ttl", reason="expired") == 1


def test_put_refreshes_age_and_invalidate_removes() -> None:
    clock = Clock()
    cache: LruTtlCache[str, int] = LruTtlCache("t_inv", 4, ttl_seconds=5, clock=clock)
    cache.put("a", 1)
    clock.now += 4
    cache.put("a", 2)
    clock.now += 4
    assert cache.get("a") == 2
    cache.invalidate("a")
    assert cache.get("a") is None
    assert sample("agentfactory_cache_evictions_total", cache="t_inv", reason="invalidated") == 1


def test_zero_entries_disables_caching() -> None:
    cache: LruTtlCache[str, int] = LruTtlCache("t_off", 0, ttl_seconds=5)
    cache.put("a", 1)
    assert cache.get("a") is None
    assert cache.get_or_load("a", lambda: 7) == 7


def test_get_or_load_loads_once() -> None:
    cache: LruTtlCache[str, int] = LruTtlCache("t_load", 4, ttl_seconds=5)
    loads = []
    for _ in range(3):
        assert cache.get_or_load("k", lambda: loads.append(1) or 42) == 42
    assert len(loads) == 1


def test_concurrent_use_keeps_the_bound() -> None:
    cache: LruTtlCache[int, int] = LruTtlCache("t_threads", 50, ttl_seconds=60)

    def worker(offset: int) -> None:
        for i in range(2000):
            cache.put((i * 7 + offset) % 200, i)
            cache.get((i * 3) % 200)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50

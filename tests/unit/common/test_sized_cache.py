"""SizedLru: bounded by bytes and by count, least recently used out first, fill-ins never evict."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.common.sized_cache import SizedLru


def evictions(name: str) -> float:
    return REGISTRY.get_sample_value("agentfactory_cache_evictions_total", {"cache": name, "reason": "capacity"}) or 0


def test_bytes_bound_evicts_least_recently_used() -> None:
    cache: SizedLru[str, str] = SizedLru("t_bytes", max_bytes=100, max_entries=10)
    assert cache.put("a", "A", 40) and cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # b is now the least recently used
    assert cache.put("c", "C", 40)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.bytes == 80 and evictions("t_bytes") == 1
    assert REGISTRY.get_sample_value("agentfactory_cache_bytes", {"cache": "t_bytes"}) == 80


def test_entry_larger_than_the_budget_is_not_stored_and_evicts_nothing() -> None:
    cache: SizedLru[str, str] = SizedLru("t_huge", max_bytes=100, max_entries=10)
    cache.put("a", "A", 60)
    assert not cache.put("huge", "H", 101)
    assert "a" in cache and cache.bytes == 60


def test_count_bound() -> None:
    cache: SizedLru[str, int] = SizedLru("t_count", max_bytes=1000, max_entries=2)
    for i in range(3):
        cache.put(str(i), i, 1)
    assert len(cache) == 2 and "0" not in cache


def test_fill_in_takes_free_room_only() -> None:
    cache: SizedLru[str, str] = SizedLru("t_fill", max_bytes=100, max_entries=10)
    cache.put("hot", "H", 70)
    assert cache.fits(30) and not cache.fits(31)
    assert not cache.put("warm", "W", 31, evict=False)
    assert "hot" in cache and "warm" not in cache and evictions("t_fill") == 0
    assert cache.put("warm", "W", 30, evict=False)
    assert cache.bytes == 100


def test_replacing_an_entry_recounts_its_size_and_invalidate_frees_it() -> None:
    cache: SizedLru[str, str] = SizedLru("t_replace", max_bytes=100, max_entries=10)
    cache.put("a", "A", 50)
    cache.put("a", "A2", 20)
    assert cache.bytes == 20 and cache.get("a") == "A2"
    assert not cache.put("a", "A3", 200, evict=False)
    assert cache.get("a") == "A2" and cache.bytes == 20  # a refused fill-in changed nothing
    cache.invalidate("a")
    assert cache.bytes == 0 and len(cache) == 0

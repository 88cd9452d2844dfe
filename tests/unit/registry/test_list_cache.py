"""A listing reads through the template cache but never fills it: walking the whole catalog leaves the
templates that readers keep asking for in the cache (issue 15)."""

from __future__ import annotations

from services.registry.service import Registry
from tests.unit.registry.conftest import manifest, publish


async def test_a_full_listing_walk_does_not_churn_the_template_cache(registry: Registry) -> None:
    for i in range(12):
        await publish(registry, manifest(name=f"t{i:02d}"))
    registry.cache.clear()
    hot = await registry.get("t00", "1.0.0")  # what runs keep asking for
    assert len(registry.cache) == 1
    refs: list[str] = []
    token = ""
    while True:
        page = await registry.list("", "", 5, token, False)
        refs += [t.ref for t in page.templates]
        token = page.next_page_token
        if not token:
            break
    assert len(refs) == 12
    assert len(registry.cache) == 1 and registry.cache.get(("t00", "1.0.0")) is hot

"""Watch fan-out off the write path: a publish hands its event to the watchers without running any of
them, a watcher that stops reading delays neither publishers nor the other watchers (it is dropped with
the revision to resume from), and every watcher's stream sends the same encoded response."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import ResourceExhausted
from services.registry.service import Registry
from services.registry.watch import TemplateEvent, WatchHub
from tests.unit.registry.conftest import manifest, publish


async def test_hub_publish_returns_before_any_watcher_has_the_event(registry: Registry) -> None:
    await publish(registry, manifest(version="1.0.0"))
    template = await registry.get("agent", "1.0.0")
    hub = WatchHub(queue_capacity=8)
    subs = [hub.subscribe() for _ in range(200)]
    event = TemplateEvent(1, "published", template)
    hub.publish(event)
    assert all(sub.queue.empty() for sub in subs)  # the publisher ran no watcher's code
    received = await asyncio.gather(*(sub.next() for sub in subs))
    assert all(got is event for got in received)  # one object: encoded once for all of them


async def test_a_slow_watcher_delays_neither_publishers_nor_other_watchers(registry: Registry) -> None:
    slow = registry.watch(0)
    fast = registry.watch(0)
    await publish(registry, manifest(version="0.0.1"))
    assert (await anext(slow)).revision == 1 and (await anext(fast)).revision == 1
    slow_next = asyncio.ensure_future(anext(slow))
    await publish(registry, manifest(version="0.0.2"))
    assert (await slow_next).revision == 2  # following live events now; it stops reading here

    seen: list[int] = []

    async def read_fast() -> None:
        async for event in fast:
            seen.append(event.revision)
            if event.revision == 20:
                return

    reader = asyncio.ensure_future(read_fast())
    for i in range(3, 21):  # more than the slow watcher's queue (8) holds
        await publish(registry, manifest(version=f"0.0.{i}"))  # returns: nobody waits for the slow one
    await reader
    assert seen == list(range(2, 21))
    with pytest.raises(ResourceExhausted, match="resubscribe with after_revision=2"):
        await anext(slow)
    await fast.aclose()

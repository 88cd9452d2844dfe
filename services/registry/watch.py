"""Fan-out of registry events to watchers without letting a slow watcher slow anyone else.

Each watcher owns a bounded queue. Publishing an event never waits: it is handed to the watchers by a
delivery task (services/common/fanout.py), a slice of watchers per loop iteration, so the publisher's
reply goes out whatever the number of watchers. If a watcher's queue is full the watcher is marked as
lagging, its queue is dropped, and its stream ends with RESOURCE_EXHAUSTED naming the last revision it
received, so it resubscribes from there and catches up from the store. Each live event carries its
encoding (`encoded`), built by the first watcher's stream and reused by every other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from services.common.fanout import Fanout
from services.templates.published import PublishedTemplate

WATCHERS = Gauge("agentfactory_registry_watchers", "Open WatchTemplates streams.")
WATCHERS_DROPPED = Counter(
    "agentfactory_registry_watchers_dropped_total", "Watch streams ended because the watcher fell too far behind."
)


@dataclass(frozen=True)
class TemplateEvent:
    revision: int
    kind: str  # storage.KIND_PUBLISHED or storage.KIND_DEPRECATED
    template: PublishedTemplate
    # The transport's encoding of this event, built once and shared by every watcher's stream.
    encoded: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


class Subscription:
    def __init__(self, hub: WatchHub, capacity: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[TemplateEvent] = asyncio.Queue(maxsize=capacity)
        self.lagging = False
        self._wakeup = asyncio.Event()

    def offer(self, event: TemplateEvent) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagging = True
            WATCHERS_DROPPED.inc()
            # Free the memory now; the watcher will not read these (it resumes from the store).
            self.queue = asyncio.Queue(maxsize=1)
        self._wakeup.set()

    async def next(self) -> TemplateEvent | None:
        """The next live event, or None once the watcher is lagging."""
        while True:
            if self.lagging:
                return None
            if not self.queue.empty():
                return self.queue.get_nowait()
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class WatchHub:
    """Called on the event loop only (publishers notify after their transaction commits)."""

    def __init__(self, queue_capacity: int) -> None:
        self.queue_capacity = queue_capacity
        self._subscribers: set[Subscription] = set()
        self._fanout: Fanout[TemplateEvent] = Fanout()

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.queue_capacity)
        self._subscribers.add(sub)
        WATCHERS.set(len(self._subscribers))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        WATCHERS.set(len(self._subscribers))

    def publish(self, event: TemplateEvent) -> None:
        """Returns at once; the watchers subscribed now get the event from the delivery task."""
        self._fanout.publish(event, [sub.offer for sub in self._subscribers])

    def __len__(self) -> int:
        return len(self._subscribers)

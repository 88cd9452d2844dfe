"""Fan-out of one event to many watchers, off the writer's path.

A writer that hands an event to N watchers inline wakes N streams before its own answer goes out: each
woken stream encodes and sends in the same event loop, so the writer's reply waits behind all of them
(with 500 watchers a publish or a cancel took 200-300 ms, issue 15). Here `publish` only appends the
event and the list of its receivers to a FIFO and returns; a delivery task hands events on in slices of
`slice_size` receivers per loop iteration, so whatever the number of watchers, the writer's reply and
every other ready task get the loop after at most one slice. Order is kept: one FIFO, one task.
The slice is small (8) because each woken watcher then sends in the next loop iteration: with 32, a
CancelAgent with 1,000 WatchAgent streams took 5x its time with 10 (perf/SCALE.md); with 8, about 1x.

Receivers are callables that must not block (push into a bounded queue, mark a watcher as lagging);
a slow watcher only fills its own queue. With at most `inline_below` receivers an event is delivered
at once instead: for one or two watchers (the RunAgent caller watching its own agent) a task hop would
cost more than the delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Fanout(Generic[T]):
    """Call from the event loop's thread only."""

    def __init__(self, slice_size: int = 8, inline_below: int = 0) -> None:
        if slice_size < 1 or inline_below < 0:
            raise ValueError("slice_size >= 1 and inline_below >= 0 are required")
        self.slice_size = slice_size
        self.inline_below = inline_below
        self._pending: deque[tuple[T, Sequence[Callable[[T], None]]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._delivering = False

    def publish(self, item: T, receivers: Sequence[Callable[[T], None]]) -> None:
        """Hand `item` to every receiver, in publish order; returns without calling any of them unless
        there are at most `inline_below` and nothing is queued before them."""
        if not receivers:
            return
        if len(receivers) <= self.inline_below and not self.backlog:
            for receive in receivers:
                receive(item)
            return
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            # A new event loop (a restarted service in one process, a test's own loop): what was queued on
            # the old one had receivers on that loop; nobody can take it any more.
            self._pending.clear()
            self._delivering = False
            self._task = None
        self._pending.append((item, receivers))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._deliver(), name="fanout")

    async def _deliver(self) -> None:
        await asyncio.sleep(0)  # the writer's own continuation (its reply) runs first
        while self._pending:
            item, receivers = self._pending.popleft()
            self._delivering = True
            try:
                for start in range(0, len(receivers), self.slice_size):
                    for receive in receivers[start : start + self.slice_size]:
                        try:
                            receive(item)
                        except Exception:  # one broken receiver must not starve the others
                            log.exception("a watcher could not take an event")
                    await asyncio.sleep(0)
            finally:
                self._delivering = False

    @property
    def backlog(self) -> int:
        """Events not yet handed to every receiver (the one being delivered included): while it is not 0,
        anything that must follow them in order goes through publish() too."""
        return len(self._pending) + self._delivering

"""The book of unfinished agents: the in-memory side of each agent that is not terminal yet (output so
far, watchers, cancellation), kept consistent with the journal.

Every state change goes journal first, memory second, watchers third: memory never shows a state the
journal would not show after a crash (output is the exception: it is journaled with the terminal
state, and a run that dies with the process is re-run or failed anyway).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from services.common.errors import NotFound
from services.common.fanout import Fanout
from services.common.logs import log_event
from services.common.telemetry import current_traceparent
from services.scheduler import domain, metrics
from services.scheduler.domain import Agent, AgentState, Outcome
from services.scheduler.journal import LeaseLost
from services.scheduler.ports import AgentChanged, AgentJournal, Log, RunHandle, WatchEvent

log = logging.getLogger(__name__)


# Up to this many watchers an agent's event is pushed inline (a deque append and a wake-up each); beyond,
# the delivery task hands it on in slices, off the writer's path. One FIFO for every agent keeps each
# watcher's order.
INLINE_WATCHERS = 4
FANOUT: Fanout[tuple[WatchEvent | None, bool]] = Fanout()


class Subscriber:
    """One watcher's queue. Output and log events are dropped past `max_queued` (a slow watcher must
    not hold memory for a chatty agent; the capped output is in the final Agent anyway); state
    changes are never dropped, there are only a handful per agent."""

    def __init__(self, max_queued: int) -> None:
        self._items: deque[WatchEvent] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._max = max_queued
        self.dropped = 0

    def push(self, item: WatchEvent, essential: bool = False) -> None:
        if self._closed:
            return
        if not essential and len(self._items) >= self._max:
            self.dropped += 1
            return
        if essential and self.dropped:
            self._items.append(Log("warn", f"watcher fell behind: {self.dropped} output/log events were dropped"))
            self.dropped = 0
        self._items.append(item)
        self._wake.set()

    def take(self, pair: tuple[WatchEvent | None, bool]) -> None:
        """push() for the fan-out's delivery task; None ends the stream (after what was queued before)."""
        item, essential = pair
        if item is None:
            self.close()
        else:
            self.push(item, essential)

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def __aiter__(self) -> AsyncIterator[WatchEvent]:
        while True:
            while self._items:
                yield self._items.popleft()
            if self._closed:
                return
            self._wake.clear()
            await self._wake.wait()


class LiveAgent:
    def __init__(self, agent: Agent, output_cap: int) -> None:
        self.agent = agent
        self.output = bytearray()
        self.truncated = False
        self._cap = output_cap
        self.subscribers: set[Subscriber] = set()
        self.lock = asyncio.Lock()  # serialises journal writes for this agent
        self.done = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.cancel_reason: str | None = None
        self.handle: RunHandle | None = None
        self.dispatching = False  # a dispatcher worker owns it
        # The trace of the request that created the agent, so its dispatch joins that trace. Kept in
        # memory only: a run re-dispatched after a restart starts a trace of its own.
        self.traceparent = current_traceparent()

    def snapshot(self) -> Agent:
        if self.agent.state.terminal:
            return self.agent
        return dataclasses.replace(self.agent, output=bytes(self.output), output_truncated=self.truncated)

    def append_output(self, data: bytes) -> None:
        room = self._cap - len(self.output)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        self.output += data

    def reset_output(self) -> None:
        self.output.clear()
        self.truncated = False

    def request_cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancelled.set()
        if self.handle is not None:
            self.handle.cancel()

    def remaining(self, now: float) -> float | None:
        return None if self.agent.deadline is None else self.agent.deadline - now

    def publish(self, item: WatchEvent, essential: bool = False) -> None:
        """Watchers get the item without the writer waiting for them: with a few (the usual RunAgent caller
        watching its own agent) at once, with more through the delivery task (services/common/fanout.py),
        so a cancel or a state change answers in the same time with 1,000 watchers as with one."""
        subs = self.subscribers
        if len(subs) <= INLINE_WATCHERS and not FANOUT.backlog:
            for sub in subs:
                sub.push(item, essential)
            return
        FANOUT.publish((item, essential), [sub.take for sub in subs])

    def end_watchers(self) -> None:
        """End every watcher's stream after the events already published to it."""
        subs, self.subscribers = self.subscribers, set()
        if not FANOUT.backlog:
            for sub in subs:
                sub.close()
            return
        FANOUT.publish((None, True), [sub.take for sub in subs])


class AgentBook:
    def __init__(self, journal: AgentJournal, output_cap: int, watch_queue: int = 1024) -> None:
        self.journal = journal
        self.output_cap = output_cap
        self.watch_queue = watch_queue
        self.live: dict[str, LiveAgent] = {}
        metrics.PENDING.set_function(self.pending_count)

    def pending_count(self) -> int:
        return sum(1 for la in self.live.values() if la.agent.state is AgentState.PENDING)

    def adopt(self, agent: Agent) -> LiveAgent:
        live = LiveAgent(agent, self.output_cap)
        self.live[agent.id] = live
        return live

    async def get(self, agent_id: str) -> Agent:
        live = self.live.get(agent_id)
        if live is not None:
            return live.snapshot()
        agent = await self.journal.get(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return agent

    def overlay(self, agent: Agent) -> Agent:
        """The freshest view of a journaled agent (a running agent's output so far lives in memory)."""
        live = self.live.get(agent.id)
        return agent if live is None else live.snapshot()

    def subscribe(self, live: LiveAgent) -> Subscriber:
        sub = Subscriber(self.watch_queue)
        live.subscribers.add(sub)
        return sub

    async def update(self, live: LiveAgent, change: Callable[[Agent], Agent]) -> bool:
        """Apply a non-terminal change: journal it, then show it. False if the agent ended meanwhile."""
        async with live.lock:
            old = live.agent
            if old.state.terminal:
                return False
            new = change(old)
            try:
                await self.journal.update(new)
            except LeaseLost as exc:
                self._let_go(live, exc)
                return False
            live.agent = new
            if new.state is not old.state:
                metrics.TRANSITIONS.labels(old.state.name, new.state.name, "").inc()
                if new.state is AgentState.PENDING:
                    live.reset_output()
                live.publish(AgentChanged(live.snapshot()), essential=True)
            return True

    def _let_go(self, live: LiveAgent, exc: LeaseLost) -> None:
        """Forget an agent another replica took over: its watchers here end (they may watch it again on
        any replica), and nothing this replica still does with it reaches the journal."""
        log_event(log, "agent taken over by another scheduler; letting it go", logging.WARNING,
                  agent=live.agent.id, reason=exc.message)  # fmt: skip
        live.request_cancel("taken over by another scheduler replica")  # stops a run still in flight here
        live.end_watchers()
        self.live.pop(live.agent.id, None)
        live.done.set()

    async def finish(self, live: LiveAgent, outcome: Outcome) -> Agent:
        """Make the agent terminal (once: a second finish is a no-op returning the first result)."""
        async with live.lock:
            old = live.agent
            if old.state.terminal:
                return old
            new = domain.finish(old, outcome, time.time(), bytes(live.output), live.truncated)
            try:
                await self.journal.update(new)
            except LeaseLost as exc:
                # Another replica owns the agent now and will end it; this ending must not be reported.
                self._let_go(live, exc)
                return old
            except Exception:
                # The journal still says PENDING/RUNNING, so after a restart recovery treats this agent as
                # lost; until then the caller and watchers get the real ending.
                log.exception("could not journal a terminal state", extra={"fields": {"agent": new.id}})
            live.agent = new
            metrics.TRANSITIONS.labels(old.state.name, new.state.name, new.cause).inc()
            metrics.OUTCOMES.labels(new.state.name, new.cause).inc()
            # Successes are the bulk (a line each at 1,000 runs/s is most of the log) and are counted in
            # metrics and kept in the journal; every other ending is worth a line at INFO.
            level = logging.DEBUG if new.state is AgentState.SUCCEEDED else logging.INFO
            if log.isEnabledFor(level):
                log_event(log, "agent finished", level, agent=new.id, template=new.ref, state=new.state.name,
                          cause=new.cause, reason=new.reason, attempts=new.attempts)  # fmt: skip
            live.publish(AgentChanged(new), essential=True)
            live.end_watchers()
            self.live.pop(new.id, None)
            live.done.set()
            return new

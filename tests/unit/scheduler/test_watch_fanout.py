"""WatchAgent fan-out off the write path: past a few watchers, a state change is handed on by the delivery
task (the writer runs no watcher's code); a cancel with many watchers, one of them not reading, reaches
every reading watcher as the terminal agent and ends their streams; the slow one holds a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from services.scheduler import book
from services.scheduler.domain import AgentState, CreateSpec
from services.scheduler.journal import Journal
from services.scheduler.ports import AgentChanged, Output
from services.scheduler.service import SchedulerService, ServiceSettings
from tests.unit.scheduler import doubles
from tests.unit.scheduler.test_service import ECHO, FAST, RETRY


async def service(tmp_path: Path) -> tuple[SchedulerService, Journal]:
    journal = Journal.open(tmp_path / "data")
    executors = doubles.FakeExecutors({"ex-a": doubles.forever})
    svc = SchedulerService(journal, doubles.Templates(ECHO, RETRY), executors, ServiceSettings(dispatch=FAST))
    await svc.start()
    return svc, journal


async def running(svc: SchedulerService) -> str:
    agent, _ = await svc.create(CreateSpec("echo"))
    while (await svc.get(agent.id)).state is not AgentState.RUNNING:
        await asyncio.sleep(0.01)
    return agent.id


async def test_a_change_past_a_few_watchers_is_delivered_off_the_writers_path(tmp_path: Path) -> None:
    svc, journal = await service(tmp_path)
    try:
        agent_id = await running(svc)
        live = svc.book.live[agent_id]
        subs = [svc.book.subscribe(live) for _ in range(book.INLINE_WATCHERS + 50)]
        live.publish(Output(b"chunk"))
        assert all(not sub._items for sub in subs)  # handed to the delivery task, not pushed yet
        while book.FANOUT.backlog:
            await asyncio.sleep(0)
        assert all(list(sub._items) == [Output(b"chunk")] for sub in subs)
    finally:
        await svc.stop(0)
        journal.close()


async def test_cancel_with_many_watchers_and_a_slow_one_reaches_every_reader(tmp_path: Path) -> None:
    svc, journal = await service(tmp_path)
    try:
        agent_id = await running(svc)

        async def read_all() -> list[object]:
            return [event async for event in svc.watch(agent_id)]

        readers = [asyncio.ensure_future(read_all()) for _ in range(100)]
        slow: AsyncIterator[object] = svc.watch(agent_id)
        assert isinstance(await anext(slow), AgentChanged)  # subscribed, and then never read again
        await asyncio.sleep(0.05)  # every reader subscribed
        live = svc.book.live[agent_id]
        for i in range(3 * svc.book.watch_queue):  # chatty output: only the slow watcher's queue fills
            live.publish(Output(b"x%d" % i))
        slow_queue = max(len(sub._items) for sub in live.subscribers)
        assert slow_queue <= svc.book.watch_queue  # its own queue is bounded; the readers keep up
        cancelled = await svc.cancel(agent_id)  # answers without any watcher having to keep up
        assert cancelled.state is AgentState.CANCELLED
        results = await asyncio.gather(*readers)
        for events in results:
            last = events[-1]
            assert isinstance(last, AgentChanged) and last.agent.state is AgentState.CANCELLED
        assert not live.subscribers  # every stream was ended, the slow one's included
        rest = [event async for event in slow]  # what it had queued, then the end (it was never blocked)
        assert isinstance(rest[-1], AgentChanged) and rest[-1].agent.state is AgentState.CANCELLED
    finally:
        await svc.stop(0)
        journal.close()

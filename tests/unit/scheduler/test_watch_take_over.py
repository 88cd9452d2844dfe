"""A watch of an agent that another replica of a shared journal takes over while it is watched here: the
watcher follows it to its end through the journal, as the WatchAgent contract says (the agent now, then
its events until it is terminal). Before, the replica that let the agent go ended the stream with OK
and no terminal state, and a watcher (afctl agents watch, any client) took that for the end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.scheduler import domain
from services.scheduler.domain import Agent, AgentState, Cause, CreateSpec, Outcome
from services.scheduler.journal import Journal, LeaseLost
from services.scheduler.ports import AgentChanged, WatchEvent
from services.scheduler.service import SchedulerService, ServiceSettings
from tests.unit.scheduler import doubles
from tests.unit.scheduler.test_service import ECHO, FAST


class TakenOver(Journal):
    """The SQLite journal, whose writes fail with LeaseLost once `lost` is set (another replica owns
    the agents now), as the PostgreSQL journal's do."""

    lost = False

    async def update(self, agent: Agent) -> None:
        if self.lost:
            raise LeaseLost("the agent's lease belongs to replica b now")
        await super().update(agent)


async def test_a_watch_follows_an_agent_taken_over_by_another_replica_to_its_end(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    journal = TakenOver(tmp_path / "data" / "journal.sqlite3")
    executors = doubles.FakeExecutors({"ex-a": doubles.forever})
    svc = SchedulerService(journal, doubles.Templates(ECHO), executors, ServiceSettings(dispatch=FAST))
    await svc.start()
    try:
        agent, _ = await svc.create(CreateSpec("echo"))
        while (await svc.get(agent.id)).state is not AgentState.RUNNING:
            await asyncio.sleep(0.01)
        events: list[WatchEvent] = []

        async def watch() -> None:
            async for event in svc.watch(agent.id):
                events.append(event)

        watcher = asyncio.ensure_future(watch())
        while not events:  # subscribed to the live agent (its first event is the snapshot)
            await asyncio.sleep(0.01)
        journal.lost = True
        await svc.cancel(agent.id, "cancelled on replica a")  # its ending is refused: a lets the agent go
        assert agent.id not in svc.book.live
        # Replica b ends the agent in the shared journal.
        journaled = await journal.get(agent.id)
        assert journaled is not None
        outcome = Outcome(AgentState.SUCCEEDED, "exited with code 0", Cause.SUCCEEDED, "OK")
        ended = domain.finish(journaled, outcome, time.time(), b"replica b's output")
        journal.lost = False
        await journal.update(ended)
        await watcher  # no time bound: pytest's timeout ends a watch that never ends
        states = [e.agent for e in events if isinstance(e, AgentChanged)]
        assert states[-1].state is AgentState.SUCCEEDED and states[-1].output == b"replica b's output", states
    finally:
        await svc.stop(0)
        journal.close()

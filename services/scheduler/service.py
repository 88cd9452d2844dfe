"""The scheduler's use cases: create, get, list, watch, cancel and run agents, and recovery at start.

Never imports grpc: the servicer translates, and adapters behind the ports talk to the registry and
the executors.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from services.common import audit, errors
from services.common.logs import log_event
from services.scheduler import domain, metrics
from services.scheduler.book import AgentBook, LiveAgent
from services.scheduler.dispatcher import DEADLINE_MARGIN_SECONDS, Dispatcher, DispatchSettings
from services.scheduler.domain import Agent, AgentState, Cause, CreateSpec, ListQuery, Outcome, Page
from services.scheduler.ports import AgentChanged, AgentJournal, Executors, TemplateResolver, WatchEvent
from services.scheduler.retention import Retention, RetentionJournal, RetentionPolicy

log = logging.getLogger(__name__)


def _cursor(agent: Agent) -> domain.PageCursor:
    return domain.PageCursor.of(agent.create_time, agent.id)


def _required_id(agent_id: str) -> str:
    if not agent_id:
        raise errors.InvalidArgument("id is required: the agent id CreateAgent returned", field="id")
    return agent_id


@dataclass(frozen=True)
class ServiceSettings:
    output_cap_bytes: int = 64 * 1024
    max_live_agents: int = 10_000
    registry_timeout_seconds: float = 2.0
    cancel_wait_seconds: float = 10.0
    # Shared journal (PostgreSQL) only: how often leases are renewed and orphaned agents looked for, and
    # how often a watch on a replica that does not run the agent reads it again.
    lease_renew_seconds: float = 3.0
    watch_poll_seconds: float = 0.2
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)


class Expired(errors.NotFound):
    """NOT_FOUND for an id this scheduler's retention deleted: it was ours, no other color has it."""


class SchedulerService:
    def __init__(
        self, journal: AgentJournal, templates: TemplateResolver, executors: Executors, settings: ServiceSettings
    ) -> None:
        self.journal = journal
        self.templates = templates
        self.settings = settings
        self.book = AgentBook(journal, settings.output_cap_bytes)
        self.dispatcher = Dispatcher(self.book, executors, settings.dispatch)
        self._background: set[asyncio.Task[object]] = set()
        # A journal without the retention primitives (an adapter that has not implemented them yet) keeps
        # every agent; start() says so in the log.
        self.retention = Retention(journal, settings.retention) if isinstance(journal, RetentionJournal) else None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, shared_journal: bool = False) -> None:
        """Recover what the journal says is unfinished, then start dispatching. With a journal shared by
        replicas, keep renewing this replica's leases and take over a dead replica's agents."""
        await self.recover()
        self.dispatcher.start()
        if shared_journal:
            self._in_background(self._keep_leases(), "scheduler-leases")
            self._in_background(self._follow_cancel_requests(), "scheduler-cancel-requests")
        if self.retention is not None and self.settings.retention.enabled:
            # Never awaited by a call: deletes in small journal writes between the hot path's own.
            self._in_background(self.retention.run(asyncio.Event()), "scheduler-retention")
        elif self.settings.retention.enabled:
            log_event(log, "this journal has no retention: finished agents are kept", logging.WARNING)

    def _in_background(self, job: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(job, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_renew_seconds)
            try:
                await self.journal.renew()
                await self.recover()
            except errors.Unavailable as exc:  # the database is away; the leases run on until it is back
                log_event(log, "could not renew leases", logging.WARNING, error=exc.message)

    async def _follow_cancel_requests(self) -> None:
        """Shared journal: cancel this replica's agents that a CancelAgent on another replica asked for."""
        failing = False
        while True:
            await asyncio.sleep(self.settings.watch_poll_seconds)
            try:
                requests = await self.journal.cancel_requests()
            except errors.Unavailable as exc:
                if not failing:  # once per outage, not five times a second
                    log_event(log, "could not read cancel requests", logging.WARNING, error=exc.message)
                failing = True
                continue
            failing = False
            for agent_id, reason in requests:
                live = self.book.live.get(agent_id)
                if live is not None and live.cancel_reason is None:
                    self._in_background(self.cancel(agent_id, reason), f"cancel-{agent_id}")

    async def stop(self, grace: float) -> None:
        await self.dispatcher.stop(grace)
        for task in list(self._background):
            task.cancel()

    async def recover(self) -> None:
        """After a restart: PENDING agents are dispatched again. Agents whose run may have started
        (RUNNING, or PENDING with a dispatch in flight) lost their executor stream with the old
        process: re-dispatched when the template is retryable and attempts remain, FAILED otherwise.
        Agents whose caller's deadline passed meanwhile are TIMED_OUT."""
        bound = self.settings.dispatch.max_attempts
        jobs: list[Coroutine[Any, Any, object]] = []
        actions: dict[str, int] = {}
        for agent in await self.journal.take_over():
            if agent.id in self.book.live:  # SQLite mode never repeats one; a shared journal might
                continue
            live = self.book.adopt(agent)
            if agent.deadline is not None and agent.deadline <= time.time():
                action = "timed_out"
                outcome = Outcome(AgentState.TIMED_OUT, "the caller's deadline passed while the scheduler was down",
                                  Cause.TIMED_OUT, "DEADLINE_EXCEEDED")  # fmt: skip
                jobs.append(self.book.finish(live, outcome))
            elif agent.in_flight or agent.state is AgentState.RUNNING:
                if domain.can_retry_lost_run(agent, bound):
                    action = "redispatched"
                    reason = "executor lost during run (scheduler restarted); re-dispatched"
                    jobs.append(self._requeue(live, reason))
                else:
                    action = "failed"
                    jobs.append(self.book.finish(live, domain.lost_run_outcome(agent, "scheduler restarted", bound)))
            else:
                action = "dispatched"
                self.dispatcher.enqueue(agent.id)
            actions[action] = actions.get(action, 0) + 1
            metrics.RECOVERED.labels(action).inc()
        # Concurrently, so the journal writes of a large recovery share group commits.
        await asyncio.gather(*jobs)
        if actions:
            log_event(log, "recovered unfinished agents", **actions)

    async def _requeue(self, live: LiveAgent, reason: str) -> None:
        if await self.book.update(live, lambda a: domain.requeue(a, reason)):
            self.dispatcher.enqueue(live.agent.id)

    # --- use cases -------------------------------------------------------------------------------

    async def create(
        self, spec: CreateSpec, *, timeout: float | None = None, deadline: float | None = None
    ) -> tuple[Agent, bool]:
        """Journal a new agent (committed before this returns) and queue it; or, for a repeated
        request_id, return the agent it created. Returns (agent, created).

        A repeated request_id is answered by the journal's create (a unique index), not by a lookup
        before it: that lookup was a SELECT round trip on every create with a request_id (perf/BACKENDS.md)
        to spare only a retry's template resolve. A retry that cannot get that far (the scheduler full,
        the deadline gone, the registry failing) still gets its agent: those paths look it up."""
        domain.validate_spec(spec)
        try:
            if len(self.book.live) >= self.settings.max_live_agents:
                raise errors.ResourceExhausted(
                    f"the scheduler already has {len(self.book.live)} unfinished agents (its limit); retry later"
                )
            budget = self.settings.registry_timeout_seconds
            if timeout is not None:
                if timeout <= 0:
                    raise errors.DeadlineExceeded("the call's deadline passed before the agent could be created")
                budget = min(budget, timeout)
            template = await self.templates.resolve(spec.template_name, spec.template_version, budget)
        except errors.AgentFactoryError:
            existing = await self.journal.get_by_request_id(spec.request_id) if spec.request_id else None
            if existing is None:
                raise
            return self._same_request(existing, spec), False
        agent = domain.new_agent(uuid.uuid4().hex, spec, template, time.time(), deadline)
        stored, created = await self.journal.create(agent)
        if not created:  # a concurrent request with the same request_id won the race
            return self._same_request(stored, spec), False
        self.book.adopt(stored)
        metrics.AGENTS_CREATED.labels(stored.template_name).inc()
        audit.record("agent_accepted", target=f"{stored.template_name}@{stored.template_version}", agent=stored.id)
        self.dispatcher.enqueue(stored.id)
        return stored, True

    def _same_request(self, existing: Agent, spec: CreateSpec) -> Agent:
        conflict = domain.idempotency_conflict(existing, spec)
        if conflict is not None:
            raise errors.AlreadyExists(
                f"request_id {spec.request_id!r} already created agent {existing.id} with a different {conflict}; "
                "use a new request_id for a different agent"
            )
        return self.book.overlay(existing)

    async def get(self, agent_id: str) -> Agent:
        try:
            return await self.book.get(_required_id(agent_id))
        except errors.NotFound:
            if self.retention is not None and (why := await self.retention.explain_missing(agent_id)) is not None:
                raise Expired(why) from None
            raise

    async def knows_request(self, request_id: str) -> bool:
        """Whether this scheduler created the agent of an idempotency key."""
        return await self.journal.get_by_request_id(request_id) is not None

    async def list(self, query: ListQuery) -> Page:
        """This scheduler's journal only (services/scheduler/federation.py adds the other colors)."""
        if query.request_id:  # at most one agent: no pages
            found = await self.journal.get_by_request_id(query.request_id)
            return Page([self.book.overlay(found)] if found is not None and query.flt.matches(found) else [])
        size = query.size
        rows = await self.journal.list(query.flt, query.after, size + 1)
        token = domain.encode_page_token(_cursor(rows[size - 1]), query.flt) if len(rows) > size else ""
        return Page([self.book.overlay(a) for a in rows[:size]], token)

    async def watch(self, agent_id: str) -> AsyncIterator[WatchEvent]:
        """The agent now (with its output so far), then its events until it is terminal."""
        live = self.book.live.get(_required_id(agent_id))
        if live is None:
            async for event in self._watch_journal(agent_id):
                yield event
            return
        sub = self.book.subscribe(live)  # snapshot and subscribe with no await between: nothing is missed
        try:
            yield AgentChanged(live.snapshot())
            async for event in sub:
                yield event
        finally:
            live.subscribers.discard(sub)
        if not live.agent.state.terminal:  # book.finish sets the terminal agent before it ends the watchers
            # The stream of an agent this replica let go (another replica of the shared journal took it
            # over: book._let_go) ends before its terminal state: follow it on through the journal.
            async for event in self._watch_journal(agent_id):
                yield event

    async def _watch_journal(self, agent_id: str) -> AsyncIterator[WatchEvent]:
        """An agent this replica does not run (ended, or run by another replica on a shared journal):
        its journaled state, read again until it is terminal. Output arrives with the terminal state."""
        agent = await self.book.get(agent_id)
        yield AgentChanged(agent)
        while not agent.state.terminal:
            await asyncio.sleep(self.settings.watch_poll_seconds)
            live = self.book.live.get(agent_id)
            if live is not None:  # this replica took it over meanwhile: follow it here
                async for event in self.watch(agent_id):
                    yield event
                return
            now = await self.book.get(agent_id)
            if (now.state, now.attempts, now.in_flight) != (agent.state, agent.attempts, agent.in_flight):
                yield AgentChanged(now)
            agent = now

    async def cancel(self, agent_id: str, reason: str = "cancelled by CancelAgent") -> Agent:
        live = self.book.live.get(_required_id(agent_id))
        if live is None:
            # Ended (or NotFound), or run by another replica of a shared journal: ask it through the journal.
            if await self.journal.request_cancel(agent_id, reason):
                audit.record("cancel", target=agent_id, reason=reason)
                return await self._until_terminal(agent_id)
            return await self.book.get(agent_id)
        live.request_cancel(reason)
        audit.record("cancel", target=agent_id, reason=reason)
        if not live.dispatching:
            return await self.book.finish(live, Outcome(AgentState.CANCELLED, reason, Cause.CANCELLED, "CANCELLED"))
        # A worker owns it: the cancelled executor call ends its run and the worker records CANCELLED.
        try:
            await asyncio.wait_for(asyncio.shield(live.done.wait()), self.settings.cancel_wait_seconds)
        except TimeoutError:
            log_event(log, "cancel still in progress", logging.WARNING, agent=agent_id)
        return await self.book.get(agent_id)

    async def _until_terminal(self, agent_id: str) -> Agent:
        """The agent once another replica has ended it (or as it is after cancel_wait_seconds)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settings.cancel_wait_seconds
        agent = await self.book.get(agent_id)
        while not agent.state.terminal and loop.time() < give_up:
            await asyncio.sleep(self.settings.watch_poll_seconds)
            agent = await self.book.get(agent_id)
        return agent

    async def run(
        self, spec: CreateSpec, timeout: float | None, *, result_only: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Create and follow to the end: every event, or with `result_only` the agent as journaled and
        as it ended. Ends by raising the error matching how the run ended, unless the agent ran
        (SUCCEEDED, or FAILED on its own)."""
        deadline = None if timeout is None else time.time() + timeout
        agent, created = await self.create(spec, timeout=timeout, deadline=deadline)
        final: Agent | None = None
        events = self._result(agent) if result_only else self.watch(agent.id)
        try:
            async for event in events:
                if isinstance(event, AgentChanged) and event.agent.state.terminal:
                    final = event.agent
                yield event
        finally:
            if final is None and created:
                self._abandon(agent.id)
        if final is None:
            raise errors.Unavailable(f"agent {agent.id} is still running but its stream ended; watch it")
        if final.status and final.status != "OK":
            raise errors.error_for_code(final.status, final.reason)  # the journaled end, as it is

    async def _result(self, agent: Agent) -> AsyncIterator[WatchEvent]:
        """The agent as created, then as it ended: no subscription, nothing in between."""
        yield AgentChanged(agent)
        if agent.state.terminal:  # a repeated request_id whose agent had already ended
            return
        live = self.book.live.get(agent.id)
        if live is None:  # it ended before we got here
            yield AgentChanged(await self.book.get(agent.id))
            return
        await live.done.wait()
        yield AgentChanged(live.agent)

    def _abandon(self, agent_id: str) -> None:
        """The RunAgent caller is gone (cancelled, or its deadline passed) before the agent ended."""
        live = self.book.live.get(agent_id)
        if live is None:
            return
        remaining = live.remaining(time.time())
        expired = remaining is not None and remaining <= DEADLINE_MARGIN_SECONDS
        if expired and live.dispatching:
            return  # the executor call carries the same deadline and ends the run as TIMED_OUT
        if expired:
            outcome = Outcome(AgentState.TIMED_OUT, "the caller's deadline passed before an executor could start "
                              "the agent", Cause.TIMED_OUT, "DEADLINE_EXCEEDED")  # fmt: skip
            coro: Coroutine[Any, Any, object] = self.book.finish(live, outcome)
        else:
            coro = self.cancel(agent_id, "the RunAgent caller went away before the agent finished")
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

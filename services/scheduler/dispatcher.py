"""Places PENDING agents on executors and follows their runs to the end.

A fixed pool of worker tasks (the max concurrent dispatches) takes agent ids from a queue. For each
agent a worker marks the dispatch in the journal, then calls executors: the least-loaded address
first (ties round robin), the next one when an executor answers RESOURCE_EXHAUSTED or UNAVAILABLE
before any event, with backoff once every address refused, until the dispatch wait runs out. With a
single address (the mesh sidecar, which balances itself) the same loop simply retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from services.common.logs import log_event
from services.common.telemetry import resumed
from services.scheduler import domain, metrics
from services.scheduler.book import AgentBook, LiveAgent
from services.scheduler.domain import Agent, AgentState, Cause, Lost, Outcome, Refused, RunFinished
from services.scheduler.ports import Accepted, Ended, Executors, Log, Output, RunSpec, Started

log = logging.getLogger(__name__)

# Leave this much of a caller's deadline for the scheduler to journal the ending and answer, so the
# caller gets the final Agent and a DEADLINE_EXCEEDED status from us rather than a bare timeout.
DEADLINE_MARGIN_SECONDS = 0.05


@dataclass(frozen=True)
class DispatchSettings:
    workers: int = 64
    max_attempts: int = 3
    dispatch_wait_seconds: float = 30.0
    run_slack_seconds: float = 30.0
    backoff_initial_seconds: float = 0.05
    backoff_max_seconds: float = 2.0


class Dispatcher:
    def __init__(self, book: AgentBook, executors: Executors, settings: DispatchSettings) -> None:
        if not executors.addresses:
            raise ValueError("the dispatcher needs at least one executor address")
        self.book = book
        self.executors = executors
        self.settings = settings
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._load = {addr: 0 for addr in executors.addresses}
        self._rr = 0
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    def enqueue(self, agent_id: str) -> None:
        self.queue.put_nowait(agent_id)

    def start(self) -> None:
        count = self.settings.workers
        self._workers = [asyncio.create_task(self._worker(), name=f"dispatch-{i}") for i in range(count)]

    async def stop(self, grace: float) -> None:
        """Stop taking agents, let running dispatches finish for `grace` seconds, then cancel the rest.
        Cancelled runs stay in-flight in the journal; the next start treats them as lost runs."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    # --- workers ---------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stopping:
            agent_id = await self.queue.get()
            live = self.book.live.get(agent_id)
            if live is None or live.dispatching or live.agent.state.terminal or self._stopping:
                continue  # cancelled while queued, or already finished
            live.dispatching = True
            self._in_flight += 1
            self._idle.clear()
            metrics.IN_FLIGHT.inc()
            try:
                with resumed(live.traceparent):
                    await self._dispatch(live)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch failed unexpectedly", extra={"fields": {"agent": agent_id}})
                outcome = Outcome(AgentState.FAILED, "the scheduler failed while dispatching; see its log",
                                  Cause.INTERNAL, "INTERNAL")  # fmt: skip
                await self.book.finish(live, outcome)
            finally:
                live.dispatching = False
                live.handle = None
                self._in_flight -= 1
                metrics.IN_FLIGHT.dec()
                if self._in_flight == 0:
                    self._idle.set()

    def _pick(self, tried: set[str]) -> str | None:
        candidates = [a for a in self.executors.addresses if a not in tried]
        if not candidates:
            return None
        least = min(self._load[a] for a in candidates)
        best = [a for a in candidates if self._load[a] == least]
        self._rr = (self._rr + 1) % len(best)
        return best[self._rr]

    def _budget(self, live: LiveAgent) -> tuple[float, bool]:
        """Seconds the executor call may take, and whether that limit is the caller's deadline."""
        own = live.agent.timeout_ms / 1000 + self.settings.run_slack_seconds
        remaining = live.remaining(time.time())
        if remaining is not None and remaining - DEADLINE_MARGIN_SECONDS < own:
            return remaining - DEADLINE_MARGIN_SECONDS, True
        return own, False

    async def _sleep_unless_cancelled(self, live: LiveAgent, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.cancelled.wait(), max(seconds, 0))

    async def _dispatch(self, live: LiveAgent) -> None:
        s = self.settings
        if not live.agent.in_flight and not await self.book.update(live, domain.mark_dispatching):
            return
        tried: set[str] = set()
        backoff = s.backoff_initial_seconds
        waiting_since = time.monotonic()
        last_refusal = ""
        while True:
            if live.cancel_reason is not None:
                await self.book.finish(live, Outcome(AgentState.CANCELLED, live.cancel_reason, Cause.CANCELLED,
                                                     "CANCELLED"))  # fmt: skip
                return
            timeout, caller_deadline = self._budget(live)
            if caller_deadline and timeout <= 0:
                await self.book.finish(live, Outcome(
                    AgentState.TIMED_OUT, "the caller's deadline passed before an executor could start the agent",
                    Cause.TIMED_OUT, "DEADLINE_EXCEEDED"))  # fmt: skip
                return
            address = self._pick(tried)
            if address is None:
                if time.monotonic() - waiting_since >= s.dispatch_wait_seconds:
                    reason = (f"no executor could take the agent within {s.dispatch_wait_seconds:g} s "
                              f"(last refusal: {last_refusal})")  # fmt: skip
                    await self.book.finish(live, Outcome(AgentState.FAILED, reason, Cause.NO_EXECUTOR, "UNAVAILABLE"))
                    return
                delay = min(backoff, s.dispatch_wait_seconds - (time.monotonic() - waiting_since))
                await self._sleep_unless_cancelled(live, delay * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, s.backoff_max_seconds)
                tried.clear()
                continue
            tried.add(address)
            result = await self._attempt(live, address, timeout, caller_deadline)
            if isinstance(result, Refused):
                last_refusal = f"{result.executor}: {result.code}: {result.message}"
                metrics.DISPATCH_RETRIES.labels(
                    "executor_full" if result.code == "RESOURCE_EXHAUSTED" else "executor_unavailable"
                ).inc()
                continue
            if isinstance(result, Lost):
                if domain.can_retry_lost_run(live.agent, s.max_attempts):
                    metrics.DISPATCH_RETRIES.labels("executor_lost").inc()
                    log_event(log, "run lost; re-dispatching", logging.WARNING, agent=live.agent.id, what=result.what)
                    reason = f"executor lost during run ({result.what}); re-dispatched"

                    def redispatched(agent: Agent, reason: str = reason) -> Agent:
                        return domain.redispatch(agent, reason)

                    if not await self.book.update(live, redispatched):
                        return
                    tried.clear()
                    waiting_since = time.monotonic()
                    continue
                await self.book.finish(live, domain.lost_run_outcome(live.agent, result.what, s.max_attempts))
                return
            await self.book.finish(live, result)
            return

    async def _attempt(
        self, live: LiveAgent, address: str, timeout: float, caller_deadline: bool
    ) -> Outcome | Refused | Lost:
        agent = live.agent
        spec = RunSpec(agent.id, agent.template_name, agent.template_version, agent.input)
        handle = self.executors.start(address, spec, timeout)
        live.handle = handle
        if live.cancel_reason is not None:
            handle.cancel()
        saw_events = False
        finished: RunFinished | None = None
        ended = Ended("UNKNOWN", "the executor stream ended without a status")
        self._load[address] += 1
        try:
            async for event in handle.events():
                if isinstance(event, Ended):
                    ended = event
                    break
                saw_events = True
                if isinstance(event, Accepted):
                    if live.agent.state is AgentState.PENDING:
                        executor = event.executor_id or address

                        def running(agent: Agent, executor: str = executor) -> Agent:
                            return domain.mark_running(agent, executor, time.time())

                        await self.book.update(live, running)
                elif isinstance(event, Output):
                    live.append_output(event.data)
                    live.publish(event)
                elif isinstance(event, Log):
                    live.publish(event)
                elif isinstance(event, RunFinished):
                    finished = event
                elif isinstance(event, Started):
                    pass
        finally:
            self._load[address] -= 1
            live.handle = None
        if saw_events and live.agent.state is AgentState.PENDING and finished is not None:
            # The executor skipped RunAccepted; the run happened all the same, so record it as one.
            await self.book.update(live, lambda a: domain.mark_running(a, address, time.time()))
        return domain.classify_run(
            executor=ended.executor or address,
            saw_events=saw_events,
            finished=finished,
            code=ended.code,
            message=ended.message,
            cancel_reason=live.cancel_reason,
            caller_deadline=caller_deadline,
        )

"""The scheduler's use cases on a real journal with in-process executor doubles."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.common import errors
from services.scheduler import domain
from services.scheduler.dispatcher import DispatchSettings
from services.scheduler.domain import Agent, AgentState, CreateSpec, Page, TemplateInfo, list_query
from services.scheduler.journal import Journal
from services.scheduler.ports import AgentChanged, Log, Output
from services.scheduler.service import SchedulerService, ServiceSettings
from tests.unit.scheduler import doubles

ECHO = TemplateInfo("echo", "1.0.0", retryable=False, timeout_ms=2000)
RETRY = TemplateInfo("retry", "2.0.0", retryable=True, timeout_ms=2000)
FAST = DispatchSettings(workers=8, max_attempts=3, dispatch_wait_seconds=0.3, backoff_initial_seconds=0.01,
                        backoff_max_seconds=0.05)  # fmt: skip

Factory = Callable[..., Awaitable[SchedulerService]]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[tuple[SchedulerService, Journal]] = []

    async def make(scripts: dict[str, doubles.Script] | None = None, start: bool = True,
                   **settings: object) -> SchedulerService:  # fmt: skip
        journal = Journal.open(tmp_path / "data")
        executors = doubles.FakeExecutors(scripts or {"ex-a": doubles.succeed})
        svc = SchedulerService(journal, doubles.Templates(ECHO, RETRY), executors,
                               ServiceSettings(dispatch=FAST, **settings))  # type: ignore[arg-type]  # fmt: skip
        made.append((svc, journal))
        if start:
            await svc.start()
        return svc

    yield make
    for svc, journal in made:
        await svc.stop(0)
        journal.close()


async def until_terminal(svc: SchedulerService, agent_id: str) -> Agent:
    """The agent once it has ended: no time bound (pytest's timeout ends a hang)."""
    while not (agent := await svc.get(agent_id)).state.terminal:
        await asyncio.sleep(0.01)
    return agent


async def collect(stream: AsyncIterator[object]) -> tuple[list[object], BaseException | None]:
    events: list[object] = []
    try:
        async for event in stream:
            events.append(event)
    except errors.AgentFactoryError as exc:
        return events, exc
    return events, None


def executors_of(svc: SchedulerService) -> doubles.FakeExecutors:
    return svc.dispatcher.executors  # type: ignore[return-value]


# --- create / get / idempotency ----------------------------------------------------------------------


async def test_create_journals_then_runs_to_success(make_service: Factory) -> None:
    svc = await make_service()
    agent, created = await svc.create(CreateSpec("echo", input=b"hello", labels={"team": "a"}))
    assert created and agent.state is AgentState.PENDING and agent.template_version == "1.0.0"
    assert await svc.journal.get(agent.id) is not None  # journaled before create returned
    done = await until_terminal(svc, agent.id)
    assert (done.state, done.output, done.fuel_used, done.attempts, done.executor) == (
        AgentState.SUCCEEDED, b"HELLO", 123, 1, "ex-double",
    )  # fmt: skip
    assert done.reason and done.finish_time and done.start_time
    assert await svc.journal.get(agent.id) == done  # the terminal state is journaled too


async def test_unknown_template_is_not_found_and_nothing_is_journaled(make_service: Factory) -> None:
    svc = await make_service()
    with pytest.raises(errors.NotFound, match="nope"):
        await svc.create(CreateSpec("nope"))
    assert await svc.journal.count() == 0


async def test_same_request_id_returns_the_same_agent(make_service: Factory) -> None:
    svc = await make_service()
    spec = CreateSpec("echo", input=b"x", request_id="req-1")
    results = await asyncio.gather(*(svc.create(spec) for _ in range(5)))
    assert len({a.id for a, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await svc.journal.count() == 1


async def test_a_retry_that_cannot_resolve_its_template_or_is_over_the_limit_still_gets_its_agent(
    make_service: Factory,
) -> None:
    # The journal's unique request_id answers a retry (no lookup before the create); the paths that fail
    # before reaching it (registry error, scheduler full) look the request_id up instead of failing it.
    svc = await make_service(start=False, max_live_agents=1)  # nothing dispatches: the agent stays live
    spec = CreateSpec("echo", input=b"x", request_id="req-1")
    first, created = await svc.create(spec)
    assert created
    with pytest.raises(errors.ResourceExhausted):
        await svc.create(CreateSpec("echo", request_id="req-2"))  # a new request_id: full, as before
    assert await svc.create(spec) == (first, False)  # its agent, not RESOURCE_EXHAUSTED
    templates: doubles.Templates = svc.templates  # type: ignore[assignment]
    del templates.by_name["echo"]  # the registry no longer resolves the template
    svc.settings = dataclasses.replace(svc.settings, max_live_agents=10)
    with pytest.raises(errors.NotFound):
        await svc.create(CreateSpec("echo", input=b"x", request_id="req-3"))
    assert await svc.create(spec) == (first, False)
    assert await svc.journal.count() == 1


async def test_same_request_id_with_other_parameters_is_already_exists(make_service: Factory) -> None:
    svc = await make_service()
    await svc.create(CreateSpec("echo", input=b"x", request_id="req-1"))
    with pytest.raises(errors.AlreadyExists, match=r"request_id 'req-1' .* different input"):
        await svc.create(CreateSpec("echo", input=b"y", request_id="req-1"))


async def test_get_unknown_and_empty_ids(make_service: Factory) -> None:
    svc = await make_service()
    with pytest.raises(errors.NotFound):
        await svc.get("does-not-exist")
    with pytest.raises(errors.InvalidArgument):
        await svc.get("")


async def test_backpressure_when_too_many_unfinished_agents(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.forever}, max_live_agents=2)
    await svc.create(CreateSpec("echo"))
    await svc.create(CreateSpec("echo"))
    with pytest.raises(errors.ResourceExhausted, match="unfinished agents"):
        await svc.create(CreateSpec("echo"))


# --- listing -----------------------------------------------------------------------------------------


async def test_list_filters_and_paginates(make_service: Factory) -> None:
    svc = await make_service(start=False)  # nothing dispatches: every agent stays PENDING
    ids = [(await svc.create(CreateSpec("echo" if i % 3 else "retry", labels={"n": str(i % 2)})))[0].id
           for i in range(10)]  # fmt: skip
    seen, token = [], ""
    while True:
        page = await svc.list(list_query(0, "", "", 3, token))
        seen += [a.id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    echo_odd = await svc.list(list_query(int(AgentState.PENDING), "echo", "n=1", 50, ""))
    assert [a.id for a in echo_odd.agents] == [ids[i] for i in (7, 5, 1)]
    with pytest.raises(errors.InvalidArgument):  # a token from another filter
        list_query(0, "echo", "", 3, (await svc.list(list_query(0, "", "", 3, ""))).next_page_token)
    with pytest.raises(errors.InvalidArgument):
        list_query(99, "", "", 3, "")


async def test_list_by_request_id_finds_at_most_one(make_service: Factory) -> None:
    svc = await make_service(start=False)
    agent, _ = await svc.create(CreateSpec("echo", request_id="req-1", labels={"team": "a"}))
    await svc.create(CreateSpec("echo", request_id="req-2"))
    assert await svc.knows_request("req-1") and not await svc.knows_request("req-3")
    assert [a.id for a in (await svc.list(list_query(0, "", "", 50, "", request_id="req-1"))).agents] == [agent.id]
    assert await svc.list(list_query(0, "", "team=a", 50, "", request_id="req-1")) == Page([agent])
    assert await svc.list(list_query(0, "", "team=b", 50, "", request_id="req-1")) == Page([])  # filters apply
    assert await svc.list(list_query(int(AgentState.SUCCEEDED), "", "", 50, "", request_id="req-1")) == Page([])
    assert await svc.list(list_query(0, "", "", 50, "", request_id="req-3")) == Page([])


# --- dispatch ----------------------------------------------------------------------------------------


async def test_full_executor_is_skipped_for_the_next_one(make_service: Factory) -> None:
    svc = await make_service({"ex-full": doubles.full, "ex-ok": doubles.succeed})
    agents = [(await svc.create(CreateSpec("echo", input=b"x")))[0] for _ in range(4)]
    for a in agents:
        assert (await until_terminal(svc, a.id)).state is AgentState.SUCCEEDED
    assert {addr for addr, _, _ in executors_of(svc).calls} == {"ex-full", "ex-ok"}


async def test_no_executor_available_fails_with_unavailable(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.unreachable, "ex-b": doubles.full})
    events, error = await collect(svc.run(CreateSpec("echo"), timeout=None))
    final = events[-1].agent  # type: ignore[attr-defined]
    assert final.state is AgentState.FAILED and "no executor could take the agent" in final.reason
    assert isinstance(error, errors.Unavailable)


async def test_verification_failure_fails_with_failed_precondition(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.unverifiable})
    events, error = await collect(svc.run(CreateSpec("echo"), timeout=None))
    assert isinstance(error, errors.FailedPrecondition) and "signature" in error.message
    assert events[-1].agent.state is AgentState.FAILED  # type: ignore[attr-defined]


async def test_run_streams_state_changes_and_output(make_service: Factory) -> None:
    svc = await make_service()
    events, error = await collect(svc.run(CreateSpec("echo", input=b"abc"), timeout=None))
    assert error is None
    states = [e.agent.state for e in events if isinstance(e, AgentChanged)]
    assert states == [AgentState.PENDING, AgentState.RUNNING, AgentState.SUCCEEDED]
    assert [e.data for e in events if isinstance(e, Output)] == [b"ABC"]


async def test_run_deadline_is_passed_to_the_executor_and_times_out(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.forever})
    # The executor double never finishes: only the deadline the scheduler passes on can end this run.
    events, error = await collect(svc.run(CreateSpec("echo"), timeout=0.5))
    assert isinstance(error, errors.DeadlineExceeded)
    final = events[-1].agent  # type: ignore[attr-defined]
    assert final.state is AgentState.TIMED_OUT and "caller's deadline" in final.reason
    (_, _, timeout), *_ = executors_of(svc).calls
    assert 0.3 < timeout < 0.5  # the remaining time, less the margin for answering


async def test_output_is_capped_for_get(make_service: Factory) -> None:
    async def flood(spec: object) -> AsyncIterator[object]:
        async for event in doubles.succeed(spec, output=b"z" * 5000):  # type: ignore[arg-type]
            yield event

    svc = await make_service({"ex-a": flood}, output_cap_bytes=1000)
    agent, _ = await svc.create(CreateSpec("echo"))
    done = await until_terminal(svc, agent.id)
    assert (len(done.output), done.output_truncated) == (1000, True)


# --- cancel ------------------------------------------------------------------------------------------


async def test_cancel_pending_is_immediate(make_service: Factory) -> None:
    svc = await make_service(start=False)
    agent, _ = await svc.create(CreateSpec("echo"))
    cancelled = await svc.cancel(agent.id)
    assert cancelled.state is AgentState.CANCELLED and cancelled.reason == "cancelled by CancelAgent"
    assert (await svc.journal.get(agent.id)).state is AgentState.CANCELLED
    assert (await svc.cancel(agent.id)).state is AgentState.CANCELLED  # idempotent on an ended agent


async def test_cancel_running_stops_the_executor_call(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.forever})
    agent, _ = await svc.create(CreateSpec("echo"))
    watch = svc.watch(agent.id)
    assert (await anext(watch)).agent.state is AgentState.PENDING  # type: ignore[attr-defined]
    while (await svc.get(agent.id)).state is not AgentState.RUNNING:
        await asyncio.sleep(0.01)
    cancelled = await svc.cancel(agent.id)
    assert cancelled.state is AgentState.CANCELLED and cancelled.output == b"working..."
    rest = [e async for e in watch]
    assert rest[-1].agent.state is AgentState.CANCELLED  # type: ignore[attr-defined]


async def test_run_caller_going_away_cancels_its_agent(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.forever})
    stream = svc.run(CreateSpec("echo"), timeout=None)
    first = await anext(stream)
    while (await svc.get(first.agent.id)).state is not AgentState.RUNNING:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    await stream.aclose()
    done = await until_terminal(svc, first.agent.id)  # type: ignore[attr-defined]
    assert done.state is AgentState.CANCELLED and "caller went away" in done.reason


# --- lost runs and recovery --------------------------------------------------------------------------


async def test_broken_stream_retryable_is_redispatched(make_service: Factory) -> None:
    calls = {"n": 0}

    async def flaky(spec: object) -> AsyncIterator[object]:
        calls["n"] += 1
        script = doubles.broken if calls["n"] == 1 else doubles.succeed
        async for event in script(spec):  # type: ignore[arg-type]
            yield event

    svc = await make_service({"ex-a": flaky})
    agent, _ = await svc.create(CreateSpec("retry", input=b"r"))
    done = await until_terminal(svc, agent.id)
    assert (done.state, done.attempts, done.output) == (AgentState.SUCCEEDED, 2, b"R")  # partial output dropped


async def test_broken_stream_not_retryable_fails_with_reason(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.broken})
    agent, _ = await svc.create(CreateSpec("echo"))
    done = await until_terminal(svc, agent.id)
    assert done.state is AgentState.FAILED
    assert "executor lost during run" in done.reason and done.reason.endswith("template is not retryable")


async def test_retryable_gives_up_after_max_attempts(make_service: Factory) -> None:
    svc = await make_service({"ex-a": doubles.broken})
    agent, _ = await svc.create(CreateSpec("retry"))
    done = await until_terminal(svc, agent.id)
    assert (done.state, done.attempts) == (AgentState.FAILED, 3) and "gave up after 3 attempts" in done.reason


async def test_recovery_after_a_crash(tmp_path: Path, make_service: Factory) -> None:
    # Write the journal a crashed scheduler would leave behind.
    journal = Journal.open(tmp_path / "data")
    now = time.time()

    async def put(i: int, info: TemplateInfo, change: Callable[[Agent], Agent], deadline: float | None = None) -> str:
        agent = domain.new_agent(f"a{i}", CreateSpec(info.name, input=b"in"), info, now, deadline)
        stored, _ = await journal.create(agent)
        await journal.update(change(stored))
        return stored.id

    pending = await put(1, ECHO, lambda a: a)
    running_plain = await put(2, ECHO, lambda a: domain.mark_running(domain.mark_dispatching(a), "ex-old", now))
    running_retry = await put(3, RETRY, lambda a: domain.mark_running(domain.mark_dispatching(a), "ex-old", now))
    in_flight_plain = await put(4, ECHO, domain.mark_dispatching)
    expired = await put(5, RETRY, lambda a: a, deadline=now - 1)
    journal.close()

    svc = await make_service()
    results = {
        i: await until_terminal(svc, i) for i in (pending, running_plain, running_retry, in_flight_plain, expired)
    }
    assert results[pending].state is AgentState.SUCCEEDED and results[pending].attempts == 1
    for lost in (running_plain, in_flight_plain):
        assert results[lost].state is AgentState.FAILED
        assert results[lost].reason == "executor lost during run (scheduler restarted); template is not retryable"
    assert (results[running_retry].state, results[running_retry].attempts) == (AgentState.SUCCEEDED, 2)
    assert results[expired].state is AgentState.TIMED_OUT


async def test_watch_of_a_finished_agent_sends_its_final_state(make_service: Factory) -> None:
    svc = await make_service()
    agent, _ = await svc.create(CreateSpec("echo", input=b"q"))
    await until_terminal(svc, agent.id)
    events = [e async for e in svc.watch(agent.id)]
    assert len(events) == 1 and events[0].agent.state is AgentState.SUCCEEDED  # type: ignore[attr-defined]


async def test_slow_watcher_loses_output_but_never_the_final_state(make_service: Factory) -> None:
    async def chatty(spec: object) -> AsyncIterator[object]:
        from services.scheduler.ports import Accepted, Ended

        yield Accepted("ex")
        for i in range(3000):
            yield Output(b"%d," % i)
        yield domain.RunFinished(domain.RunOutcome.SUCCEEDED)
        yield Ended("OK")

    svc = await make_service({"ex-a": chatty})
    agent, _ = await svc.create(CreateSpec("echo"))
    watch = svc.watch(agent.id)
    await anext(watch)
    await until_terminal(svc, agent.id)  # the watcher reads nothing meanwhile
    rest = [e async for e in watch]
    assert isinstance(rest[-1], AgentChanged) and rest[-1].agent.state is AgentState.SUCCEEDED
    assert any(isinstance(e, Log) and "fell behind" in e.message for e in rest)
    assert sum(isinstance(e, Output) for e in rest) <= 1024


def test_settings_dataclass_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServiceSettings().output_cap_bytes = 1  # type: ignore[misc]


async def test_shutdown_leaves_running_agents_in_flight_for_the_next_start(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "data")
    svc = SchedulerService(journal, doubles.Templates(ECHO), doubles.FakeExecutors({"ex-a": doubles.forever}),
                           ServiceSettings(dispatch=FAST))  # fmt: skip
    await svc.start()
    agent, _ = await svc.create(CreateSpec("echo"))
    while (await svc.get(agent.id)).state is not AgentState.RUNNING:
        await asyncio.sleep(0.01)
    await svc.stop(grace=0.05)
    journal.close()

    reopened = Journal.open(tmp_path / "data")
    try:
        left = await reopened.get(agent.id)
        assert (left.state, left.in_flight) == (AgentState.RUNNING, True)  # not silently dropped or finished
        after = SchedulerService(reopened, doubles.Templates(ECHO), doubles.FakeExecutors({"ex-a": doubles.succeed}),
                                 ServiceSettings(dispatch=FAST))  # fmt: skip
        await after.start()
        done = await until_terminal(after, agent.id)
        assert done.state is AgentState.FAILED and done.reason.endswith("template is not retryable")
        await after.stop(0)
    finally:
        reopened.close()

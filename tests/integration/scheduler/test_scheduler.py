"""The scheduler against real signer, registry and executor processes and real wasmtime sandboxes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from agentfactory.executor.v1 import executor_service_pb2 as ex_pb
from agentfactory.executor.v1 import executor_service_pb2_grpc as ex_grpc
from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from tests.harness import ServiceProcess, free_port
from tests.integration.conftest import scrape_metric
from tests.integration.scheduler.conftest import TIMEOUT, SchedulerFactory, executor_env
from tests.integration.scheduler.create_load import LOST_REASON, CreateLoad

S = pb.AgentState


def run_agent(sched, template: str, data: bytes = b"", timeout: float = TIMEOUT, **kw: object):  # type: ignore[no-untyped-def]
    """RunAgent to the end: (events, final status code, status details)."""
    call = sched.stub.RunAgent(pb.RunAgentRequest(template_name=template, input=data, **kw), timeout=timeout)
    events = []
    try:
        for event in call:
            events.append(event)
    except grpc.RpcError as exc:
        return events, exc.code(), exc.details()
    return events, call.code(), call.details()


def wait_state(sched, agent_id: str, states: set[int]) -> pb.Agent:  # type: ignore[no-untyped-def]
    """The agent once it is in one of `states`, however long a loaded machine takes to get it there
    (pytest's timeout ends a hang). Fails at once if it ends in another state: it never leaves that."""
    while True:
        agent = sched.get(agent_id)
        if agent.state in states:
            return agent
        assert agent.state not in TERMINAL, f"agent {agent_id} ended {S.Name(agent.state)}, not in {states}: {agent}"
        time.sleep(0.02)


TERMINAL = {S.AGENT_STATE_SUCCEEDED, S.AGENT_STATE_FAILED, S.AGENT_STATE_CANCELLED, S.AGENT_STATE_TIMED_OUT}
RUN_OUTCOMES = ("succeeded", "failed", "timed_out", "resource_exhausted", "cancelled")


def test_run_agent_end_to_end(scheduler: SchedulerFactory, executor: ServiceProcess) -> None:
    sched = scheduler()
    events, code, _ = run_agent(sched, "echo-upper", b"hello, agent", labels={"team": "qa"})
    assert code == grpc.StatusCode.OK
    states = [e.agent.state for e in events if e.WhichOneof("event") == "agent"]
    assert states == [S.AGENT_STATE_PENDING, S.AGENT_STATE_RUNNING, S.AGENT_STATE_SUCCEEDED]
    assert b"".join(e.output.data for e in events if e.WhichOneof("event") == "output") == b"HELLO, AGENT"
    final = events[-1].agent
    assert final.template_version == "1.0.0"  # "latest" resolved to an exact version at creation
    stored = sched.get(final.id)
    assert (stored.output, stored.exit_code, stored.attempts, stored.executor) == (
        b"HELLO, AGENT",
        0,
        1,
        "executor-main",
    )
    assert stored.fuel_used > 0 and stored.reason and stored.labels["team"] == "qa"
    assert stored.finish_time.ToNanoseconds() >= stored.start_time.ToNanoseconds() >= stored.create_time.ToNanoseconds()
    assert sched.metric("agentfactory_scheduler_agents_created_total", template="echo-upper") == 1


def test_run_agent_result_view_is_two_messages(scheduler: SchedulerFactory) -> None:
    sched = scheduler()
    result = pb.RUN_AGENT_VIEW_RESULT
    events, code, _ = run_agent(sched, "echo-upper", b"just the answer", view=result)
    assert code == grpc.StatusCode.OK
    assert [e.WhichOneof("event") for e in events] == ["agent", "agent"]
    pending, final = events[0].agent, events[1].agent
    assert (pending.state, final.state) == (S.AGENT_STATE_PENDING, S.AGENT_STATE_SUCCEEDED)
    assert pending.id == final.id and final.output == b"JUST THE ANSWER" and final.executor == "executor-main"
    # Statuses follow the run as in the full view.
    events, code, details = run_agent(sched, "sched-burn", view=result)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert [e.agent.state for e in events] == [S.AGENT_STATE_PENDING, S.AGENT_STATE_FAILED]
    # A repeated request_id whose agent has ended: that agent, once.
    first, _, _ = run_agent(sched, "echo-upper", b"again", request_id="result-view-1", view=result)
    again, code, _ = run_agent(sched, "echo-upper", b"again", request_id="result-view-1", view=result)
    assert code == grpc.StatusCode.OK and [e.agent.state for e in again] == [S.AGENT_STATE_SUCCEEDED]
    assert again[0].agent.id == first[-1].agent.id
    events, code, details = run_agent(sched, "echo-upper", view=7)
    assert (code, events) == (grpc.StatusCode.INVALID_ARGUMENT, []) and "RunAgentView" in details


def test_create_returns_pending_then_watch_follows_to_the_end(scheduler: SchedulerFactory) -> None:
    sched = scheduler()
    agent = sched.create("echo-upper", b"watch me", labels={"run": "w1"})
    assert agent.state == S.AGENT_STATE_PENDING and agent.id
    events = list(sched.stub.WatchAgent(pb.WatchAgentRequest(id=agent.id), timeout=TIMEOUT))
    assert events[0].agent.id == agent.id
    assert events[-1].agent.state == S.AGENT_STATE_SUCCEEDED and events[-1].agent.output == b"WATCH ME"
    # Watching a finished agent sends its final state and ends.
    again = list(sched.stub.WatchAgent(pb.WatchAgentRequest(id=agent.id), timeout=TIMEOUT))
    assert len(again) == 1 and again[0].agent.state == S.AGENT_STATE_SUCCEEDED
    listed = sched.stub.ListAgents(pb.ListAgentsRequest(label_selector="run=w1"), timeout=TIMEOUT)
    assert [a.id for a in listed.agents] == [agent.id]


def test_list_paginates_newest_first_and_filters(scheduler: SchedulerFactory) -> None:
    sched = scheduler()
    ids = [sched.create("echo-upper", b"x", labels={"batch": "p"}).id for _ in range(7)]
    for agent_id in ids:
        wait_state(sched, agent_id, TERMINAL)
    seen, token = [], ""
    while True:
        page = sched.stub.ListAgents(pb.ListAgentsRequest(page_size=3, page_token=token, label_selector="batch=p"),
                                     timeout=TIMEOUT)  # fmt: skip
        seen += [a.id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    done = sched.stub.ListAgents(
        pb.ListAgentsRequest(state=S.AGENT_STATE_SUCCEEDED, template_name="echo-upper"), timeout=TIMEOUT
    )
    assert set(ids) <= {a.id for a in done.agents}
    # A creation-time window: [created_after, created_before), with the label filter.
    times = {a.id: a.create_time for a in sched.stub.ListAgents(pb.ListAgentsRequest(label_selector="batch=p"),
                                                                timeout=TIMEOUT).agents}  # fmt: skip
    window = pb.ListAgentsRequest(label_selector="batch=p", created_after=times[ids[2]], created_before=times[ids[5]])
    assert [a.id for a in sched.stub.ListAgents(window, timeout=TIMEOUT).agents] == ids[4:1:-1]
    with pytest.raises(grpc.RpcError) as err:
        sched.stub.ListAgents(pb.ListAgentsRequest(page_token="not-a-token"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancel_stops_a_long_running_agent_quickly(scheduler: SchedulerFactory, executor: ServiceProcess) -> None:
    sched = scheduler()
    agent = sched.create("sched-spin")
    wait_state(sched, agent.id, {S.AGENT_STATE_RUNNING})
    metrics = executor.env["AF_METRICS_ADDR"]
    before = {o: scrape_metric(metrics, "agentfactory_executor_runs_total", outcome=o) for o in RUN_OUTCOMES}
    cancelled = sched.stub.CancelAgent(pb.CancelAgentRequest(id=agent.id), timeout=TIMEOUT).agent
    assert cancelled.state == S.AGENT_STATE_CANCELLED and cancelled.reason == "cancelled by CancelAgent"
    # The sandbox really stopped, and the cancel stopped it: the executor counts the run as cancelled (its
    # 30 s deadline would count timed_out, its fuel resource_exhausted), however long a loaded machine
    # takes to get there; then its worker is free again.
    while not (ended := [o for o in RUN_OUTCOMES if scrape_metric(metrics, "agentfactory_executor_runs_total",
                                                                   outcome=o) > before[o]]):  # fmt: skip
        time.sleep(0.02)
    assert ended == ["cancelled"], ended
    with grpc.insecure_channel(executor.addr) as channel:
        stub = ex_grpc.ExecutorServiceStub(channel)
        while stub.GetCapacity(ex_pb.GetCapacityRequest(), timeout=TIMEOUT).busy:
            time.sleep(0.02)


def test_cancel_pending_is_immediate_and_final(scheduler: SchedulerFactory) -> None:
    # An executor address nobody listens on: the agent stays PENDING, retrying, until cancelled.
    sched = scheduler(executors=[f"127.0.0.1:{free_port()}"])
    agent = sched.create("echo-upper")
    cancelled = sched.stub.CancelAgent(pb.CancelAgentRequest(id=agent.id), timeout=TIMEOUT).agent
    assert cancelled.state == S.AGENT_STATE_CANCELLED
    time.sleep(0.2)
    assert sched.get(agent.id).state == S.AGENT_STATE_CANCELLED


def test_create_is_idempotent_on_request_id(scheduler: SchedulerFactory) -> None:
    sched = scheduler()
    first = sched.create("echo-upper", b"same", request_id="req-42")
    second = sched.create("echo-upper", b"same", request_id="req-42")
    assert first.id == second.id
    with pytest.raises(grpc.RpcError) as err:
        sched.create("echo-upper", b"different", request_id="req-42")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "req-42" in err.value.details() and "input" in err.value.details()
    # RunAgent with the same request id follows the same agent instead of creating another.
    events, code, _ = run_agent(sched, "echo-upper", b"same", request_id="req-42")
    assert code == grpc.StatusCode.OK and events[-1].agent.id == first.id


def test_unknown_template_is_not_found(scheduler: SchedulerFactory) -> None:
    sched = scheduler()
    with pytest.raises(grpc.RpcError) as err:
        sched.create("no-such-template")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-template" in err.value.details()
    events, code, _ = run_agent(sched, "no-such-template")
    assert code == grpc.StatusCode.NOT_FOUND and events == []
    assert sched.stub.ListAgents(pb.ListAgentsRequest(), timeout=TIMEOUT).agents == []  # nothing journaled
    with pytest.raises(grpc.RpcError) as err:
        sched.create("echo-upper", template_version="not-semver")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        list(sched.stub.WatchAgent(pb.WatchAgentRequest(id="no-such-agent"), timeout=TIMEOUT))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_deprecated_version_is_refused_for_new_agents(scheduler: SchedulerFactory, registry: ServiceProcess) -> None:
    sched = scheduler()
    with grpc.insecure_channel(registry.addr) as channel:
        reg_grpc.RegistryServiceStub(channel).DeprecateTemplate(
            reg_pb.DeprecateTemplateRequest(name="sched-old", version="1.0.0", reason="superseded"), timeout=TIMEOUT
        )
    with pytest.raises(grpc.RpcError) as err:
        sched.create("sched-old", template_version="1.0.0")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "superseded" in err.value.details()


def test_run_status_mirrors_limits_and_deadlines(scheduler: SchedulerFactory) -> None:
    sched = scheduler()
    events, code, details = run_agent(sched, "sched-burn")  # 5M fuel in an endless loop
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert events[-1].agent.state == S.AGENT_STATE_FAILED and "fuel" in events[-1].agent.reason.lower()

    # The caller's deadline, not the template's 30 s. The agent is found by its request id: on a loaded
    # machine the deadline may pass before the stream's first event arrives.
    events, code, _ = run_agent(sched, "sched-spin", timeout=3.0, request_id="caller-deadline")
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    (found,) = sched.stub.ListAgents(pb.ListAgentsRequest(request_id="caller-deadline"), timeout=TIMEOUT).agents
    agent_id = found.id
    assert not events or events[0].agent.id == agent_id
    timed_out = wait_state(sched, agent_id, TERMINAL)
    assert timed_out.state == S.AGENT_STATE_TIMED_OUT and "deadline" in timed_out.reason


@pytest.fixture(scope="module")
def small_executor(workdir: Path, registry: ServiceProcess, signer: ServiceProcess):  # type: ignore[no-untyped-def]
    """An executor with one worker and no queue: full as soon as one run is going."""
    env = executor_env(registry, signer, AF_EXECUTOR_MAX_WORKERS="1", AF_EXECUTOR_MIN_WORKERS="1",
                       AF_EXECUTOR_QUEUE="0")  # fmt: skip
    with ServiceProcess("executor-small", workdir, env) as proc:
        yield proc


@contextlib.contextmanager
def _filled(small: ServiceProcess) -> Iterator[None]:
    """The one-slot executor busy with an endless run (called directly, not through a scheduler) until exit."""
    channel = grpc.insecure_channel(small.addr)
    hog = ex_grpc.ExecutorServiceStub(channel).Run(
        ex_pb.RunRequest(agent_id="hog", template_name="sched-spin", template_version="1.0.0"), timeout=30
    )
    assert next(hog).events[0].WhichOneof("event") == "accepted"
    try:
        yield
    finally:
        hog.cancel()
        channel.close()


def test_full_executor_sends_runs_to_the_other(
    scheduler: SchedulerFactory, executor: ServiceProcess, small_executor: ServiceProcess
) -> None:
    # Fill the small executor directly with an endless run, then place agents on [small, main].
    with _filled(small_executor):
        sched = scheduler(executors=[small_executor.addr, executor.addr])
        for i in range(4):
            events, code, details = run_agent(sched, "echo-upper", b"x%d" % i)
            assert code == grpc.StatusCode.OK, details
            assert events[-1].agent.executor == "executor-main"
        assert sched.metric("agentfactory_scheduler_dispatch_retries_total", reason="executor_full") >= 1


def test_a_refusal_names_the_executor_not_the_address_called(
    scheduler: SchedulerFactory, small_executor: ServiceProcess
) -> None:
    # Through a mesh the address is the scheduler's own sidecar: only the executor's trailer says who.
    with _filled(small_executor):
        sched = scheduler(executors=[small_executor.addr], AF_DISPATCH_WAIT_SECONDS="0.5")
        _events, code, details = run_agent(sched, "echo-upper", b"w")
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert "last refusal: executor-small: RESOURCE_EXHAUSTED" in details and small_executor.addr not in details


def test_unreachable_executor_is_skipped(scheduler: SchedulerFactory, executor: ServiceProcess) -> None:
    sched = scheduler(executors=[f"127.0.0.1:{free_port()}", executor.addr])
    for _ in range(4):
        _, code, details = run_agent(sched, "echo-upper", b"y")
        assert code == grpc.StatusCode.OK, details
    assert sched.metric("agentfactory_scheduler_dispatch_retries_total", reason="executor_unavailable") >= 1


def test_no_executor_at_all_is_unavailable(scheduler: SchedulerFactory) -> None:
    sched = scheduler(executors=[f"127.0.0.1:{free_port()}"], AF_DISPATCH_WAIT_SECONDS="0.5")
    events, code, details = run_agent(sched, "echo-upper", b"z")
    assert code == grpc.StatusCode.UNAVAILABLE and "no executor could take the agent" in details
    assert events[-1].agent.state == S.AGENT_STATE_FAILED


def test_kill_9_loses_no_acknowledged_agent(scheduler: SchedulerFactory) -> None:
    """Create agents concurrently, SIGKILL the scheduler while creates and runs are in flight, restart it:
    every acknowledged agent is there and ends terminal; lost runs are re-dispatched or failed by the rule."""
    sched = scheduler(AF_MAX_DISPATCHES="8")
    load = CreateLoad(sched, "c")
    acked, stop = load.acked, load.stop

    with ThreadPoolExecutor(8) as pool:
        for n in range(8):
            pool.submit(load.creator, n)
        # However long a loaded machine takes to get there (pytest's timeout ends a hang): killed any
        # earlier, the recovery rules the asserts below check may have had nothing to do.
        while True:
            running = sched.stub.ListAgents(pb.ListAgentsRequest(state=S.AGENT_STATE_RUNNING), timeout=TIMEOUT)
            # Kill when both kinds of template have runs going, so both recovery rules get exercised.
            if len(acked) >= 40 and {a.template_name for a in running.agents} >= {
                "sched-work-retry",
                "sched-work-once",
            }:
                break
            time.sleep(0.05)
        sched.proc.kill()  # SIGKILL, mid-flight: creates still arriving, runs going
        stop.set()
    assert len(acked) >= 40

    sched.restart()
    finals = {agent_id: wait_state(sched, agent_id, TERMINAL) for agent_id in acked}
    redispatched = failed_lost = 0
    for agent_id, agent in finals.items():
        if acked[agent_id] == "sched-work-retry":
            assert agent.state == S.AGENT_STATE_SUCCEEDED, agent
            assert agent.output == b"done\n"
            redispatched += agent.attempts > 1
        elif agent.state == S.AGENT_STATE_FAILED:
            assert agent.reason == LOST_REASON, agent
            failed_lost += 1
        else:
            assert agent.state == S.AGENT_STATE_SUCCEEDED, agent
    # Runs were in flight at the kill, so both rules must have been exercised.
    assert redispatched >= 1 and failed_lost >= 1, (redispatched, failed_lost)
    assert sched.metric("agentfactory_scheduler_recovered_agents_total", action="redispatched") >= 1
    assert sched.metric("agentfactory_scheduler_recovered_agents_total", action="failed") >= 1

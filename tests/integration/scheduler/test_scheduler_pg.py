"""Scheduler replicas on one real PostgreSQL: any replica answers for any agent, request_id is
idempotent across replicas, a SIGKILLed replica's agents are taken over and end exactly once, and a
database outage is UNAVAILABLE, not INTERNAL, until the database is back."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from mesh.pglocal import LocalPostgres
from tests.harness import eventually, free_port
from tests.integration.scheduler.conftest import TIMEOUT, Scheduler, SchedulerFactory
from tests.integration.scheduler.create_load import LOST_REASON, CreateLoad
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures

S = pb.AgentState
TERMINAL = {S.AGENT_STATE_SUCCEEDED, S.AGENT_STATE_FAILED, S.AGENT_STATE_CANCELLED, S.AGENT_STATE_TIMED_OUT}
LEASE = "2"  # seconds: a killed replica's agents are taken over about this long after its last renewal


def replica(scheduler: SchedulerFactory, dsn: str, **env: str) -> Scheduler:
    return scheduler(AF_DATABASE_URL=dsn, AF_SCHEDULER_LEASE_SECONDS=LEASE, **env)


def wait_terminal(sched: Scheduler, agent_id: str) -> pb.Agent:
    """The agent once it has ended: no time bound (pytest's timeout ends a hang), but a failure at once,
    with the scheduler's log, if its process exits."""
    seen: list[pb.Agent] = []

    def ended() -> bool:
        seen.append(sched.get(agent_id))
        return seen[-1].state in TERMINAL

    eventually(ended, f"agent {agent_id} terminal", broken=sched.proc.exited)
    return seen[-1]


def test_replicas_answer_for_each_others_agents(scheduler: SchedulerFactory, pg_dsn: str) -> None:  # noqa: F811
    a, b, c = (replica(scheduler, pg_dsn) for _ in range(3))
    created = a.create("echo-upper", b"hello", request_id="req-shared")
    assert b.create("echo-upper", b"hello", request_id="req-shared").id == created.id  # idempotent across replicas
    # Watch on a replica that did not create it: every state to the terminal one, output included.
    states = []
    for event in c.stub.WatchAgent(pb.WatchAgentRequest(id=created.id), timeout=30):
        if event.HasField("agent"):
            states.append(event.agent.state)
            last = event.agent
    assert states[-1] == S.AGENT_STATE_SUCCEEDED and last.output == b"HELLO"
    assert b.get(created.id).state == S.AGENT_STATE_SUCCEEDED
    listed = b.stub.ListAgents(pb.ListAgentsRequest(request_id="req-shared"), timeout=TIMEOUT).agents
    assert [x.id for x in listed] == [created.id]
    # RunAgent on one replica, read it back on another.
    run = list(c.stub.RunAgent(pb.RunAgentRequest(template_name="echo-upper", input=b"run"), timeout=30))
    ran = run[-1].agent
    assert ran.state == S.AGENT_STATE_SUCCEEDED and a.get(ran.id).output == b"RUN"
    with pytest.raises(grpc.RpcError) as err:
        b.get("no-such-agent")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_concurrent_creates_of_one_request_id_make_one_agent(scheduler: SchedulerFactory, pg_dsn: str) -> None:  # noqa: F811
    replicas = [replica(scheduler, pg_dsn) for _ in range(3)]

    def create(i: int, request_id: str) -> str:
        return replicas[i % 3].create("echo-upper", b"x", request_id=request_id).id

    for n in range(5):
        with ThreadPoolExecutor(12) as pool:
            ids = list(pool.map(create, range(12), [f"race-{n}"] * 12))
        assert len(set(ids)) == 1, ids


def test_sigkill_of_a_replica_under_load_loses_nothing_and_runs_nothing_twice(
    scheduler: SchedulerFactory,
    pg_dsn: str,  # noqa: F811
) -> None:
    victim = replica(scheduler, pg_dsn, AF_MAX_DISPATCHES="8")
    survivor = replica(scheduler, pg_dsn, AF_MAX_DISPATCHES="8")
    load = CreateLoad(victim, "k")
    acked, stop = load.acked, load.stop

    with ThreadPoolExecutor(6) as pool:
        for n in range(6):
            pool.submit(load.creator, n)
        while len(acked) < 30:
            time.sleep(0.05)
        running = victim.stub.ListAgents(pb.ListAgentsRequest(state=S.AGENT_STATE_RUNNING), timeout=TIMEOUT)
        while not running.agents:
            time.sleep(0.05)
            running = victim.stub.ListAgents(pb.ListAgentsRequest(state=S.AGENT_STATE_RUNNING), timeout=TIMEOUT)
        victim.proc.kill()
        killed_at = time.monotonic()
        stop.set()

    while survivor.metric("agentfactory_scheduler_recovered_agents_total") == 0:
        time.sleep(0.05)
    claimed = time.monotonic() - killed_at
    finals = {agent_id: wait_terminal(survivor, agent_id) for agent_id in acked}
    drained = time.monotonic() - killed_at
    print(f"\ntake-over (lease {LEASE} s): orphans claimed {claimed:.1f} s after SIGKILL; all {len(acked)} "
          f"acknowledged agents terminal after {drained:.1f} s")  # fmt: skip
    for agent_id, agent in finals.items():
        assert agent.state in TERMINAL, agent
        if acked[agent_id] == "sched-work-retry":
            assert agent.state == S.AGENT_STATE_SUCCEEDED and agent.output == b"done\n", agent
        elif agent.state == S.AGENT_STATE_FAILED:
            assert agent.reason == LOST_REASON, agent  # it may have run: not run a second time
            assert agent.attempts <= 1, agent
        else:
            assert agent.state == S.AGENT_STATE_SUCCEEDED and agent.attempts == 1, agent
    # The survivor took over; its own journal view agrees with what the victim had acknowledged.
    assert survivor.metric("agentfactory_scheduler_recovered_agents_total") >= 1


def restart(server: LocalPostgres) -> None:
    """Start again after a SIGKILL: the old backends notice their postmaster's death and leave the shared
    memory eventually (moments, or longer on a loaded machine); until then pg_ctl refuses to start. No time
    bound: pytest's timeout ends a hang."""
    while True:
        try:
            server.start()
            return
        except RuntimeError:
            time.sleep(0.3)


def test_database_outage_is_unavailable_and_heals(scheduler: SchedulerFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="af-postgres-outage-"))
    server = LocalPostgres(root, free_port())
    server.start()
    try:
        sched = replica(scheduler, server.dsn)
        before = sched.create("echo-upper", b"kept", request_id="before-outage")
        assert wait_terminal(sched, before.id).state == S.AGENT_STATE_SUCCEEDED
        pid = server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the postmaster; its backends exit with it
        codes = set()
        for _ in range(5):
            try:
                sched.get(before.id)
            except grpc.RpcError as err:
                codes.add(err.code())
            try:
                sched.create("echo-upper", b"x")
            except grpc.RpcError as err:
                codes.add(err.code())
            time.sleep(0.2)
        assert codes == {grpc.StatusCode.UNAVAILABLE}, codes
        assert sched.proc.alive()
        restart(server)
        while True:  # the pool reconnects by itself, however long that takes (no time bound)
            try:
                back = sched.get(before.id)
                break
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                assert sched.proc.alive(), sched.proc.logs()[-4000:]
                time.sleep(0.2)
        assert back.state == S.AGENT_STATE_SUCCEEDED and back.output == b"KEPT"  # nothing acknowledged lost
        after = sched.create("echo-upper", b"again")
        assert wait_terminal(sched, after.id).state == S.AGENT_STATE_SUCCEEDED
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_cancel_on_a_replica_that_does_not_run_the_agent(scheduler: SchedulerFactory, pg_dsn: str) -> None:  # noqa: F811
    a, b = replica(scheduler, pg_dsn), replica(scheduler, pg_dsn)
    spinning = a.create("sched-spin")
    while a.get(spinning.id).state != S.AGENT_STATE_RUNNING:
        time.sleep(0.05)
    cancelled = b.stub.CancelAgent(pb.CancelAgentRequest(id=spinning.id), timeout=30).agent
    assert cancelled.state == S.AGENT_STATE_CANCELLED, cancelled  # the owner stopped the run
    assert a.get(spinning.id).state == S.AGENT_STATE_CANCELLED
    again = b.stub.CancelAgent(pb.CancelAgentRequest(id=spinning.id), timeout=30).agent
    assert again.state == S.AGENT_STATE_CANCELLED  # idempotent on an ended agent

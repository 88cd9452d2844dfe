"""kill -9 of an executor in the middle of a run, with a scheduler placing agents on two executors: a
retryable agent is re-dispatched and finishes on the other executor; a non-retryable one fails with the
reason. The killed executor comes back with its disk cache and serves again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from afctl.client import Client, Endpoints
from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.harness import ServiceProcess
from tests.integration.conftest import busy_then_done_wat, start_ready
from tests.integration.executor.agents import LIMITS, manifest, wasm
from tests.integration.executor.conftest import EXECUTOR_SERVICE, SCHEDULER_SERVICE, executor_env, write_policy

# Busy for about a second (1e9 iterations), then writes "done\n": long enough to be killed mid-run.
BUSY_WAT = busy_then_done_wat(1_000_000_000)

BUSY_LIMITS = {**LIMITS, "fuel": 20_000_000_000, "timeout_ms": 30_000}
TERMINAL = {sch_pb.AGENT_STATE_SUCCEEDED, sch_pb.AGENT_STATE_FAILED, sch_pb.AGENT_STATE_CANCELLED}


@dataclass
class Crashable:
    executors: dict[str, ServiceProcess]  # by executor id (AF_SERVICE_ID)
    client: Client


@pytest.fixture(scope="module")
def crashable(workdir: Path, signer: ServiceProcess) -> Iterator[Crashable]:
    policy = write_policy(workdir / "policy.yaml", [])
    with ServiceProcess("registry", workdir, {"AF_POLICY_FILE": str(policy), "AF_SIGNER_ADDR": signer.addr}) as reg:
        with Client(Endpoints(reg.addr, signer.addr, reg.addr)) as publisher:
            for name, retryable in (("busy-retry", True), ("busy-once", False)):
                publisher.publish(manifest(name, limits=BUSY_LIMITS, retryable=retryable), wasm(BUSY_WAT))
        executors = {
            name: start_ready(ServiceProcess(name, workdir, executor_env(reg, signer, policy)), EXECUTOR_SERVICE)
            for name in ("executor-a", "executor-b")
        }
        env = {"AF_REGISTRY_ADDR": reg.addr, "AF_EXECUTOR_ADDRS": ",".join(p.addr for p in executors.values())}
        scheduler = start_ready(ServiceProcess("scheduler", workdir, env), SCHEDULER_SERVICE)
        try:
            with Client(Endpoints(reg.addr, signer.addr, scheduler.addr)) as client:
                yield Crashable(executors, client)
        finally:
            scheduler.stop()
            for proc in executors.values():
                proc.stop()


def get(client: Client, agent_id: str) -> sch_pb.Agent:
    return client.scheduler.GetAgent(sch_pb.GetAgentRequest(id=agent_id), timeout=10).agent


def wait_for(client: Client, agent_id: str, done: object) -> sch_pb.Agent:
    """The agent once `done(agent)` holds: no time bound (pytest's timeout ends a hang)."""
    while True:
        agent = get(client, agent_id)
        if done(agent):  # type: ignore[operator]
            return agent
        time.sleep(0.02)


def kill_its_executor_mid_run(crashable: Crashable, template: str) -> tuple[sch_pb.Agent, str]:
    """Create an agent, SIGKILL the executor running it, return the agent at its end and the killed id."""
    request = sch_pb.CreateAgentRequest(template_name=template, template_version="1.0.0")
    agent_id = crashable.client.scheduler.CreateAgent(request, timeout=10).agent.id
    running = wait_for(crashable.client, agent_id, lambda a: a.state == sch_pb.AGENT_STATE_RUNNING and a.executor)
    assert running.state == sch_pb.AGENT_STATE_RUNNING, running
    victim = crashable.executors[running.executor]
    victim.kill()
    try:
        return wait_for(crashable.client, agent_id, lambda a: a.state in TERMINAL), running.executor
    finally:
        start_ready(victim, EXECUTOR_SERVICE)  # back, from its disk cache, for whatever runs next


def test_retryable_agent_finishes_on_the_other_executor(crashable: Crashable) -> None:
    agent, killed = kill_its_executor_mid_run(crashable, "busy-retry")
    assert agent.state == sch_pb.AGENT_STATE_SUCCEEDED, agent.reason
    assert agent.executor != killed and agent.attempts == 2
    assert agent.output == b"done\n"


def test_non_retryable_agent_fails_with_the_reason(crashable: Crashable) -> None:
    agent, killed = kill_its_executor_mid_run(crashable, "busy-once")
    assert agent.state == sch_pb.AGENT_STATE_FAILED
    addr = crashable.executors[killed].addr
    assert agent.reason.startswith(f"executor lost during run (executor {addr} stream broke: UNAVAILABLE"), agent.reason
    assert agent.reason.endswith("; template is not retryable"), agent.reason
    assert agent.attempts == 1
    # Both executors serve again (the killed one restarted from its disk cache).
    for _ in crashable.executors:
        final, out = crashable.client.run_to_end("busy-retry", version="1.0.0")
        assert final.state == sch_pb.AGENT_STATE_SUCCEEDED and out == b"done\n"

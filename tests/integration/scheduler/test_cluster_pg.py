"""Two registry replicas and three scheduler replicas (blue, green, blue) on one real PostgreSQL: a client
going round-robin sees one consistent system — publish on one registry, create on one scheduler, watch on
another, read on the third, run on yet another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentfactory.scheduler.v1 import scheduler_service_pb2 as pb
from agentfactory.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from tests.harness import ServiceProcess
from tests.integration.conftest import start_ready
from tests.integration.scheduler.conftest import TIMEOUT, publish, templates
from tests.postgres import pg_dsn, postgres_server  # noqa: F401 — fixtures

S = pb.AgentState
EXECUTOR_SERVICE = "agentfactory.executor.v1.ExecutorService"


@pytest.fixture
def cluster(tmp_path: Path, signer: ServiceProcess, pg_dsn: str) -> Iterator[list[pb_grpc.SchedulerServiceStub]]:  # noqa: F811
    procs: list[ServiceProcess] = []
    channels: list[grpc.Channel] = []
    try:
        registries = []
        for i in range(2):
            env = {"AF_SIGNER_ADDR": signer.addr, "AF_DATABASE_URL": pg_dsn}
            registries.append(ServiceProcess("registry", tmp_path / f"registry-{i}", env).start())
            procs.append(registries[-1])
        for manifest, module in templates()[:1]:  # echo-upper, published through the first registry only
            publish(registries[0].addr, manifest, module)
        executor_env = {"AF_REGISTRY_ADDR": registries[1].addr, "AF_SIGNER_ADDR": signer.addr}
        executor = start_ready(ServiceProcess("executor-main", tmp_path / "executor", executor_env), EXECUTOR_SERVICE)
        procs.append(executor)
        for i, color in enumerate(("blue", "green", "blue")):
            env = {
                "AF_SERVICE_ID": f"scheduler-{color}",
                "AF_DATABASE_URL": pg_dsn,
                "AF_REGISTRY_ADDR": registries[i % 2].addr,
                "AF_EXECUTOR_ADDRS": executor.addr,
            }
            procs.append(ServiceProcess("scheduler", tmp_path / f"scheduler-{i}", env).start())
            channels.append(grpc.insecure_channel(procs[-1].addr))
        yield [pb_grpc.SchedulerServiceStub(c) for c in channels]
    finally:
        for channel in channels:
            channel.close()
        for proc in reversed(procs):
            assert proc.alive(), f"{proc.name} died:\n{proc.logs()[-3000:]}"
            proc.stop()


def test_one_consistent_system_round_robin(cluster: list[pb_grpc.SchedulerServiceStub]) -> None:
    first, second, third = cluster
    created = first.CreateAgent(
        pb.CreateAgentRequest(template_name="echo-upper", input=b"round robin", request_id="rr-1"), timeout=TIMEOUT
    ).agent
    last = None
    for event in second.WatchAgent(pb.WatchAgentRequest(id=created.id), timeout=60):
        if event.HasField("agent"):
            last = event.agent
    assert last is not None and last.state == S.AGENT_STATE_SUCCEEDED and last.output == b"ROUND ROBIN"
    read = third.GetAgent(pb.GetAgentRequest(id=created.id), timeout=TIMEOUT).agent
    assert read.state == S.AGENT_STATE_SUCCEEDED and read.output == b"ROUND ROBIN"
    again = third.CreateAgent(
        pb.CreateAgentRequest(template_name="echo-upper", input=b"round robin", request_id="rr-1"), timeout=TIMEOUT
    ).agent
    assert again.id == created.id  # a retry on another replica (another color) finds the same agent
    ran = list(third.RunAgent(pb.RunAgentRequest(template_name="echo-upper", input=b"ran"), timeout=60))[-1].agent
    assert ran.state == S.AGENT_STATE_SUCCEEDED
    listed = first.ListAgents(pb.ListAgentsRequest(template_name="echo-upper"), timeout=TIMEOUT).agents
    assert {a.id for a in listed} == {created.id, ran.id}

"""A scheduler SIGKILLed while an agent it dispatched runs, on PostgreSQL: the client's stream breaks
(mesh/README.md), and the agent is not lost: the other color answers for it at once (one journal), its
lease expires, a live replica takes it over and it ends exactly once. The take-over time is printed."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest

from afctl.client import Client
from agentfactory.scheduler.v1 import scheduler_service_pb2 as S
from mesh.pglocal import LocalPostgres
from tests.e2e.templates import publish_retryable_spinner
from tests.harness_mesh import E2EMesh

TIMEOUT = 90.0
TERMINAL = (S.AGENT_STATE_SUCCEEDED, S.AGENT_STATE_FAILED, S.AGENT_STATE_CANCELLED, S.AGENT_STATE_TIMED_OUT)


@pytest.fixture
def green_schedulers(e2e_mesh: E2EMesh) -> Iterator[None]:
    yield
    e2e_mesh.set_weights("scheduler", blue=100, green=0)


def test_an_agent_survives_its_scheduler_being_killed_mid_run(
    e2e_mesh: E2EMesh, as_role: Callable[[str], Client], database: LocalPostgres, green_schedulers: None
) -> None:
    publisher, op = as_role("publisher"), as_role("operator")
    name = publish_retryable_spinner(publisher, "e2e-pg-sched-killed")
    request_id = uuid.uuid4().hex
    first: S.Agent | None = None
    killed_at = 0.0
    try:
        for event in op.run_agent(name, b"", timeout=TIMEOUT, request_id=request_id):
            if event.WhichOneof("event") == "agent" and event.agent.state == S.AGENT_STATE_RUNNING and first is None:
                first = event.agent
                # The weights send every new agent to blue: kill it while the run is in flight.
                os.kill(e2e_mesh.pid("scheduler-blue"), signal.SIGKILL)
                killed_at = time.monotonic()
    except grpc.RpcError as exc:
        print(f"RunAgent in flight when scheduler-blue was killed: {exc.code().name}")
    assert first is not None
    # Green answers for blue's agent at once: the same journal, no peer to ask.
    e2e_mesh.set_weights("scheduler", blue=0, green=100)
    md = op.metadata
    seen = op.scheduler.GetAgent(S.GetAgentRequest(id=first.id), timeout=10, metadata=md).agent
    assert seen.id == first.id
    # The same request_id finds the same agent (a unique constraint), and watching it ends it.
    again = op.scheduler.CreateAgent(
        S.CreateAgentRequest(template_name=name, request_id=request_id), timeout=10, metadata=md
    ).agent
    assert again.id == first.id
    final = S.Agent()
    while final.state not in TERMINAL:  # no time bound: pytest's timeout ends a hang
        assert not (why := e2e_mesh.broken()), why
        try:
            for event in op.scheduler.WatchAgent(S.WatchAgentRequest(id=first.id), timeout=TIMEOUT, metadata=md):
                if event.WhichOneof("event") == "agent":
                    final = event.agent
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(0.5)
    print(f"take-over: the agent ended {time.monotonic() - killed_at:.1f} s after its scheduler was killed")
    assert final.id == first.id and final.state in TERMINAL, final
    # Run again after the take-over (attempts > 1), ended exactly once, one row for the request_id.
    row = database.psql(
        f"SELECT count(*), max(attempts), max(state) FROM agents WHERE request_id = '{request_id}'",
        database="af_scheduler",
    )
    count, attempts, state = row.split("|")
    assert count == "1" and int(attempts) >= 2 and int(state) == final.state, row

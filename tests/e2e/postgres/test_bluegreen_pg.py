"""Blue/green on PostgreSQL: both scheduler colors serve one journal, so an agent answers on either color
with no peer fan-out, and a request_id names one agent whichever color each retry lands on (a unique
constraint, not a conversation between colors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from afctl.client import Client
from agentfactory.scheduler.v1 import scheduler_service_pb2 as S
from mesh.pglocal import LocalPostgres
from tests.e2e.templates import list_agent_ids
from tests.harness_mesh import E2EMesh

AGENTS = 20


@pytest.fixture
def split_schedulers(e2e_mesh: E2EMesh) -> Iterator[None]:
    e2e_mesh.set_weights("scheduler", blue=50, green=50)
    yield
    e2e_mesh.set_weights("scheduler", blue=100, green=0)


def test_every_agent_answers_on_either_color_from_one_journal(
    split_schedulers: None, as_role: Callable[[str], Client], database: LocalPostgres
) -> None:
    op = as_role("operator")
    md = op.metadata
    agents = [
        op.scheduler.CreateAgent(
            S.CreateAgentRequest(template_name="echo-upper", input=f"pg {i}".encode(), labels={"e2e": "pg-split"}),
            timeout=10,
            metadata=md,
        ).agent
        for i in range(AGENTS)
    ]
    # Both colors created some (the journal records who leased each agent first).
    owners = database.psql(
        "SELECT string_agg(DISTINCT split_part(owner, '-', 2), ',' ORDER BY split_part(owner, '-', 2)) FROM agents "
        "WHERE labels->>'e2e' = 'pg-split'",
        database="af_scheduler",
    )
    assert owners == "blue,green", owners
    for agent in agents:
        for _ in range(3):  # each Get lands on either color
            assert op.scheduler.GetAgent(S.GetAgentRequest(id=agent.id), timeout=10, metadata=md).agent.id == agent.id
        final = list(op.scheduler.WatchAgent(S.WatchAgentRequest(id=agent.id), timeout=30, metadata=md))[-1].agent
        assert final.state == S.AGENT_STATE_SUCCEEDED and final.output == agent.input.upper(), final
    assert list_agent_ids(op, "e2e=pg-split") == [a.id for a in agents][::-1], "every agent once, newest first"
    request = S.CreateAgentRequest(template_name="echo-upper", input=b"only once", request_id="e2e-pg-split-1")
    ids = {op.scheduler.CreateAgent(request, timeout=10, metadata=md).agent.id for _ in range(12)}
    assert len(ids) == 1, ids
    rows = "SELECT count(*) FROM agents WHERE request_id = 'e2e-pg-split-1'"
    assert database.psql(rows, database="af_scheduler") == "1"

"""`make run BACKEND=postgres` through the gateway: the quickstart's state is in PostgreSQL, one role and
database per service; a template published on it runs; a published version stays immutable."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest

from afctl.client import Client
from afctl.examples import catalogue
from agentfactory.scheduler.v1 import scheduler_service_pb2 as S
from mesh.pglocal import LocalPostgres
from tests.harness_mesh import E2EMesh


def test_the_registry_and_the_schedulers_keep_their_state_in_their_own_databases(
    e2e_mesh: E2EMesh, database: LocalPostgres
) -> None:
    # The quickstart published the examples and ran one agent, all through the gateway.
    assert int(database.psql("SELECT count(*) FROM templates", database="af_registry")) >= 1
    assert int(database.psql("SELECT count(*) FROM agents WHERE state = 3", database="af_scheduler")) >= 1
    # No embedded store was opened beside it.
    data = e2e_mesh.var / "data"
    for instance in ("registry", "scheduler-blue", "scheduler-green"):
        assert not list((data / instance).glob("**/*.sqlite3")), instance  # (no such dir: an empty glob)
    # Neither service's role may even connect to the other's database.
    for role, other in (("af_registry", "af_scheduler"), ("af_scheduler", "af_registry")):
        assert database.psql(f"SELECT has_database_privilege('{role}', '{other}', 'CONNECT')") == "f"
        assert database.psql(f"SELECT has_database_privilege('{role}', '{role}', 'CONNECT')") == "t"


def test_publish_then_run_through_the_gateway(as_role: Callable[[str], Client], database: LocalPostgres) -> None:
    publisher = as_role("publisher")
    (echo,) = [t for t in catalogue("agents") if t.name == "echo-upper"]
    doc = json.loads(echo.manifest_json())
    doc.update(name="e2e-pg-published", version="1.0.0", labels={"suite": "e2e-pg"})
    reply = publisher.publish(json.dumps(doc).encode(), echo.module())
    assert reply.created
    assert publisher.publish(json.dumps(doc).encode(), echo.module()).created is False  # idempotent
    doc["description"] = "the same name@version with other content"
    with pytest.raises(grpc.RpcError) as err:
        publisher.publish(json.dumps(doc).encode(), echo.module())
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    rows = "SELECT count(*) FROM templates WHERE name = 'e2e-pg-published'"
    assert database.psql(rows, database="af_registry") == "1"

    final, output = as_role("operator").run_to_end("e2e-pg-published", b"stored in postgres", timeout=30)
    assert final.state == S.AGENT_STATE_SUCCEEDED and output == b"STORED IN POSTGRES", final
    stored = f"SELECT state FROM agents WHERE id = '{final.id}'"
    assert database.psql(stored, database="af_scheduler") == str(S.AGENT_STATE_SUCCEEDED)

"""The end user's identity reaches the services' audit events through the gateway, and only from it."""

from __future__ import annotations

import json
import uuid

import grpc

from agentfactory.scheduler.v1 import scheduler_service_pb2 as sch_pb
from tests.harness import eventually
from tests.harness_mesh import E2EMesh

GATEWAY_SA = "spiffe://agentfactory.local/sa/gateway"


def audit_actors(mesh: E2EMesh, event: str, **match: str) -> list[str]:
    actors = []
    for log in mesh.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        # A line still being written (supervisord copies the service's pipe in chunks) is read next time.
        for line in text[: text.rfind("\n") + 1].splitlines():
            if f'"event": "{event}"' not in line:
                continue
            entry = json.loads(line)
            if all(entry.get(k) == v for k, v in match.items()):
                actors.append(entry["actor"])
    return actors


def test_certificate_user_is_the_audited_actor(e2e_mesh: E2EMesh) -> None:
    # The fixture published the examples with the publisher's client certificate.
    actors = audit_actors(e2e_mesh, "publish", target="echo-upper@1.0.0")
    assert actors and all(
        a == f"spiffe://agentfactory.local/role/publisher/user/publisher via {GATEWAY_SA}" for a in actors
    ), actors


def test_jwt_subject_is_the_audited_actor_and_a_forged_header_is_dropped(e2e_mesh: E2EMesh) -> None:
    subject = f"alice-{uuid.uuid4().hex[:6]}"
    client = e2e_mesh.client(token=e2e_mesh.token("operator", subject=subject))
    forged = (("x-agentfactory-principal", "spiffe://agentfactory.local/role/admin/user/mallory"),)
    request = sch_pb.CreateAgentRequest(template_name="echo-upper", input=b"who")
    try:
        agent = client.scheduler.CreateAgent(request, timeout=10, metadata=client.metadata + forged).agent
    except grpc.RpcError as exc:
        raise AssertionError(f"create failed: {exc.code()} {exc.details()}") from None
    finally:
        client.close()
    # The service writes the line before it answers, but it reaches the log file through supervisord's
    # pipe: wait for it, however long a loaded machine takes.
    logged = lambda: audit_actors(e2e_mesh, "agent_accepted", agent=agent.id)  # noqa: E731
    eventually(logged, "the agent_accepted audit line", broken=e2e_mesh.broken)
    assert audit_actors(e2e_mesh, "agent_accepted", agent=agent.id) == [f"jwt:{subject} via {GATEWAY_SA}"]

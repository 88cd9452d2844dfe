"""The audit log from real processes: a policy denial is one JSON line on agentfactory.audit naming
the caller the sidecar vouched for (x-forwarded-client-cert), the method and the rule; a signature
made for a publish is audited with its actor too."""

from __future__ import annotations

import json

import grpc
import pytest

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb
from tests.integration.observability.conftest import Stack, echo_template, manifest_with

GATEWAY = "spiffe://agentfactory.local/sa/gateway"


def _audit_lines(log: str) -> list[dict]:
    out = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "agentfactory.audit":
            out.append(entry)
    return out


def test_policy_denial_is_audited_with_the_callers_identity(stack: Stack) -> None:
    _, module = echo_template()
    header = reg_pb.PublishHeader(
        manifest_json=manifest_with(name="audit-shell", tools=["shell"]), module_size=len(module)
    )
    requests = iter([reg_pb.PublishTemplateRequest(header=header), reg_pb.PublishTemplateRequest(chunk=module)])
    xfcc = (("x-forwarded-client-cert", f"Hash=00;URI={GATEWAY}"),)
    with pytest.raises(grpc.RpcError) as denied:
        stack.client.registry.PublishTemplate(requests, timeout=10, metadata=xfcc)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    events = [e for e in _audit_lines(stack.processes["registry"].logs()) if e.get("event") == "policy_denial"]
    mine = [e for e in events if e["actor"] == GATEWAY]
    assert mine, f"no policy_denial audit line naming {GATEWAY}: {events}"
    event = mine[-1]
    assert event["target"] == "/agentfactory.registry.v1.RegistryService/PublishTemplate"
    assert event["outcome"] == "denied" and event["rule"] and event["service"] == "registry"


def test_signatures_are_audited_with_an_actor(stack: Stack) -> None:
    _, module = echo_template()
    stack.client.publish(manifest_with(name="audit-signed"), module)
    signs = [e for e in _audit_lines(stack.processes["signer"].logs()) if e.get("event") == "sign"]
    assert signs and all(e["actor"] for e in signs)

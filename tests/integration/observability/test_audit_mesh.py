"""The audit trail of a real mesh, read back with `afctl audit` from the run's log directory:

- an RBAC denial by a sidecar (a workload calling a method its identity may not) names the caller's
  SPIFFE ID, the method, the Envoy that refused it;
- an RBAC denial at the gateway (a viewer publishing) names the client certificate's identity;
- a publish through the gateway is an app audit event (registry), found with --event publish.

Envoy flushes its access logs every 10 s, so the Envoy lines are waited for, not expected at once.
"""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from agentfactory.signer.v1 import signer_service_pb2_grpc as sig_grpc
from tests.harness import REPO, eventually
from tests.integration.observability.conftest import TracedMesh, echo_template, manifest_with

SIGN = "/agentfactory.signer.v1.SignerService/Sign"
PUBLISH = "/agentfactory.registry.v1.RegistryService/PublishTemplate"


def _audit(mesh: TracedMesh, *args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "afctl", "audit", "--log-dir", str(mesh.mesh.logs), "--json", "--limit", "0", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _wait_audit(mesh: TracedMesh, predicate, *args: str) -> list[dict]:
    """The audit events (filtered by `args`) once one matches `predicate`. No time bound: Envoy flushes its
    access log eventually, a loaded machine decides when (pytest's timeout ends a hang)."""
    seen: list[list[dict]] = []

    def logged() -> bool:
        seen.append(_audit(mesh, *args))
        return any(predicate(e) for e in seen[-1])

    eventually(logged, f"an audit event ({' '.join(args)})", broken=mesh.mesh.broken, interval=1)
    return seen[-1]


def test_a_sidecar_rbac_denial_is_audited_with_the_callers_identity(traced_mesh: TracedMesh) -> None:
    scheduler = traced_mesh.topo.spiffe_id("scheduler")
    # Only the registry may ask the signer to sign: the scheduler's identity is refused by the signer's sidecar.
    with (
        traced_mesh.workload_channel("signer", as_instance="scheduler-blue") as channel,
        pytest.raises(grpc.RpcError) as denied,
    ):
        sig_grpc.SignerServiceStub(channel).Sign(sig_pb.SignRequest(payload=b"forged"), timeout=5)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    def mine(e: dict) -> bool:
        return e["actor"] == scheduler and e["target"] == SIGN and e["service"] == "signer"

    events = _wait_audit(traced_mesh, mine, "--event", "rbac_denial")
    found = [e for e in events if mine(e)]
    assert found, f"no rbac_denial by the signer's sidecar naming {scheduler}: {events}"
    event = found[-1]
    assert event["outcome"] == "denied" and event["details"].startswith("rbac_access_denied")
    assert event["envoy"] == "signer"
    # The filter is the actor: the scheduler's identity finds it, another does not.
    assert any(mine(e) for e in _audit(traced_mesh, "--actor", "sa/scheduler"))
    assert not any(mine(e) for e in _audit(traced_mesh, "--actor", "sa/executor"))


def test_gateway_rbac_denial_and_an_app_publish_event(traced_mesh: TracedMesh) -> None:
    _, module = echo_template()
    viewer = traced_mesh.topo.client_spiffe_id("viewer", "viewer")
    with pytest.raises(grpc.RpcError) as denied:
        traced_mesh.mesh.client("viewer").publish(manifest_with(version="5.0.0"), module)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    traced_mesh.mesh.client("publisher").publish(manifest_with(version="5.0.1"), module)

    def at_gateway(e: dict) -> bool:
        return e["actor"] == viewer and e["target"] == PUBLISH and e["service"] == "gateway"

    events = _wait_audit(traced_mesh, at_gateway, "--event", "rbac_denial")
    assert any(at_gateway(e) for e in events), f"no gateway rbac_denial naming {viewer}: {events}"

    published = _audit(traced_mesh, "--event", "publish")
    mine = [e for e in published if e["target"] == "echo-upper@5.0.1"]
    assert mine, published
    assert mine[-1]["service"] == "registry" and mine[-1]["outcome"] == "ok"
    # Behind the gateway the registry's direct caller is the gateway's workload identity.
    assert traced_mesh.topo.spiffe_id("gateway") in mine[-1]["actor"]
    assert not [e for e in published if e["target"] == "echo-upper@5.0.0"], "a denied publish never reached the app"

"""Revocation through the whole mesh (issue 10 items 9, 10): an admin revokes a key version at the gateway,
the signer pushes the new key set through its sidecar to every executor (blue and green) and to the
registry; the scheduler then refuses agents of a template signed by the revoked version; an admin re-signs
every such template and it runs again. Measured: seconds from SetMinimumKeyVersion to each executor
holding the new key set (printed; run with -s). Ends with nothing left signed by a revoked version."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import grpc

from afctl.client import Client
from afctl.examples import catalogue
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb
from tests.harness import eventually
from tests.harness_mesh import E2EMesh
from tests.integration.conftest import scrape_metric

PUSHES = "agentfactory_executor_key_pushes_total"
# No wait here has a time bound (pytest's timeout ends a hang): what proves the push is the executors'
# own push counter, which their periodic key refresh (60 s) never moves.


def pushes(e2e_mesh: E2EMesh) -> dict[str, float]:
    return {
        i.id: scrape_metric(f"127.0.0.1:{i.metrics}", PUSHES)
        for i in e2e_mesh.topo.instances()
        if i.service == "executor"
    }


def run_code(operator: Client, name: str) -> tuple[grpc.StatusCode, str]:
    try:
        list(operator.run_agent(name, b"hi"))
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_revocation_is_pushed_to_every_executor_and_resign_brings_templates_back(
    e2e_mesh: E2EMesh, as_role: Callable[[str], Client]
) -> None:
    admin, publisher, operator = as_role("admin"), as_role("publisher"), as_role("operator")
    (echo,) = [t for t in catalogue("agents") if t.name == "echo-upper"]
    doc = json.loads(echo.manifest_json())
    name = f"e2e-revoked-{uuid.uuid4().hex[:8]}"
    doc.update(name=name)
    old = publisher.publish(json.dumps(doc).encode(), echo.module()).template.signature.key_version
    assert run_code(operator, name)[0] == grpc.StatusCode.OK

    new = admin.rotate_key().key.key_version
    assert new == old + 1
    before = pushes(e2e_mesh)
    began = time.monotonic()
    admin.signer.SetMinimumKeyVersion(
        sig_pb.SetMinimumKeyVersionRequest(min_version=new), timeout=10, metadata=admin.metadata
    )
    seconds: dict[str, float] = {}

    def pushed_everywhere() -> bool:
        for executor, count in pushes(e2e_mesh).items():
            if executor not in seconds and count > before[executor]:
                seconds[executor] = round(time.monotonic() - began, 3)
        return len(seconds) == len(before)

    eventually(pushed_everywhere, "a key push on every executor", broken=e2e_mesh.broken, interval=0.02)
    print(f"\nrevocation pushed through the mesh: {seconds} s")

    # Refused at once: by the executors, or (once its 2 s template cache expired) by the scheduler itself, as
    # the registry heard the push too; from then on always by the scheduler, so no agent is journaled for a
    # template no executor would run.
    result = run_code(operator, name)
    assert result[0] == grpc.StatusCode.FAILED_PRECONDITION and "revoked" in result[1], result
    while f"v{old}, which is revoked" not in (result := run_code(operator, name))[1]:
        time.sleep(0.1)
    assert result[0] == grpc.StatusCode.FAILED_PRECONDITION, result
    assert f"v{old}, which is revoked; an admin re-signs it" in result[1], result

    # Every template signed by a revoked version (the examples too) is re-signed by the admin, and runs.
    resigned = admin.resign(all_revoked=True)
    assert name in {t.manifest.name for t in resigned.templates}
    assert all(t.signature.key_version == new for t in resigned.templates)
    assert not admin.resign(all_revoked=True).templates
    while (result := run_code(operator, name))[0] != grpc.StatusCode.OK:
        time.sleep(0.1)
    assert result[0] == grpc.StatusCode.OK, result
    # Verification is a read: the viewer verifies the re-signed template offline.
    viewer = as_role("viewer")
    template = viewer.get_template(name)
    assert viewer.verify_offline(template, viewer.fetch_module(template.manifest.module_sha256)) == new

"""The mesh RBAC matrix, edge by edge, against real sidecars.

The expected matrix is written out here from the issue, independently of mesh/policy/*.yaml,
so a policy typo fails a test instead of quietly becoming the spec. Every workload identity
calls every method of every service; allowed calls reach the app, denied calls are
PERMISSION_DENIED and never reach it.
"""

from __future__ import annotations

import grpc
import pytest

from mesh.methods import HEALTH, REFLECTION, contracts
from tests.integration.mesh.conftest import Mesh
from tests.integration.mesh.tinyapp import call

WORKLOADS = ("registry", "signer", "executor", "scheduler", "gateway")
EVERYONE = frozenset(WORKLOADS)
READERS = frozenset({"gateway", "scheduler", "executor"})

# service -> method -> callers allowed (the matrix; GetCapacity is ours: a read for
# the scheduler's placement and for operators through the gateway).
MATRIX: dict[str, dict[str, frozenset[str]]] = {
    "registry": {
        "PublishTemplate": frozenset({"gateway"}),
        "DeprecateTemplate": frozenset({"gateway"}),
        "ResignTemplates": frozenset({"gateway"}),
        "GetTemplate": READERS,
        "ListTemplates": READERS,
        "FetchModule": READERS,
        "WatchTemplates": READERS,
    },
    "signer": {
        "Sign": frozenset({"registry"}),
        "RotateKey": frozenset({"gateway"}),
        "SetMinimumKeyVersion": frozenset({"gateway"}),
        "GetPublicKeys": EVERYONE,
        "WatchPublicKeys": EVERYONE,
        "Verify": EVERYONE,
    },
    "executor": {
        "Run": frozenset({"scheduler"}),
        "GetCapacity": frozenset({"scheduler", "gateway"}),
    },
    # Clients through the gateway; the other color's scheduler about agents and request ids it did not create.
    "scheduler": {name: frozenset({"gateway", "scheduler"}) for name in contracts()["scheduler"]},
}


def test_matrix_covers_every_method_in_the_protos() -> None:
    assert {svc: set(methods) for svc, methods in MATRIX.items()} == {
        svc: set(methods) for svc, methods in contracts().items()
    }


@pytest.mark.parametrize("service", sorted(MATRIX))
@pytest.mark.parametrize("caller", WORKLOADS)
def test_matrix_edge(mesh: Mesh, service: str, caller: str) -> None:
    target = mesh.topo.services[service].instances[0].id
    app = mesh.apps[target]
    channel = mesh.inbound(target, mesh.workload_creds(caller))
    wrong = []
    for name, method in contracts()[service].items():
        allowed = caller in MATRIX[service][name]
        before = app.seen(method.path)
        status, _ = call(channel, method)
        reached = app.seen(method.path) - before
        expected = (grpc.StatusCode.OK, 1) if allowed else (grpc.StatusCode.PERMISSION_DENIED, 0)
        if (status, reached) != expected:
            wrong.append(f"{caller} -> {service}.{name}: got {status.name}, app saw {reached}; want {expected}")
    # Health: every workload (active health checks come from every caller's sidecar).
    status, _ = call(channel, HEALTH[0])
    if status != grpc.StatusCode.OK:
        wrong.append(f"{caller} -> {service} health: {status.name}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("caller", WORKLOADS)
def test_reflection_only_from_the_gateway(mesh: Mesh, caller: str) -> None:
    channel = mesh.inbound("registry", mesh.workload_creds(caller))
    stream = channel.stream_stream(REFLECTION[0].path)(iter([b"\x3a\x01*"]), timeout=5)  # list_services: "*"
    try:
        list(stream)
        status = grpc.StatusCode.OK
    except grpc.RpcError as err:
        status = err.code()  # type: ignore[attr-defined]
    assert status == (grpc.StatusCode.OK if caller == "gateway" else grpc.StatusCode.PERMISSION_DENIED)


# Through the real outbound path: the app dials its own sidecar in plaintext, the sidecar
# originates mTLS with the app's identity, the upstream's sidecar decides.
OUTBOUND_EDGES = [
    ("registry", "signer", "Sign", grpc.StatusCode.OK),
    ("registry", "signer", "GetPublicKeys", grpc.StatusCode.OK),
    ("executor-blue", "signer", "Sign", grpc.StatusCode.PERMISSION_DENIED),
    ("executor-blue", "signer", "Verify", grpc.StatusCode.OK),
    ("executor-blue", "signer", "RotateKey", grpc.StatusCode.PERMISSION_DENIED),
    ("executor-blue", "registry", "WatchTemplates", grpc.StatusCode.OK),
    ("executor-blue", "registry", "FetchModule", grpc.StatusCode.OK),
    ("executor-blue", "registry", "PublishTemplate", grpc.StatusCode.PERMISSION_DENIED),
    ("scheduler-blue", "executor", "Run", grpc.StatusCode.OK),
    ("scheduler-blue", "registry", "GetTemplate", grpc.StatusCode.OK),
    ("scheduler-blue", "registry", "DeprecateTemplate", grpc.StatusCode.PERMISSION_DENIED),
    ("scheduler-blue", "scheduler", "GetAgent", grpc.StatusCode.OK),
]


@pytest.mark.parametrize(("caller", "upstream", "method", "expected"), OUTBOUND_EDGES)
def test_outbound_edge(mesh: Mesh, caller: str, upstream: str, method: str, expected: grpc.StatusCode) -> None:
    m = contracts()[upstream][method]
    before = sum(a.seen(m.path) for a in mesh.apps.values())
    status, _ = call(mesh.outbound(caller, upstream), m)
    assert status == expected
    reached = sum(a.seen(m.path) for a in mesh.apps.values()) - before
    assert reached == (1 if expected == grpc.StatusCode.OK else 0)


def test_denials_are_counted_by_the_sidecar(mesh: Mesh) -> None:
    admin = mesh.admin("signer")
    before = admin.stats("rbac").get("http.inbound.rbac.denied", 0)
    status, _ = call(mesh.inbound("signer", mesh.workload_creds("executor")), contracts()["signer"]["Sign"])
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert admin.stats("rbac").get("http.inbound.rbac.denied", 0) == before + 1

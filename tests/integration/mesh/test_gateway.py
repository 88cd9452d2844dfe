"""The edge gateway: client authentication (certificates and JWT), role RBAC per method,
routing to the four services, reflection and health for grpcurl.

The role matrix is written out here from the issue, independently of gateway/policy.yaml.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mesh import REPO
from mesh.ca import CertificateAuthority, mint_token
from mesh.methods import contracts
from tests.integration.mesh.conftest import Mesh
from tests.integration.mesh.tinyapp import call
from tests.role_matrix import GATEWAY_ALLOWS as ROLE_ALLOWS
from tests.role_matrix import MESH_DENIES_GATEWAY, ROLES


def _reached(mesh: Mesh, path: str) -> int:
    return sum(app.seen(path) for app in mesh.apps.values())


@pytest.mark.parametrize("credential", ["certificate", "jwt"])
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(mesh: Mesh, role: str, credential: str) -> None:
    if credential == "certificate":
        channel, md = mesh.gateway(mesh.client_creds(role)), []
    else:
        channel, md = mesh.gateway(mesh.client_creds(None)), mesh.token(role)
    wrong = []
    for svc, methods in contracts().items():
        for name, method in methods.items():
            key = f"{svc}.{name}"
            ok = key in ROLE_ALLOWS[role] and key not in MESH_DENIES_GATEWAY
            before = _reached(mesh, method.path)
            status, _ = call(channel, method, metadata=md)
            reached = _reached(mesh, method.path) - before
            want = (grpc.StatusCode.OK, 1) if ok else (grpc.StatusCode.PERMISSION_DENIED, 0)
            if (status, reached) != want:
                wrong.append(f"{role}/{credential} {key}: got {status.name}, app saw {reached}; want {want}")
    assert not wrong, "\n".join(wrong)


def test_no_credentials_is_denied(mesh: Mesh) -> None:
    m = contracts()["scheduler"]["GetAgent"]
    before = _reached(mesh, m.path)
    status, _ = call(mesh.gateway(mesh.client_creds(None)), m)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert _reached(mesh, m.path) == before


def _foreign_key(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "foreign.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.mark.parametrize("flaw", ["foreign-key", "expired", "wrong-audience", "garbage"])
def test_invalid_jwt_is_refused(mesh: Mesh, tmp_path: Path, flaw: str) -> None:
    topo = mesh.topo
    if flaw == "foreign-key":
        token = mint_token(mesh.certs, topo, role="admin", subject="mallory", key_path=_foreign_key(tmp_path))
    elif flaw == "expired":
        token = mint_token(mesh.certs, topo, role="admin", subject="late", ttl=60, now=time.time() - 3600)
    elif flaw == "wrong-audience":
        other = dataclasses.replace(topo, gateway=dataclasses.replace(topo.gateway, jwt_audience="someone-else"))
        token = mint_token(mesh.certs, other, role="admin", subject="confused")
    else:
        token = "not.a.jwt"
    m = contracts()["scheduler"]["GetAgent"]
    before = _reached(mesh, m.path)
    status, _ = call(mesh.gateway(mesh.client_creds(None)), m, metadata=[("authorization", f"Bearer {token}")])
    # jwt_authn answers 401 for a bad token, but 403 for a good token meant for someone else.
    expected = grpc.StatusCode.PERMISSION_DENIED if flaw == "wrong-audience" else grpc.StatusCode.UNAUTHENTICATED
    assert status == expected
    assert _reached(mesh, m.path) == before


def test_workload_certificate_is_not_a_client_credential(mesh: Mesh) -> None:
    # Only role SANs (.../role/<role>/user/<name>) grant anything at the edge: a sidecar's key
    # is no way in from outside.
    m = contracts()["scheduler"]["GetAgent"]
    before = _reached(mesh, m.path)
    status, _ = call(mesh.gateway(mesh.workload_creds("executor")), m, timeout=3)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert _reached(mesh, m.path) == before


def test_client_certificate_from_another_ca_is_rejected(mesh: Mesh, tmp_path: Path) -> None:
    rogue = CertificateAuthority.create(tmp_path / "rogue", mesh.topo.trust_domain)
    leaf = rogue.issue(common_name="admin", uri=mesh.topo.client_spiffe_id("admin", "admin"), server=False)
    creds = grpc.ssl_channel_credentials(
        mesh.bundle(),
        leaf.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        leaf.cert.public_bytes(serialization.Encoding.PEM),
    )
    status, _ = call(mesh.gateway(creds), contracts()["signer"]["RotateKey"], timeout=3)
    assert status == grpc.StatusCode.UNAVAILABLE


def test_reflection_lists_services_through_the_gateway(mesh: Mesh) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(mesh.gateway(mesh.client_creds("viewer")))
    replies = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert "agentfactory.scheduler.v1.SchedulerService" in names
    assert "grpc.health.v1.Health" in names


def test_reflection_needs_authentication(mesh: Mesh) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(mesh.gateway(mesh.client_creds(None)))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def test_health_through_the_gateway(mesh: Mesh) -> None:
    stub = health_pb2_grpc.HealthStub(mesh.gateway(mesh.client_creds(None)))
    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5, metadata=mesh.token("viewer"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_unknown_method_is_not_routed(mesh: Mesh) -> None:
    channel = mesh.gateway(mesh.client_creds("admin"))
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/agentfactory.scheduler.v1.SchedulerService/DropAllTables")(b"", timeout=5)
    # Admin is allowed only the methods the protos define, so RBAC refuses before routing.
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


GRPCURL = REPO / "build" / "bin" / "grpcurl"
PROTOSET = REPO / "build" / "agentfactory.protoset"


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl not built (make tools)")
def test_grpcurl_lists_services_with_a_client_certificate(mesh: Mesh) -> None:
    client = mesh.certs / "clients" / "viewer"
    tls = ["-cacert", str(mesh.certs / "ca" / "bundle.pem"), "-cert", str(client / "cert.pem")]
    tls += ["-key", str(client / "key.pem")]
    out = subprocess.run(
        [str(GRPCURL), *tls, f"localhost:{mesh.topo.gateway.port}", "list"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert "agentfactory.scheduler.v1.SchedulerService" in out.stdout.split()


@pytest.mark.skipif(not (GRPCURL.exists() and PROTOSET.exists()), reason="grpcurl or protoset not built")
def test_grpcurl_calls_with_a_jwt_and_the_protoset(mesh: Mesh) -> None:
    (_, token), *_ = mesh.token("viewer")
    base = [str(GRPCURL), "-cacert", str(mesh.certs / "ca" / "bundle.pem"), "-H", f"authorization: {token}"]
    base += ["-protoset", str(PROTOSET), f"localhost:{mesh.topo.gateway.port}"]
    ok = subprocess.run(
        [*base, "agentfactory.registry.v1.RegistryService/ListTemplates"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    denied = subprocess.run([*base, "agentfactory.signer.v1.SignerService/RotateKey"], capture_output=True, text=True)
    assert denied.returncode != 0
    assert "PermissionDenied" in denied.stderr

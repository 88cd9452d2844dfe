"""The inbound listener of a sidecar demands mTLS from the mesh CA, then RBAC decides by SAN.

Every case dials the registry's real inbound Envoy and checks both the status the caller sees
and that the app behind it never saw the call.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from mesh.ca import CertificateAuthority, Leaf
from mesh.methods import contracts
from tests.integration.mesh.conftest import Mesh, peer_cert
from tests.integration.mesh.tinyapp import call

GET = contracts()["registry"]["GetTemplate"]


def _creds_from_leaf(mesh: Mesh, leaf: Leaf) -> grpc.ChannelCredentials:
    key = leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return grpc.ssl_channel_credentials(mesh.bundle(), key, leaf.cert.public_bytes(serialization.Encoding.PEM))


def _mesh_ca(mesh: Mesh) -> CertificateAuthority:
    ca, created = CertificateAuthority.load_or_create(mesh.certs / "ca", mesh.topo.trust_domain)
    assert not created
    return ca


def _assert_refused(mesh: Mesh, creds: grpc.ChannelCredentials, expected: grpc.StatusCode) -> None:
    app = mesh.app_for("registry")
    before = app.seen(GET.path)
    status, _ = call(mesh.inbound("registry", creds), GET, timeout=3)
    assert status == expected
    assert app.seen(GET.path) == before, "a refused call reached the application"


def test_valid_workload_certificate_is_accepted(mesh: Mesh) -> None:
    app = mesh.app_for("registry")
    before = app.seen(GET.path)
    status, trailers = call(mesh.inbound("registry", mesh.workload_creds("gateway")), GET)
    assert status == grpc.StatusCode.OK
    assert trailers["x-served-by"] == "registry"
    assert app.seen(GET.path) == before + 1
    # The app learns its caller's identity from the sidecar, not from the caller.
    assert app.calls[-1].metadata["x-forwarded-client-cert"].endswith("URI=spiffe://agentfactory.local/sa/gateway")


def test_no_client_certificate_is_rejected(mesh: Mesh) -> None:
    _assert_refused(mesh, grpc.ssl_channel_credentials(mesh.bundle()), grpc.StatusCode.UNAVAILABLE)


def test_plaintext_h2c_is_rejected(mesh: Mesh) -> None:
    app = mesh.app_for("registry")
    before = app.seen(GET.path)
    inst = mesh.topo.instance("registry")
    channel = grpc.insecure_channel(inst.inbound_addr, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        status, _ = call(channel, GET, timeout=3)
    finally:
        channel.close()
    assert status == grpc.StatusCode.UNAVAILABLE
    assert app.seen(GET.path) == before


def test_certificate_from_another_ca_is_rejected(mesh: Mesh, tmp_path: Path) -> None:
    # Same trust domain name, same SAN as the real gateway: only the issuer differs.
    rogue = CertificateAuthority.create(tmp_path / "rogue", mesh.topo.trust_domain)
    leaf = rogue.issue(common_name="gateway", uri=mesh.topo.spiffe_id("gateway"))
    _assert_refused(mesh, _creds_from_leaf(mesh, leaf), grpc.StatusCode.UNAVAILABLE)


def test_expired_certificate_is_rejected(mesh: Mesh) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = _mesh_ca(mesh).issue(
        common_name="gateway",
        uri=mesh.topo.spiffe_id("gateway"),
        not_before=now - dt.timedelta(days=2),
        not_after=now - dt.timedelta(days=1),
    )
    _assert_refused(mesh, _creds_from_leaf(mesh, leaf), grpc.StatusCode.UNAVAILABLE)


def test_wrong_san_is_permission_denied(mesh: Mesh) -> None:
    # A genuine certificate from the mesh CA for a workload the policy does not know.
    leaf = _mesh_ca(mesh).issue(common_name="intruder", uri=mesh.topo.spiffe_id("intruder"))
    _assert_refused(mesh, _creds_from_leaf(mesh, leaf), grpc.StatusCode.PERMISSION_DENIED)


def test_client_role_certificate_is_not_a_workload_identity(mesh: Mesh) -> None:
    # People's certificates are for the gateway; a sidecar's TLS layer only admits .../sa/*.
    _assert_refused(mesh, mesh.client_creds("admin"), grpc.StatusCode.UNAVAILABLE)


@pytest.mark.parametrize(("caller", "upstream"), [("registry", "signer"), ("scheduler-blue", "executor")])
def test_sidecar_pins_the_upstream_identity(mesh: Mesh, caller: str, upstream: str) -> None:
    """The inbound listener presents its workload's SVID: exactly one URI SAN, the service's."""
    inst = mesh.topo.services[upstream].instances[0]
    cert = peer_cert(inst.inbound_addr, upstream, mesh.certs, caller)
    from mesh.ca import uri_sans

    assert uri_sans(cert) == [mesh.topo.spiffe_id(upstream)]

"""Hostile certificates against real Envoy: the gateway and every sidecar refuse a certificate with
other than exactly one URI SAN, or whose SAN is not a whole id of the mesh's grammar, *before* RBAC.

Every certificate here is minted by the mesh's own CA (the attacker is a mis-issued or look-alike
SVID, not a foreign CA: that one never gets past TLS). "Before RBAC" is shown by the identity
gate's own counter (http.<listener>.rbac.identity_gate.denied) going up, and the app never seeing
the call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.ca import CertificateAuthority
from mesh.methods import Method, contracts
from tests.harness import eventually
from tests.integration.mesh.conftest import Mesh
from tests.integration.mesh.tinyapp import call

TD = "agentfactory.local"
SA = f"spiffe://{TD}/sa"
ROLE = f"spiffe://{TD}/role"
CATALOG = contracts()
# Per sidecar: a method the named workload may call (so a refusal is the gate's, not the matrix's).
TARGETS: dict[str, tuple[str, str]] = {
    "registry": ("GetTemplate", "gateway"),
    "signer": ("Sign", "registry"),
    "executor": ("Run", "scheduler"),
    "scheduler": ("GetAgent", "gateway"),
}


def mint(mesh: Mesh, uris: Sequence[str], dns: Sequence[str] = ()) -> grpc.ChannelCredentials:
    """A leaf from the mesh CA with exactly these SANs (CertificateAuthority.issue allows one URI)."""
    ca, created = CertificateAuthority.load_or_create(mesh.certs / "ca", mesh.topo.trust_domain)
    assert not created
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return grpc.ssl_channel_credentials(mesh.bundle(), pem_key, cert.public_bytes(serialization.Encoding.PEM))


def gate_denials(mesh: Mesh, envoy_id: str) -> int:
    stats = mesh.admin(envoy_id).stats("http.")
    return sum(v for k, v in stats.items() if "identity_gate" in k and k.endswith(".denied"))


def reached(mesh: Mesh, path: str) -> int:
    return sum(app.seen(path) for app in mesh.apps.values())


def refused_by_gate(
    mesh: Mesh, envoy_id: str, channel: grpc.Channel, m: Method, md: Sequence[tuple[str, str]] = ()
) -> None:
    gate_before, app_before = gate_denials(mesh, envoy_id), reached(mesh, m.path)
    status, _ = call(channel, m, timeout=5, metadata=md)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert reached(mesh, m.path) == app_before, "a refused call reached an application"
    # Counters are flushed to the admin API asynchronously: wait for the gate's, however long that takes
    # (a denial by something else never moves it, and then pytest's timeout names this line).
    denied = lambda: gate_denials(mesh, envoy_id) > gate_before  # noqa: E731
    eventually(denied, f"{envoy_id}'s identity gate counting the refusal", broken=mesh.broken)


# --- every sidecar ----------------------------------------------------------------------------

SIDECAR_HOSTILE = {
    # Both SANs are real workload ids; together they must be nothing.
    "two-sans": lambda who: [f"{SA}/{who}", f"{SA}/intruder"],
    "two-sans-reversed": lambda who: [f"{SA}/intruder", f"{SA}/{who}"],
    "dot-segments": lambda who: [f"{SA}/x/../{who}"],
    "dot-segment": lambda who: [f"{SA}/./{who}"],
    "empty-segment": lambda who: [f"{SA}//{who}"],
    "trailing-slash": lambda who: [f"{SA}/{who}/"],
    "percent-encoded": lambda who: [f"{SA}/{who[:-1]}%{ord(who[-1]):02x}"],
    "upper-case-path": lambda who: [f"{SA}/{who.capitalize()}"],
    "query": lambda who: [f"{SA}/{who}?x=1"],
}


@pytest.mark.parametrize("flaw", sorted(SIDECAR_HOSTILE))
@pytest.mark.parametrize("service", sorted(TARGETS))
def test_sidecar_refuses_hostile_certificate_before_rbac(mesh: Mesh, service: str, flaw: str) -> None:
    method, who = TARGETS[service]
    inst = mesh.topo.services[service].instances[0]
    channel = mesh.inbound(inst.id, mint(mesh, SIDECAR_HOSTILE[flaw](who)))
    refused_by_gate(mesh, inst.id, channel, CATALOG[service][method])


@pytest.mark.parametrize(
    "uris",
    [
        [f"SPIFFE://{TD}/sa/gateway"],  # scheme case
        ["spiffe://AgentFactory.local/sa/gateway"],  # trust-domain case
        [f"spiffe://{TD}.evil/sa/gateway"],  # trust-domain look-alikes
        [f"spiffe://{TD}x/sa/gateway"],
        ["spiffe://agentfactory.locaI/sa/gateway"],
        [],  # no URI SAN at all, only a DNS name that spells an id
    ],
    ids=["scheme-case", "domain-case", "domain-suffix", "domain-extended", "domain-homoglyph", "dns-only"],
)
@pytest.mark.parametrize("service", sorted(TARGETS))
def test_sidecar_tls_refuses_foreign_ids(mesh: Mesh, service: str, uris: list[str]) -> None:
    # These never reach HTTP: the inbound TLS context admits only .../sa/ URI SANs of our domain.
    method, who = TARGETS[service]
    inst = mesh.topo.services[service].instances[0]
    creds = mint(mesh, uris, dns=[f"{SA}/{who}", service])
    m = CATALOG[service][method]
    before = reached(mesh, m.path)
    status, _ = call(mesh.inbound(inst.id, creds), m, timeout=5)
    assert status == grpc.StatusCode.UNAVAILABLE
    assert reached(mesh, m.path) == before


@pytest.mark.parametrize("service", sorted(TARGETS))
def test_a_dns_san_spelling_an_id_grants_nothing(mesh: Mesh, service: str) -> None:
    # One good-looking URI SAN of an unknown workload; the allowed id only as a DNS SAN. Envoy's
    # `authenticated` principal would have matched the DNS SAN; the whole-value header match does not.
    method, who = TARGETS[service]
    inst = mesh.topo.services[service].instances[0]
    m = CATALOG[service][method]
    before = reached(mesh, m.path)
    status, _ = call(mesh.inbound(inst.id, mint(mesh, [f"{SA}/intruder"], dns=[f"{SA}/{who}"])), m, timeout=5)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert reached(mesh, m.path) == before


@pytest.mark.parametrize("service", sorted(TARGETS))
def test_sidecar_still_admits_a_good_svid_and_ignores_a_claimed_peer_header(mesh: Mesh, service: str) -> None:
    method, who = TARGETS[service]
    inst = mesh.topo.services[service].instances[0]
    m = CATALOG[service][method]
    before = reached(mesh, m.path)
    # A caller's own x-agentfactory-peer is replaced by what its certificate says.
    forged = [("x-agentfactory-peer", f"{SA}/{who}")]
    status, _ = call(mesh.inbound(inst.id, mint(mesh, [f"{SA}/{who}"])), m, timeout=5, metadata=forged)
    assert status == grpc.StatusCode.OK
    assert reached(mesh, m.path) == before + 1
    status, _ = call(mesh.inbound(inst.id, mint(mesh, [f"{SA}/intruder"])), m, timeout=5, metadata=forged)
    assert status == grpc.StatusCode.PERMISSION_DENIED


# --- the gateway ------------------------------------------------------------------------------

GATEWAY_HOSTILE = {
    "viewer+admin": [f"{ROLE}/viewer/user/v", f"{ROLE}/admin/user/a"],
    "admin+viewer": [f"{ROLE}/admin/user/a", f"{ROLE}/viewer/user/v"],
    "dot-segments": [f"{ROLE}/viewer/user/x/../../admin/user/x"],
    "dot-escape-to-sa": [f"{ROLE}/admin/user/x/../../sa/gateway"],
    "admin-with-extra-segments": [f"{ROLE}/admin/user/x/y"],
    "empty-segment": [f"{ROLE}/admin//user/x"],
    "trailing-slash": [f"{ROLE}/admin/user/x/"],
    "percent-encoded-role": [f"{ROLE}/%61dmin/user/x"],
    "percent-encoded-user": [f"{ROLE}/admin/user/%78"],
    "upper-case-role": [f"{ROLE}/Admin/user/x"],
    "upper-case-scheme": [f"SPIFFE://{TD}/role/admin/user/x"],
    "upper-case-domain": ["spiffe://AGENTFACTORY.LOCAL/role/admin/user/x"],
    "domain-suffix": [f"spiffe://{TD}.evil/role/admin/user/x"],
    "domain-prefix": [f"spiffe://evil.{TD}/role/admin/user/x"],
    "domain-homoglyph": ["spiffe://agentfactory.locaI/role/admin/user/x"],
    "domain-no-dot": ["spiffe://agentfactoryxlocal/role/admin/user/x"],
    "unknown-role": [f"{ROLE}/root/user/x"],
    "no-uri-san": [],
}


@pytest.mark.parametrize("flaw", sorted(GATEWAY_HOSTILE))
def test_gateway_refuses_hostile_client_certificate_before_rbac(mesh: Mesh, flaw: str) -> None:
    creds = mint(mesh, GATEWAY_HOSTILE[flaw], dns=[f"{ROLE}/admin/user/a"])
    channel = mesh.gateway(creds)
    # Admin-only, and a viewer method: the certificate must be worth nothing at all.
    for m in (CATALOG["signer"]["RotateKey"], CATALOG["registry"]["ListTemplates"]):
        refused_by_gate(mesh, "gateway", channel, m)


def test_a_hostile_certificate_is_refused_even_with_a_valid_token(mesh: Mesh) -> None:
    creds = mint(mesh, GATEWAY_HOSTILE["viewer+admin"])
    refused_by_gate(mesh, "gateway", mesh.gateway(creds), CATALOG["registry"]["ListTemplates"], mesh.token("viewer"))


def test_gateway_still_admits_good_certificates_and_tokens(mesh: Mesh) -> None:
    m = CATALOG["registry"]["ListTemplates"]
    gate_before = gate_denials(mesh, "gateway")
    assert call(mesh.gateway(mint(mesh, [f"{ROLE}/viewer/user/ci-bot_2"])), m)[0] == grpc.StatusCode.OK
    assert call(mesh.gateway(mesh.client_creds(None)), m, metadata=mesh.token("viewer"))[0] == grpc.StatusCode.OK
    # A forged principal header is dropped, not believed: the certificate-less client is a viewer by JWT only.
    forged = [("x-agentfactory-principal", f"{ROLE}/admin/user/a"), *mesh.token("viewer")]
    status, _ = call(mesh.gateway(mesh.client_creds(None)), CATALOG["signer"]["RotateKey"], metadata=forged)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert gate_denials(mesh, "gateway") == gate_before

"""The local CA: one SPIFFE URI SAN per certificate, private keys 0600, idempotent issue,
in-place rotation, and JWTs the gateway's JWKS verifies."""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from mesh import DEFAULT_TOPOLOGY
from mesh.ca import (
    CertificateAuthority,
    client_dir,
    issue_all,
    main,
    mint_token,
    rotate,
    uri_sans,
    workload_dir,
    write_swapped,
)
from mesh.topology import Topology, load


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load(DEFAULT_TOPOLOGY)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _snapshot(certs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(certs)): p.read_bytes() for p in sorted(certs.rglob("*.pem")) if p.is_file()}


def test_issue_all_makes_one_identity_per_process(topo: Topology, tmp_path: Path) -> None:
    report = issue_all(topo, tmp_path)
    assert report["ca"] == ["created"]
    assert sorted(report["workloads"]) == sorted(topo.envoy_ids())
    for inst in topo.instances():
        cert = _cert(workload_dir(tmp_path, inst.id) / "cert.pem")
        assert uri_sans(cert) == [f"spiffe://agentfactory.local/sa/{inst.service}"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
        cert.verify_directly_issued_by(_cert(tmp_path / "ca" / "ca.pem"))
    gateway = _cert(workload_dir(tmp_path, "gateway") / "cert.pem")
    assert uri_sans(gateway) == ["spiffe://agentfactory.local/sa/gateway"]
    dns = gateway.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in dns.get_values_for_type(x509.DNSName)  # grpcurl verifies the host name


def test_instances_of_one_service_share_identity_not_keys(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    blue = (workload_dir(tmp_path, "executor-blue") / "key.pem").read_bytes()
    green = (workload_dir(tmp_path, "executor-green") / "key.pem").read_bytes()
    assert blue != green


def test_client_certificates_carry_the_role(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    for client in topo.clients:
        cert = _cert(client_dir(tmp_path, client.name) / "cert.pem")
        assert uri_sans(cert) == [f"spiffe://agentfactory.local/role/{client.role}/user/{client.name}"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # a person's cert cannot serve


def test_private_keys_are_0600(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    keys = [p for p in tmp_path.rglob("*.pem") if "key" in p.name and p.is_file() and not p.is_symlink()]
    assert len(keys) >= len(topo.envoy_ids()) + len(topo.clients) + 2  # + CA key + JWT key
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_issue_is_idempotent(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    before = _snapshot(tmp_path)
    report = issue_all(topo, tmp_path)
    assert not any(report.values()), report
    assert _snapshot(tmp_path) == before


def test_issue_replaces_what_is_due_or_foreign(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    ca, _ = CertificateAuthority.load_or_create(tmp_path / "ca", topo.trust_domain)
    # Nearly expired: re-issued.
    now = dt.datetime.now(dt.UTC)
    write_swapped(
        workload_dir(tmp_path, "signer"),
        ca.issue(common_name="signer", uri=topo.spiffe_id("signer"), not_after=now + dt.timedelta(days=1)),
    )
    # Issued by another CA: re-issued.
    rogue = CertificateAuthority.create(tmp_path / "rogue", topo.trust_domain)
    write_swapped(
        workload_dir(tmp_path, "registry"), rogue.issue(common_name="registry", uri=topo.spiffe_id("registry"))
    )
    # Wrong identity: re-issued.
    write_swapped(workload_dir(tmp_path, "gateway"), ca.issue(common_name="gateway", uri=topo.spiffe_id("signer")))
    assert sorted(issue_all(topo, tmp_path)["workloads"]) == ["gateway", "registry", "signer"]


def test_rotate_reissues_in_place(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    d = workload_dir(tmp_path, "registry")
    old_cert, old_key = _cert(d / "cert.pem"), (d / "key.pem").read_bytes()
    old_target = (d / "..data").readlink()
    assert rotate(topo, tmp_path, ["registry"]) == ["registry"]
    assert _cert(d / "cert.pem").serial_number != old_cert.serial_number
    assert (d / "key.pem").read_bytes() != old_key
    # The swap is one symlink rename; the old version directory is gone.
    assert (d / "..data").readlink() != old_target
    assert not (d / old_target).exists()
    key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), password=None)
    assert key.public_key().public_numbers() == _cert(d / "cert.pem").public_key().public_numbers()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown instance"):
        rotate(topo, tmp_path, ["nope"])


def test_a_new_ca_reissues_everything(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    (tmp_path / "ca" / "ca-key.pem").unlink()
    report = issue_all(topo, tmp_path)
    assert report["ca"] == ["created"]
    assert sorted(report["workloads"]) == sorted(topo.envoy_ids())
    assert sorted(report["clients"]) == sorted(c.name for c in topo.clients)


def test_jwt_verifies_against_the_jwks(topo: Topology, tmp_path: Path) -> None:
    issue_all(topo, tmp_path)
    token = mint_token(tmp_path, topo, role="publisher", subject="ci", ttl=60)
    jwks = jwt.PyJWKSet.from_dict(json.loads((tmp_path / "jwt" / "jwks.json").read_text()))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=topo.gateway.jwt_audience)
    assert claims["role"] == "publisher"
    assert claims["iss"] == topo.gateway.jwt_issuer
    assert claims["exp"] - time.time() <= 60
    with pytest.raises(ValueError, match="unknown role"):
        mint_token(tmp_path, topo, role="root", subject="x")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--certs-dir", str(tmp_path), "issue"]) == 0
    assert main(["--certs-dir", str(tmp_path), "issue"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["--certs-dir", str(tmp_path), "token", "--role", "viewer"]) == 0
    assert capsys.readouterr().out.count(".") == 2
    assert main(["--certs-dir", str(tmp_path), "rotate", "signer"]) == 0
    assert "signer" in capsys.readouterr().out

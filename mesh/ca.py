"""Local certificate authority for the mesh, the gateway's JWT key, and a token minting helper.

    python -m mesh.ca issue            # idempotent: CA, one cert per process, client certs, JWT key
    python -m mesh.ca rotate [ID ...]  # re-issue workload certs in place; Envoy reloads them live
    python -m mesh.ca token --role admin [--subject alice] [--ttl 3600]
    python -m mesh.ca client NAME --role ROLE
    python -m mesh.ca show

Layout under ``build/certs`` (never committed):

    ca/ca.pem, ca/ca-key.pem          the root (EC P-256); ca/bundle.pem is the trust bundle
    workloads/<instance>/             one key pair per Envoy (sidecar or gateway); every instance
        cert.pem -> ..data/cert.pem   of a service shares the identity spiffe://<td>/sa/<service>
        key.pem  -> ..data/key.pem
        ..data -> ..<timestamp>/      swapped atomically by one rename() on issue/rotate
    clients/<name>/{cert,key}.pem     people/CI: spiffe://<td>/role/<role>/user/<name>
    jwt/signing-key.pem, jwt/jwks.json

The ``..data`` symlink swap is the Kubernetes secret-volume pattern: Envoy watches the
directory (``watched_directory``) and re-reads certificate *and* key together when ``..data``
is moved in, so it never pairs a new certificate with the old key.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh import DEFAULT_CERTS_DIR, DEFAULT_TOPOLOGY
from mesh.topology import ROLES, Topology, load

CA_LIFETIME = dt.timedelta(days=3650)
WORKLOAD_LIFETIME = dt.timedelta(days=30)
CLIENT_LIFETIME = dt.timedelta(days=90)
# Re-issue once a third of the lifetime is left, so a `make certs` a week before expiry renews.
RENEW_FRACTION = 1 / 3
# Certificates start slightly in the past: clocks of processes on one host still differ by
# a few hundred milliseconds and a not-yet-valid certificate fails the handshake.
BACKDATE = dt.timedelta(minutes=5)
JWT_ALGORITHM = "RS256"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file as 0600 from the first byte (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)  # O_CREAT honours umask; be explicit
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)


@dataclass(frozen=True)
class Leaf:
    cert: x509.Certificate
    key: PrivateKey


class CertificateAuthority:
    """A single-level CA whose key lives on disk (0600). Good for a laptop and CI, not for prod."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, root: Path) -> None:
        self.cert = cert
        self.key = key
        self.root = root

    @property
    def cert_path(self) -> Path:
        return self.root / "ca.pem"

    @property
    def bundle_path(self) -> Path:
        return self.root / "bundle.pem"

    @classmethod
    def load_or_create(cls, root: Path, trust_domain: str) -> tuple[CertificateAuthority, bool]:
        """Return the CA under ``root`` (creating it if missing or unusable) and whether it is new."""
        cert_path, key_path = root / "ca.pem", root / "ca-key.pem"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            usable = (
                isinstance(key, ec.EllipticCurvePrivateKey)
                and key.public_key().public_numbers() == cert.public_key().public_numbers()
                and cert.not_valid_after_utc - _now() > CA_LIFETIME * RENEW_FRACTION
                and uri_sans(cert) == [f"spiffe://{trust_domain}"]
            )
            if usable:
                ca = cls(cert, key, root)  # type: ignore[arg-type]
                ca._write_bundle()
                return ca, False
        return cls.create(root, trust_domain), True

    @classmethod
    def create(
        cls, root: Path, trust_domain: str, *, common_name: str = "Agent Factory local CA"
    ) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Agent Factory"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            # pathlen 0: this CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # The trust domain as the CA's URI SAN, as SPIFFE bundles do; leaves never carry it.
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(root / "ca-key.pem", _key_pem(key))
        _write_public(root / "ca.pem", _cert_pem(cert))
        ca = cls(cert, key, root)
        ca._write_bundle()
        return ca

    def _write_bundle(self) -> None:
        pem = _cert_pem(self.cert)
        if not self.bundle_path.exists() or self.bundle_path.read_bytes() != pem:
            _write_public(self.bundle_path, pem)

    def issue(
        self,
        *,
        common_name: str,
        uri: str,
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
        server: bool = True,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        lifetime: dt.timedelta = WORKLOAD_LIFETIME,
    ) -> Leaf:
        """Issue a leaf with exactly one URI SAN. ``server=False`` makes a client-only cert."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        start = not_before or now - BACKDATE
        end = not_after or now + lifetime
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
        names += [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Agent Factory"),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            # SPIFFE: an SVID's SAN extension is critical only when the subject is empty; ours is not.
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(cert, key)

    def still_good(
        self,
        cert_path: Path,
        key_path: Path,
        uri: str,
        *,
        server: bool = True,
        lifetime: dt.timedelta = WORKLOAD_LIFETIME,
    ) -> bool:
        """True when the pair on disk was issued by this CA for ``uri``, matches, and is not due."""
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError):
            return False
        try:
            cert.verify_directly_issued_by(self.cert)
        except (InvalidSignature, ValueError, TypeError):
            return False
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return False
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            return False
        if uri_sans(cert) != [uri]:
            return False
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if server and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            return False
        # Due when less than a third of the *policy* lifetime is left (not of this cert's own
        # lifetime, or a short-lived cert would never be due).
        if cert.not_valid_after_utc - _now() < lifetime * RENEW_FRACTION:
            return False
        # A key others can read is compromised by definition: re-issue rather than trust it.
        return not key_path.stat().st_mode & 0o077


# --- workload certificates: the ..data swap ---------------------------------------------------


def write_swapped(directory: Path, leaf: Leaf) -> None:
    """Publish cert+key in ``directory`` with one atomic rename of the ``..data`` symlink.

    Readers that follow ``cert.pem``/``key.pem`` always see a matching pair; Envoy, watching
    the directory for moves, reloads both after the rename.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f".{time.time_ns() % 1_000_000_000:09d}"
    version = directory / f"..{stamp}"
    version.mkdir(mode=0o700)
    _write_public(version / "cert.pem", _cert_pem(leaf.cert))
    _write_private(version / "key.pem", _key_pem(leaf.key))
    tmp_link = directory / "..data_tmp"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(version.name, tmp_link)
    os.replace(tmp_link, directory / "..data")
    for name in ("cert.pem", "key.pem"):
        link = directory / name
        if not link.is_symlink():
            if link.exists():
                link.unlink()
            os.symlink(f"..data/{name}", link)
    # Keep only the live version; a reader that resolved the old path already has its bytes.
    for old in directory.glob("..2*"):
        if old.is_dir() and old.name != version.name:
            shutil.rmtree(old, ignore_errors=True)


def workload_dir(certs_dir: Path, instance_id: str) -> Path:
    return certs_dir / "workloads" / instance_id


def client_dir(certs_dir: Path, name: str) -> Path:
    return certs_dir / "clients" / name


@dataclass(frozen=True)
class Workload:
    """What one Envoy needs a certificate for."""

    instance_id: str
    service: str


def workloads(topo: Topology) -> list[Workload]:
    out = [Workload(i.id, i.service) for i in topo.instances()]
    out.append(Workload(topo.gateway.id, "gateway"))
    return out


def _workload_leaf(ca: CertificateAuthority, topo: Topology, wl: Workload, **kw: object) -> Leaf:
    # DNS SANs name the service (and localhost for the gateway) so ordinary TLS clients such as
    # grpcurl and grpc-python can verify the host; mesh peers pin the single URI SAN instead.
    dns = [wl.service, f"{wl.service}.{topo.trust_domain}"]
    ips: list[str] = []
    if wl.service == "gateway":
        dns.append("localhost")
        ips = ["127.0.0.1", "::1"]
    return ca.issue(common_name=wl.instance_id, uri=topo.spiffe_id(wl.service), dns=dns, ips=ips, **kw)  # type: ignore[arg-type]


def ensure_workloads(
    ca: CertificateAuthority, topo: Topology, certs_dir: Path, *, force: Sequence[str] = ()
) -> list[str]:
    """Issue missing/invalid/due workload certs (and those in ``force``); return the ids issued."""
    issued = []
    for wl in workloads(topo):
        d = workload_dir(certs_dir, wl.instance_id)
        good = ca.still_good(d / "cert.pem", d / "key.pem", topo.spiffe_id(wl.service))
        if good and wl.instance_id not in force:
            continue
        write_swapped(d, _workload_leaf(ca, topo, wl))
        issued.append(wl.instance_id)
    return issued


def ensure_client(ca: CertificateAuthority, topo: Topology, certs_dir: Path, name: str, role: str) -> bool:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    d = client_dir(certs_dir, name)
    uri = topo.client_spiffe_id(role, name)
    if ca.still_good(d / "cert.pem", d / "key.pem", uri, server=False, lifetime=CLIENT_LIFETIME):
        return False
    leaf = ca.issue(common_name=name, uri=uri, server=False, lifetime=CLIENT_LIFETIME)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    _write_private(d / "key.pem", _key_pem(leaf.key))
    _write_public(d / "cert.pem", _cert_pem(leaf.cert))
    return True


# --- JWT ------------------------------------------------------------------------------------


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk_for(key: rsa.RSAPublicKey) -> dict[str, str]:
    nums = key.public_numbers()
    jwk = {"e": _b64url_uint(nums.e), "kty": "RSA", "n": _b64url_uint(nums.n)}
    # RFC 7638 thumbprint as the kid: stable for a key, different for the next one.
    thumb = hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()).digest()
    kid = base64.urlsafe_b64encode(thumb).rstrip(b"=").decode()
    return {**jwk, "alg": JWT_ALGORITHM, "use": "sig", "kid": kid}


def ensure_jwt_key(certs_dir: Path) -> bool:
    """An RSA-2048 signing key and the JWKS the gateway verifies against; True if newly made."""
    key_path, jwks_path = certs_dir / "jwt" / "signing-key.pem", certs_dir / "jwt" / "jwks.json"
    made = False
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey), f"{key_path} is not an RSA key"
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(key_path, _key_pem(key))
        made = True
    jwks = json.dumps({"keys": [jwk_for(key.public_key())]}, indent=2).encode() + b"\n"
    if not jwks_path.exists() or jwks_path.read_bytes() != jwks:
        _write_public(jwks_path, jwks)
    return made


def mint_token(
    certs_dir: Path,
    topo: Topology,
    *,
    role: str,
    subject: str,
    ttl: int = 3600,
    key_path: Path | None = None,
    now: float | None = None,
) -> str:
    """A gateway JWT with a ``role`` claim. ``key_path`` lets tests sign with a foreign key."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    path = key_path or certs_dir / "jwt" / "signing-key.pem"
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": topo.gateway.jwt_issuer,
        "aud": topo.gateway.jwt_audience,
        "sub": subject,
        "role": role,
        "iat": issued,
        "nbf": issued - 5,
        "exp": issued + ttl,
    }
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM, headers={"kid": jwk_for(key.public_key())["kid"]})


# --- orchestration ----------------------------------------------------------------------------


def issue_all(topo: Topology, certs_dir: Path) -> dict[str, list[str]]:
    """What ``make certs`` does. Idempotent: a second run with nothing due changes no file."""
    certs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(certs_dir, 0o700)
    ca, ca_new = CertificateAuthority.load_or_create(certs_dir / "ca", topo.trust_domain)
    # A new CA invalidates every leaf: still_good() sees the foreign issuer and re-issues.
    report = {"ca": ["created"] if ca_new else [], "workloads": ensure_workloads(ca, topo, certs_dir)}
    report["clients"] = [c.name for c in topo.clients if ensure_client(ca, topo, certs_dir, c.name, c.role)]
    report["jwt"] = ["created"] if ensure_jwt_key(certs_dir) else []
    return report


def rotate(topo: Topology, certs_dir: Path, instance_ids: Sequence[str] = ()) -> list[str]:
    """Re-issue workload certificates in place (all, or the given ids), new keys included."""
    known = [w.instance_id for w in workloads(topo)]
    unknown = sorted(set(instance_ids) - set(known))
    if unknown:
        raise ValueError(f"unknown instance ids {unknown}; known: {known}")
    ca, _ = CertificateAuthority.load_or_create(certs_dir / "ca", topo.trust_domain)
    return ensure_workloads(ca, topo, certs_dir, force=list(instance_ids) or known)


def describe(certs_dir: Path) -> list[dict[str, str]]:
    rows = []
    for cert_path in sorted(certs_dir.glob("*/*/cert.pem")) + sorted(certs_dir.glob("ca/ca.pem")):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        rows.append(
            {
                "file": str(cert_path.relative_to(certs_dir)),
                "uri": ",".join(uri_sans(cert)),
                "serial": f"{cert.serial_number:x}",
                "expires": cert.not_valid_after_utc.isoformat(timespec="seconds"),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.ca", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--certs-dir", type=Path, default=DEFAULT_CERTS_DIR)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("issue", help="create whatever is missing or due (idempotent)")
    rot = sub.add_parser("rotate", help="re-issue workload certificates in place")
    rot.add_argument("ids", nargs="*", help="instance ids (default: every workload)")
    tok = sub.add_parser("token", help="print a gateway JWT")
    tok.add_argument("--role", required=True, choices=ROLES)
    tok.add_argument("--subject", default=os.environ.get("USER", "local"))
    tok.add_argument("--ttl", type=int, default=3600, help="seconds")
    cli = sub.add_parser("client", help="issue a client certificate for a person or CI job")
    cli.add_argument("name")
    cli.add_argument("--role", required=True, choices=ROLES)
    sub.add_parser("show", help="list certificates, SANs, serials and expiry")
    args = parser.parse_args(argv)

    topo = load(args.topology)
    certs: Path = args.certs_dir
    if args.cmd == "issue":
        report = issue_all(topo, certs)
        changed = {k: v for k, v in report.items() if v}
        print(f"certificates in {certs}: " + (json.dumps(changed) if changed else "all valid, nothing to do"))
    elif args.cmd == "rotate":
        done = rotate(topo, certs, args.ids)
        print(f"rotated {len(done)} workload certificate(s): {', '.join(done)}")
    elif args.cmd == "token":
        if not (certs / "jwt" / "signing-key.pem").exists():
            print("no JWT signing key: run `make certs` first", file=sys.stderr)
            return 2
        print(mint_token(certs, topo, role=args.role, subject=args.subject, ttl=args.ttl))
    elif args.cmd == "client":
        ca, _ = CertificateAuthority.load_or_create(certs / "ca", topo.trust_domain)
        made = ensure_client(ca, topo, certs, args.name, args.role)
        print(f"{client_dir(certs, args.name)}: {'issued' if made else 'still valid'}")
    elif args.cmd == "show":
        for row in describe(certs):
            print(f"{row['file']:<42} {row['uri']:<62} {row['serial'][:16]:<17} {row['expires']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

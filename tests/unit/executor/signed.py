"""Signed templates and a signer's key sets for the executor's tests: two RSA keys (versions 1 and 2)
made once per session, templates signed by either, and a GetPublicKeys stand-in that counts its calls."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.executor.trust import Trust
from services.templates.manifest import Limits, Manifest
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from services.templates.signature import HASH, PADDING, PublicKeyVersion, SignatureRecord

KEYS = {v: rsa.generate_private_key(public_exponent=65537, key_size=2048) for v in (1, 2)}


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem(version: int) -> PublicKeyVersion:
    return PublicKeyVersion("templates", version, public_pem(KEYS[version]))


def signed(manifest: Manifest, module_size: int, revision: int, version: int = 1) -> PublishedTemplate:
    """The manifest as the registry serves it, signed by key `version`."""
    canonical = manifest.canonical_bytes()
    sig = SignatureRecord("templates", version, KEYS[version].sign(canonical, PADDING, HASH))
    return PublishedTemplate(manifest, canonical, sig, module_size, revision, 0.0)


def template(name: str = "echo", version: int = 1, digest: str = "a" * 64) -> PublishedTemplate:
    """name@1.0.0 signed by key `version`."""
    limits = Limits(fuel=10**6, memory_bytes=1 << 20, timeout_ms=1000, max_output_bytes=1000, max_tool_calls=10)
    manifest = Manifest(name=name, version="1.0.0", limits=limits, module_sha256=digest)
    return signed(manifest, 10, 1, version)


async def first_key() -> tuple[list[PublicKeyVersion], dict[str, int]]:
    """A signer's GetPublicKeys that serves key version 1 alone."""
    return [pem(1)], {"templates": 1}


class Keys:
    """A signer's GetPublicKeys: the versions it serves, counting calls."""

    def __init__(self, versions: list[int], minimum: int = 1) -> None:
        self.versions, self.minimum, self.calls = versions, minimum, 0

    async def __call__(self) -> tuple[list[PublicKeyVersion], dict[str, int]]:
        self.calls += 1
        return [pem(v) for v in self.versions if v >= self.minimum], {"templates": self.minimum}


async def trust_with(keys: Keys) -> Trust:
    trust = Trust(keys, Policy.load(), min_refresh_seconds=0.0)
    await trust.refresh()
    return trust

"""Template signatures: RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256, over canonical manifest bytes.

Why PKCS#1 v1.5 rather than PSS: it is deterministic, so re-publishing identical content yields
byte-identical signatures (idempotent publish), and it removes the salt-length ambiguity between
backends (OpenBao transit signs PSS with salt_length=auto by default; we ask it for pkcs1v15).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.common.errors import FailedPrecondition

ALGORITHM = "RSA_PKCS1V15_SHA256"
KEY_BITS = 2048
PADDING = padding.PKCS1v15()
HASH = hashes.SHA256()


@dataclass(frozen=True)
class SignatureRecord:
    key_id: str
    key_version: int
    signature: bytes
    # SHA-256 of the public key that made it (see `fingerprint`); "" for signatures made before it was recorded.
    key_fingerprint: str = ""


@dataclass(frozen=True)
class PublicKeyVersion:
    key_id: str
    key_version: int
    public_key_pem: str
    created_unix: float = 0.0


@lru_cache(maxsize=256)
def fingerprint(public_key_pem: str) -> str:
    """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo: one key, one fingerprint, whatever the PEM
    line breaks. Verifiers pin it per (key id, version) so a replaced key cannot pass for a known version."""
    loaded = serialization.load_pem_public_key(public_key_pem.encode())
    der = loaded.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class UnknownKeyVersion(FailedPrecondition):
    """The signature names a key version the keyring does not hold (refresh the keys and retry)."""


class Keyring:
    """Public keys by (key_id, version) with a minimum live version per key id. Verification only."""

    def __init__(self, keys: Iterable[PublicKeyVersion] = (), min_versions: dict[str, int] | None = None) -> None:
        self._keys: dict[tuple[str, int], rsa.RSAPublicKey] = {}
        self._fingerprints: dict[tuple[str, int], str] = {}
        self.min_versions = dict(min_versions or {})
        for key in keys:
            self.add(key)

    def add(self, key: PublicKeyVersion) -> None:
        loaded = serialization.load_pem_public_key(key.public_key_pem.encode())
        if not isinstance(loaded, rsa.RSAPublicKey) or loaded.key_size != KEY_BITS:
            raise ValueError(f"key {key.key_id} v{key.key_version} is not an RSA-{KEY_BITS} public key")
        self._keys[(key.key_id, key.key_version)] = loaded
        self._fingerprints[(key.key_id, key.key_version)] = fingerprint(key.public_key_pem)

    def fingerprint_of(self, key_id: str, version: int) -> str | None:
        return self._fingerprints.get((key_id, version))

    def has(self, key_id: str, version: int) -> bool:
        return (key_id, version) in self._keys

    def verify(self, payload: bytes, record: SignatureRecord) -> None:
        """Raise FailedPrecondition naming why the signature does not verify."""
        minimum = self.min_versions.get(record.key_id, 1)
        if record.key_version < minimum:
            raise FailedPrecondition(
                f"signature key {record.key_id} v{record.key_version} is revoked (minimum version is {minimum})"
            )
        key = self._keys.get((record.key_id, record.key_version))
        if key is None:
            raise UnknownKeyVersion(f"no public key {record.key_id} v{record.key_version} is known")
        held = self._fingerprints[(record.key_id, record.key_version)]
        if record.key_fingerprint and record.key_fingerprint != held:
            raise FailedPrecondition(
                f"signature was made by key {record.key_id} v{record.key_version} with fingerprint "
                f"{record.key_fingerprint[:16]}..., but v{record.key_version} is now {held[:16]}...: the key was "
                "replaced; revoke the version and re-sign"
            )
        try:
            key.verify(record.signature, payload, PADDING, HASH)
        except InvalidSignature as exc:
            raise FailedPrecondition(
                f"signature does not match the manifest (key {record.key_id} v{record.key_version}): "
                "the manifest or signature was altered"
            ) from exc

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.errors import FailedPrecondition
from services.templates.signature import HASH, PADDING, Keyring, PublicKeyVersion, SignatureRecord, UnknownKeyVersion


def keypair() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem.decode()


@pytest.fixture(scope="module")
def keys() -> list[tuple[rsa.RSAPrivateKey, str]]:
    return [keypair(), keypair()]


def sign(key: rsa.RSAPrivateKey, payload: bytes, version: int) -> SignatureRecord:
    return SignatureRecord("templates", version, key.sign(payload, PADDING, HASH))


def test_verifies_each_version_and_detects_tampering(keys) -> None:
    ring = Keyring([PublicKeyVersion("templates", i + 1, pem) for i, (_, pem) in enumerate(keys)])
    payload = b'{"name":"a"}'
    for version, (private, _) in enumerate(keys, start=1):
        ring.verify(payload, sign(private, payload, version))
    record = sign(keys[0][0], payload, 1)
    with pytest.raises(FailedPrecondition, match="altered"):
        ring.verify(payload[:-1] + b"!", record)
    flipped = bytes([record.signature[0] ^ 1]) + record.signature[1:]
    with pytest.raises(FailedPrecondition, match="altered"):
        ring.verify(payload, SignatureRecord("templates", 1, flipped))
    # A signature made by v1 but labelled v2 does not verify.
    with pytest.raises(FailedPrecondition):
        ring.verify(payload, SignatureRecord("templates", 2, record.signature))


def test_swapped_signatures_between_manifests_fail(keys) -> None:
    ring = Keyring([PublicKeyVersion("templates", 1, keys[0][1])])
    a, b = b'{"name":"a"}', b'{"name":"b"}'
    with pytest.raises(FailedPrecondition):
        ring.verify(a, sign(keys[0][0], b, 1))


def test_revoked_and_unknown_versions(keys) -> None:
    ring = Keyring([PublicKeyVersion("templates", 1, keys[0][1])], min_versions={"templates": 2})
    with pytest.raises(FailedPrecondition, match="revoked"):
        ring.verify(b"x", sign(keys[0][0], b"x", 1))
    with pytest.raises(UnknownKeyVersion):
        ring.verify(b"x", sign(keys[1][0], b"x", 3))


def test_rejects_non_rsa2048_keys() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="RSA-2048"):
        Keyring([PublicKeyVersion("templates", 1, pem.decode())])

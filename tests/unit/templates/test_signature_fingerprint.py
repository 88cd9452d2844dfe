"""Key fingerprints recorded with each signature (issue 10 item 12): a signature names the key that made it,
so a replacement key under the same version is refused even where its signature check alone would say
only "does not match"."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.errors import FailedPrecondition
from services.templates.signature import HASH, PADDING, Keyring, PublicKeyVersion, SignatureRecord, fingerprint

PAYLOAD = b'{"name":"a","version":"1.0.0"}'


def public(key: rsa.RSAPrivateKey, version: int = 1) -> PublicKeyVersion:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKeyVersion("templates", version, pem.decode())


def test_fingerprint_is_the_der_sha256_whatever_the_pem_layout() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = public(key).public_key_pem
    assert fingerprint(pem) == fingerprint(pem.replace("\n", "\r\n")) and len(fingerprint(pem)) == 64


def test_a_signature_recorded_with_another_keys_fingerprint_is_refused() -> None:
    signer, replacement = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    record = SignatureRecord(
        "templates", 1, signer.sign(PAYLOAD, PADDING, HASH), fingerprint(public(signer).public_key_pem)
    )
    Keyring([public(signer)]).verify(PAYLOAD, record)
    Keyring([public(signer)]).verify(PAYLOAD, dataclasses.replace(record, key_fingerprint=""))  # older signatures
    with pytest.raises(FailedPrecondition, match="the key was replaced"):
        Keyring([public(replacement)]).verify(PAYLOAD, record)

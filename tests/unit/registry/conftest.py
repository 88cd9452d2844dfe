"""Unit fixtures: a real store in tmp_path and a signer that does real RSA-2048 PKCS#1 v1.5 signing
in-process (the same scheme services.templates.signature verifies), so no process is started."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.cache import LruTtlCache
from services.common.errors import Unavailable
from services.registry.service import Registry
from services.registry.storage import RegistryStore
from services.registry.watch import WatchHub
from services.templates.manifest import parse_draft, resolve
from services.templates.policy import Policy
from services.templates.published import PublishedTemplate
from services.templates.signature import (
    HASH,
    KEY_BITS,
    PADDING,
    Keyring,
    PublicKeyVersion,
    SignatureRecord,
    fingerprint,
)

# The smallest valid module: magic, version 1, no sections.
WASM = b"\0asm\x01\x00\x00\x00"


def wasm_module(size: int) -> bytes:
    """A valid-looking module of `size` bytes: header plus one custom section padding it out."""
    payload = size - 8 - 1 - 5
    name = b"\x01x"
    body = name + b"\0" * (payload - len(name))
    length = len(body)
    leb = bytes([(length >> (7 * i) & 0x7F) | (0x80 if i < 4 else 0) for i in range(5)])
    module = WASM + b"\x00" + leb + body
    assert len(module) == size
    return module


_KEYS = {1: rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)}


def _key(version: int) -> rsa.RSAPrivateKey:
    if version not in _KEYS:
        _KEYS[version] = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return _KEYS[version]


class KeySigner:
    """A real RSA signer in memory, with versions (rotate, revoke); counts calls so tests can assert that
    nothing was re-signed."""

    key_id = "templates"

    def __init__(self) -> None:
        self.calls = 0
        self.down = False
        self.latest = 1
        self.min_version = 1

    async def sign(self, payload: bytes) -> SignatureRecord:
        if self.down:
            raise Unavailable("the signer at test is unavailable; retry the publish")
        self.calls += 1
        key = _key(self.latest)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return SignatureRecord(self.key_id, self.latest, key.sign(payload, PADDING, HASH), fingerprint(pem.decode()))

    async def live_keys(self) -> frozenset[tuple[str, int]]:
        if self.down:
            raise Unavailable("the signer at test did not list its keys; retry")
        return frozenset((self.key_id, v) for v in range(self.min_version, self.latest + 1))

    def rotate_and_revoke(self) -> None:
        self.latest += 1
        self.min_version = self.latest

    def public_keys(self) -> list[PublicKeyVersion]:
        """The live versions, as GetPublicKeys lists them."""
        keys = []
        for version in range(self.min_version, self.latest + 1):
            pem = (
                _key(version)
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode()
            )
            keys.append(PublicKeyVersion(self.key_id, version, pem))
        return keys

    def keyring(self) -> Keyring:
        return Keyring(self.public_keys(), {self.key_id: self.min_version})


def manifest(name: str = "agent", version: str = "1.0.0", **fields: object) -> bytes:
    return json.dumps({"name": name, "version": version, **fields}).encode()


# A signature the stores keep as they got it (nothing verifies it there).
SIG = SignatureRecord("templates", 1, b"\x01" * 256)


def stored(name: str = "agent", version: str = "1.0.0", module: bytes = WASM, **fields: object) -> PublishedTemplate:
    """A resolved template as the registry hands it to a store: signed with SIG, not yet published."""
    digest = hashlib.sha256(module).hexdigest()
    resolved = resolve(
        parse_draft(manifest(name, version, **fields)), Policy.load().default_limits, lambda n, v: None, digest
    )
    return PublishedTemplate(resolved, resolved.canonical_bytes(), SIG, len(module), 0, 0.0)


async def chunks(data: bytes, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RegistryStore]:
    store = RegistryStore(tmp_path / "data")
    yield store
    store.close()


@pytest.fixture
def signer() -> KeySigner:
    return KeySigner()


@pytest.fixture
def policy() -> Policy:
    return Policy.load()


@pytest.fixture
def registry(store: RegistryStore, signer: KeySigner, policy: Policy) -> Registry:
    cache: LruTtlCache = LruTtlCache("registry_manifest_test", 64, 60.0)
    store.record_keys(signer.public_keys(), {signer.key_id: signer.min_version})  # as the key push does
    return Registry(store, policy, signer, cache, WatchHub(queue_capacity=8))


async def publish(registry: Registry, raw: bytes, module: bytes = WASM):
    return await registry.publish(raw, len(module), chunks(module))

"""SignerService over the local backend: sign/verify, tampering, revocation, bounds, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from prometheus_client import REGISTRY

from services.common.errors import FailedPrecondition, InvalidArgument
from services.signer.local_backend import LocalKeyBackend
from services.signer.service import MAX_PAYLOAD_BYTES, KeySet, SignerService, check_min_version
from services.templates.signature import Keyring, SignatureRecord

MANIFEST = b'{"name":"summarise","version":"1.0.0"}'
OTHER = b'{"name":"summarise","version":"1.0.1"}'


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_sign_then_verify(service: SignerService) -> None:
    record = await service.sign(MANIFEST)
    assert (record.key_id, record.key_version, len(record.signature)) == ("templates", 1, 256)
    result = await service.verify(MANIFEST, record)
    assert result.valid and result.reason == ""


async def test_signatures_are_deterministic(service: SignerService) -> None:
    """PKCS#1 v1.5: identical content, identical signature (idempotent re-publish)."""
    assert (await service.sign(MANIFEST)).signature == (await service.sign(MANIFEST)).signature


@pytest.mark.parametrize("index", [0, 7, len(MANIFEST) - 1])
async def test_flipped_payload_byte_fails(service: SignerService, index: int) -> None:
    record = await service.sign(MANIFEST)
    result = await service.verify(flip(MANIFEST, index), record)
    assert not result.valid
    assert "does not match" in result.reason


@pytest.mark.parametrize("index", [0, 128, 255])
async def test_flipped_signature_byte_fails(service: SignerService, index: int) -> None:
    record = await service.sign(MANIFEST)
    tampered = dataclasses.replace(record, signature=flip(record.signature, index))
    result = await service.verify(MANIFEST, tampered)
    assert not result.valid and "does not match" in result.reason


async def test_signature_swapped_between_payloads_fails(service: SignerService) -> None:
    first, second = await service.sign(MANIFEST), await service.sign(OTHER)
    assert not (await service.verify(MANIFEST, second)).valid
    assert not (await service.verify(OTHER, first)).valid


async def test_rotation_keeps_old_signatures_valid_until_revoked(service: SignerService) -> None:
    old = await service.sign(MANIFEST)
    key = await service.rotate()
    assert key.key_version == 2
    new = await service.sign(MANIFEST)
    assert new.key_version == 2
    assert (await service.verify(MANIFEST, old)).valid
    assert (await service.verify(MANIFEST, new)).valid
    assert await service.set_min_version(2) == 2
    revoked = await service.verify(MANIFEST, old)
    assert not revoked.valid and "revoked" in revoked.reason
    assert (await service.verify(MANIFEST, new)).valid
    keys = await service.public_keys()
    assert [k.key_version for k in keys.keys] == [2] and keys.min_version == 2


async def test_unknown_version_and_key_id(service: SignerService) -> None:
    record = await service.sign(MANIFEST)
    unknown = await service.verify(MANIFEST, dataclasses.replace(record, key_version=9))
    assert not unknown.valid and "v9 does not exist" in unknown.reason
    other = await service.verify(MANIFEST, dataclasses.replace(record, key_id="other"))
    assert not other.valid and "unknown key id" in other.reason


async def test_signature_from_another_key_with_same_version_fails(tmp_path_factory: pytest.TempPathFactory) -> None:
    a = SignerService(LocalKeyBackend(tmp_path_factory.mktemp("a"), "templates"))
    b = SignerService(LocalKeyBackend(tmp_path_factory.mktemp("b"), "templates"))
    await a.start()
    await b.start()
    try:
        assert not (await b.verify(MANIFEST, await a.sign(MANIFEST))).valid
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("payload", "field"), [(b"", "payload"), (b"x" * (MAX_PAYLOAD_BYTES + 1), "payload")], ids=["empty", "over-1MiB"]
)
async def test_sign_rejects_bad_payloads(service: SignerService, payload: bytes, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        await service.sign(payload)
    assert info.value.field == field


async def test_sign_accepts_exactly_1_mib(service: SignerService) -> None:
    record = await service.sign(b"x" * MAX_PAYLOAD_BYTES)
    assert (await service.verify(b"x" * MAX_PAYLOAD_BYTES, record)).valid


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signature": b""}, "signature.signature"),
        ({"key_id": ""}, "signature.key_id"),
        ({"key_version": 0}, "signature.key_version"),
    ],
)
async def test_verify_rejects_malformed_signatures(service: SignerService, change: dict, field: str) -> None:
    record = dataclasses.replace(await service.sign(MANIFEST), **change)
    with pytest.raises(InvalidArgument) as info:
        await service.verify(MANIFEST, record)
    assert info.value.field == field


async def test_verify_rejects_empty_payload(service: SignerService) -> None:
    with pytest.raises(InvalidArgument):
        await service.verify(b"", SignatureRecord("templates", 1, b"x" * 256))


async def test_min_version_bounds(service: SignerService) -> None:
    await service.rotate()
    with pytest.raises(InvalidArgument):
        await service.set_min_version(0)
    with pytest.raises(FailedPrecondition, match="exceeds the latest key version 2"):
        await service.set_min_version(3)
    assert await service.set_min_version(2) == 2
    assert await service.set_min_version(2) == 2  # idempotent
    with pytest.raises(FailedPrecondition, match="cannot be undone"):
        await service.set_min_version(1)


def test_check_min_version_table() -> None:
    check_min_version(1, 1, 1)
    check_min_version(3, 2, 3)
    with pytest.raises(FailedPrecondition):
        check_min_version(4, 2, 3)
    with pytest.raises(FailedPrecondition):
        check_min_version(1, 2, 3)


async def test_metrics_count_signatures_verifications_and_key_age(service: SignerService) -> None:
    signed = metric("agentfactory_signer_signatures_total", key_version="1")
    valid = metric("agentfactory_signer_verifications_total", result="valid")
    mismatch = metric("agentfactory_signer_verifications_total", result="mismatch")
    record = await service.sign(MANIFEST)
    await service.verify(MANIFEST, record)
    await service.verify(OTHER, record)
    assert metric("agentfactory_signer_signatures_total", key_version="1") == signed + 1
    assert metric("agentfactory_signer_verifications_total", result="valid") == valid + 1
    assert metric("agentfactory_signer_verifications_total", result="mismatch") == mismatch + 1
    # The age gauge is now minus the key's creation time, read when scraped.
    created = (await service.public_keys()).get(1).created_unix
    before = time.time() - created
    age = metric("agentfactory_signing_key_age_seconds", key_version="1")
    assert before <= age <= time.time() - created
    await service.rotate()
    await service.set_min_version(2)
    assert REGISTRY.get_sample_value("agentfactory_signing_key_age_seconds", {"key_version": "1"}) is None
    assert metric("agentfactory_signing_key_latest_version") == 2


async def test_offline_keyring_agrees_with_the_service(service: SignerService) -> None:
    """What executors do: verify with the published public keys only."""
    record = await service.sign(MANIFEST)
    ring = Keyring((await service.public_keys()).keys)
    ring.verify(MANIFEST, record)
    with pytest.raises(FailedPrecondition):
        ring.verify(OTHER, record)


async def test_audit_log_records_sign_rotate_revoke(service: SignerService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="agentfactory.audit")
    await service.sign(MANIFEST)
    await service.rotate()
    await service.set_min_version(2)
    events = [getattr(r, "fields", {}) for r in caplog.records if r.name == "agentfactory.audit"]
    assert [e["event"] for e in events] == ["sign", "rotate", "revoke"]
    assert events[0]["key_version"] == 1 and len(events[0]["payload_sha256"]) == 64
    assert events[1]["key_version"] == 2
    assert events[2]["revoked_versions"] == [1]


async def test_concurrent_verifies_share_one_refresh_of_a_stale_keyring(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    now = [0.0]
    backend = LocalKeyBackend(tmp_path_factory.mktemp("keys"), "templates")
    calls: list[int] = []
    real_key_set = backend.key_set

    def counting_key_set() -> KeySet:
        calls.append(1)
        return real_key_set()

    backend.key_set = counting_key_set  # type: ignore[method-assign]
    svc = SignerService(backend, key_cache_seconds=10, clock=lambda: now[0])
    await svc.start()
    try:
        record = await svc.sign(MANIFEST)
        calls.clear()
        now[0] = 60.0
        results = await asyncio.gather(*(svc.verify(MANIFEST, record) for _ in range(5)))
        assert all(r.valid for r in results)
        assert len(calls) == 1
    finally:
        svc.close()

"""The signer through gRPC, as a real process, on each backend (local files and a real OpenBao)."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentfactory.signer.v1 import signer_service_pb2 as pb
from agentfactory.signer.v1 import signer_service_pb2_grpc as pb_grpc
from services.common.errors import FailedPrecondition
from services.templates.signature import Keyring, PublicKeyVersion, SignatureRecord
from tests.harness import ServiceProcess

from .conftest import StartSigner, stub_for

T = 10.0  # every call carries a deadline
MANIFEST = b'{"kind":"template","name":"summarise","version":"1.0.0"}'
OTHER = b'{"kind":"template","name":"summarise","version":"1.0.1"}'


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x80]) + data[index + 1 :]


def verify(stub: pb_grpc.SignerServiceStub, payload: bytes, signature: pb.Signature) -> pb.VerifyResponse:
    return stub.Verify(pb.VerifyRequest(payload=payload, signature=signature), timeout=T)


def sign(stub: pb_grpc.SignerServiceStub, payload: bytes) -> pb.Signature:
    return stub.Sign(pb.SignRequest(payload=payload), timeout=T).signature


def offline_keyring(stub: pb_grpc.SignerServiceStub) -> Keyring:
    """What an executor does: fetch the public keys once, then verify without the signer."""
    reply = stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T)
    keys = [PublicKeyVersion(k.key_id, k.key_version, k.public_key_pem) for k in reply.keys]
    return Keyring(keys, {k.key_id: reply.min_version for k in reply.keys})


def record(signature: pb.Signature) -> SignatureRecord:
    return SignatureRecord(signature.key_id, signature.key_version, signature.signature)


def status_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def bad_field(error: grpc.RpcError) -> str:
    details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(details)
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field


def test_sign_verify_rotate_revoke(stub: pb_grpc.SignerServiceStub, signer: ServiceProcess) -> None:
    first = sign(stub, MANIFEST)
    assert first.key_version == 1 and first.algorithm == pb.SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256
    assert len(first.signature) == 256
    assert verify(stub, MANIFEST, first).valid
    offline_keyring(stub).verify(MANIFEST, record(first))  # the backend's signature checks out offline

    rotated = stub.RotateKey(pb.RotateKeyRequest(), timeout=T).key
    assert rotated.key_version == 2 and rotated.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    second = sign(stub, MANIFEST)
    assert second.key_version == 2
    assert verify(stub, MANIFEST, first).valid, "signatures made before a rotation must still verify"
    assert verify(stub, MANIFEST, second).valid

    keys = stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T)
    assert [k.key_version for k in keys.keys] == [1, 2]
    assert (keys.min_version, keys.latest_version) == (1, 2)
    assert keys.keys[0].public_key_pem != keys.keys[1].public_key_pem
    ring = offline_keyring(stub)
    ring.verify(MANIFEST, record(first))
    ring.verify(MANIFEST, record(second))

    assert stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=2), timeout=T).min_version == 2
    revoked = verify(stub, MANIFEST, first)
    assert not revoked.valid and "revoked" in revoked.reason
    assert verify(stub, MANIFEST, second).valid
    keys = stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T)
    assert [k.key_version for k in keys.keys] == [2]
    assert (keys.min_version, keys.latest_version) == (2, 2)
    with pytest.raises(FailedPrecondition, match="revoked"):
        offline_keyring(stub).verify(MANIFEST, record(first))

    metrics = urllib.request.urlopen(f"http://{signer.env['AF_METRICS_ADDR']}/metrics", timeout=T).read().decode()
    assert 'agentfactory_signing_key_age_seconds{key_version="2"}' in metrics
    assert 'agentfactory_signing_key_age_seconds{key_version="1"}' not in metrics
    assert 'agentfactory_signer_signatures_total{key_version="1"} 1.0' in metrics
    assert 'agentfactory_signer_verifications_total{result="revoked"} 1.0' in metrics


def test_minimum_version_bounds(stub: pb_grpc.SignerServiceStub) -> None:
    stub.RotateKey(pb.RotateKeyRequest(), timeout=T)
    error = status_of(lambda: stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=3), timeout=T))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "latest key version 2" in error.details()
    error = status_of(lambda: stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=0), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_field(error) == "min_version"
    stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=2), timeout=T)
    error = status_of(lambda: stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=1), timeout=T))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "cannot be undone" in error.details()
    assert stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T).min_version == 2


def test_tampering_is_reported_invalid(stub: pb_grpc.SignerServiceStub) -> None:
    first, other = sign(stub, MANIFEST), sign(stub, OTHER)
    for index in (0, len(MANIFEST) // 2, len(MANIFEST) - 1):
        reply = verify(stub, flip(MANIFEST, index), first)
        assert not reply.valid and "does not match" in reply.reason
    for index in (0, 100, 255):
        tampered = pb.Signature()
        tampered.CopyFrom(first)
        tampered.signature = flip(first.signature, index)
        assert not verify(stub, MANIFEST, tampered).valid
    assert not verify(stub, MANIFEST, other).valid, "a signature swapped from another payload must fail"
    assert not verify(stub, OTHER, first).valid
    unknown = pb.Signature()
    unknown.CopyFrom(first)
    unknown.key_version = 42
    reply = verify(stub, MANIFEST, unknown)
    assert not reply.valid and "v42 does not exist" in reply.reason


def test_bad_input_gets_precise_statuses_and_the_process_keeps_serving(
    stub: pb_grpc.SignerServiceStub, signer: ServiceProcess
) -> None:
    good = sign(stub, MANIFEST)
    cases = [
        (lambda: stub.Sign(pb.SignRequest(), timeout=T), grpc.StatusCode.INVALID_ARGUMENT, "payload"),
        (
            lambda: stub.Sign(pb.SignRequest(payload=b"x" * (1024 * 1024 + 1)), timeout=T),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload",
        ),
        (
            lambda: stub.Verify(pb.VerifyRequest(payload=MANIFEST), timeout=T),
            grpc.StatusCode.INVALID_ARGUMENT,
            "signature",
        ),
        (
            lambda: stub.Verify(
                pb.VerifyRequest(
                    payload=MANIFEST,
                    signature=pb.Signature(key_id=good.key_id, key_version=1, signature=good.signature),
                ),
                timeout=T,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "signature.algorithm",
        ),
        (lambda: stub.Verify(pb.VerifyRequest(signature=good), timeout=T), grpc.StatusCode.INVALID_ARGUMENT, "payload"),
    ]
    for call, code, field in cases:
        error = status_of(call)
        assert error.code() == code, error.details()
        assert bad_field(error) == field
    # Past the transport's 4 MiB cap, gRPC itself refuses the message.
    error = status_of(lambda: stub.Sign(pb.SignRequest(payload=b"x" * (5 * 1024 * 1024)), timeout=T))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    assert signer.alive()
    assert verify(stub, MANIFEST, sign(stub, MANIFEST)).valid
    with grpc.insecure_channel(signer.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=T)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_keys_survive_a_restart(start_signer: StartSigner, backend_env: dict[str, str]) -> None:
    first = start_signer(backend_env)
    channel, stub = stub_for(first)
    old = sign(stub, MANIFEST)
    stub.RotateKey(pb.RotateKeyRequest(), timeout=T)
    stub.RotateKey(pb.RotateKeyRequest(), timeout=T)
    stub.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=2), timeout=T)
    before = stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T)
    newest = sign(stub, MANIFEST)
    channel.close()
    first.kill()  # no graceful shutdown: state must already be durable

    second = start_signer(backend_env)
    channel, stub = stub_for(second)
    try:
        after = stub.GetPublicKeys(pb.GetPublicKeysRequest(), timeout=T)
        assert (after.min_version, after.latest_version) == (2, 3)
        assert [k.public_key_pem for k in after.keys] == [k.public_key_pem for k in before.keys]
        assert verify(stub, MANIFEST, newest).valid
        assert not verify(stub, MANIFEST, old).valid
        assert sign(stub, MANIFEST).key_version == 3
    finally:
        channel.close()

"""Servicer: protobuf validation and conversion (called directly; the interceptor maps the errors)."""

from __future__ import annotations

import pytest

from agentfactory.signer.v1 import signer_service_pb2 as pb
from services.common.errors import InvalidArgument
from services.signer.service import SignerService
from services.signer.servicer import SignerServicer

PAYLOAD = b"canonical manifest"


@pytest.fixture
def servicer(service: SignerService) -> SignerServicer:
    return SignerServicer(service)


async def test_sign_and_verify_round_trip(servicer: SignerServicer) -> None:
    signed = await servicer.Sign(pb.SignRequest(payload=PAYLOAD), None)  # type: ignore[arg-type]
    assert signed.signature.algorithm == pb.SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256
    assert signed.signature.key_id == "templates" and signed.signature.key_version == 1
    reply = await servicer.Verify(pb.VerifyRequest(payload=PAYLOAD, signature=signed.signature), None)  # type: ignore[arg-type]
    assert reply.valid


async def test_verify_without_signature_is_invalid_argument(servicer: SignerServicer) -> None:
    with pytest.raises(InvalidArgument) as info:
        await servicer.Verify(pb.VerifyRequest(payload=PAYLOAD), None)  # type: ignore[arg-type]
    assert info.value.field == "signature"


@pytest.mark.parametrize("algorithm", [pb.SIGNATURE_ALGORITHM_UNSPECIFIED, 7])
async def test_verify_with_wrong_algorithm_is_invalid_argument(servicer: SignerServicer, algorithm: int) -> None:
    signed = await servicer.Sign(pb.SignRequest(payload=PAYLOAD), None)  # type: ignore[arg-type]
    signed.signature.algorithm = algorithm  # type: ignore[assignment]
    with pytest.raises(InvalidArgument, match="RSA_PKCS1V15_SHA256") as info:
        await servicer.Verify(pb.VerifyRequest(payload=PAYLOAD, signature=signed.signature), None)  # type: ignore[arg-type]
    assert info.value.field == "signature.algorithm"


async def test_sign_empty_payload_is_invalid_argument(servicer: SignerServicer) -> None:
    with pytest.raises(InvalidArgument, match="payload is empty"):
        await servicer.Sign(pb.SignRequest(), None)  # type: ignore[arg-type]


async def test_public_keys_and_rotation(servicer: SignerServicer) -> None:
    rotated = await servicer.RotateKey(pb.RotateKeyRequest(), None)  # type: ignore[arg-type]
    assert rotated.key.key_version == 2 and rotated.key.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    keys = await servicer.GetPublicKeys(pb.GetPublicKeysRequest(), None)  # type: ignore[arg-type]
    assert [k.key_version for k in keys.keys] == [1, 2]
    assert (keys.min_version, keys.latest_version) == (1, 2)
    assert all(k.create_time.seconds > 1_700_000_000 for k in keys.keys)
    reply = await servicer.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(min_version=2), None)  # type: ignore[arg-type]
    assert reply.min_version == 2
    with pytest.raises(InvalidArgument):
        await servicer.SetMinimumKeyVersion(pb.SetMinimumKeyVersionRequest(), None)  # type: ignore[arg-type]

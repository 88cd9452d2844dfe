"""gRPC transport for the signer: protobuf <-> domain, nothing else. Errors are mapped by the interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from agentfactory.signer.v1 import signer_service_pb2 as pb
from agentfactory.signer.v1 import signer_service_pb2_grpc as pb_grpc
from services.common.errors import InvalidArgument
from services.common.timestamps import to_timestamp
from services.signer.service import SignerService
from services.templates.messages import signature_to_proto
from services.templates.signature import PublicKeyVersion, SignatureRecord, fingerprint

ALGORITHM = pb.SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256


def public_key_pb(key: PublicKeyVersion) -> pb.PublicKey:
    return pb.PublicKey(
        key_id=key.key_id,
        key_version=key.key_version,
        algorithm=ALGORITHM,
        public_key_pem=key.public_key_pem,
        create_time=to_timestamp(key.created_unix),
        fingerprint_sha256=fingerprint(key.public_key_pem),
    )


def signature_record(request: pb.VerifyRequest) -> SignatureRecord:
    if not request.HasField("signature"):
        raise InvalidArgument("signature is missing: send the Signature returned by Sign", field="signature")
    sig = request.signature
    if sig.algorithm != ALGORITHM:
        name = pb.SignatureAlgorithm.Name(sig.algorithm) if sig.algorithm in pb.SignatureAlgorithm.values() else ""
        raise InvalidArgument(
            f"signature.algorithm {name or sig.algorithm} is not supported; this signer verifies "
            "SIGNATURE_ALGORITHM_RSA_PKCS1V15_SHA256 only",
            field="signature.algorithm",
        )
    return SignatureRecord(sig.key_id, sig.key_version, sig.signature, sig.key_fingerprint_sha256)


class SignerServicer(pb_grpc.SignerServiceServicer):
    def __init__(self, service: SignerService) -> None:
        self.service = service

    async def Sign(
        self, request: pb.SignRequest, context: grpc.aio.ServicerContext[pb.SignRequest, pb.SignResponse]
    ) -> pb.SignResponse:
        record = await self.service.sign(request.payload)
        return pb.SignResponse(signature=signature_to_proto(record))

    async def Verify(
        self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext[pb.VerifyRequest, pb.VerifyResponse]
    ) -> pb.VerifyResponse:
        result = await self.service.verify(request.payload, signature_record(request))
        return pb.VerifyResponse(valid=result.valid, reason=result.reason)

    async def GetPublicKeys(
        self,
        request: pb.GetPublicKeysRequest,
        context: grpc.aio.ServicerContext[pb.GetPublicKeysRequest, pb.GetPublicKeysResponse],
    ) -> pb.GetPublicKeysResponse:
        keys = await self.service.public_keys()
        return pb.GetPublicKeysResponse(
            keys=[public_key_pb(k) for k in keys.keys], min_version=keys.min_version, latest_version=keys.latest_version
        )

    async def WatchPublicKeys(
        self,
        request: pb.WatchPublicKeysRequest,
        context: grpc.aio.ServicerContext[pb.WatchPublicKeysRequest, pb.WatchPublicKeysResponse],
    ) -> AsyncIterator[pb.WatchPublicKeysResponse]:
        async for keys in self.service.watch_keys():
            yield pb.WatchPublicKeysResponse(
                keys=[public_key_pb(k) for k in keys.keys],
                min_version=keys.min_version,
                latest_version=keys.latest_version,
            )

    async def RotateKey(
        self, request: pb.RotateKeyRequest, context: grpc.aio.ServicerContext[pb.RotateKeyRequest, pb.RotateKeyResponse]
    ) -> pb.RotateKeyResponse:
        return pb.RotateKeyResponse(key=public_key_pb(await self.service.rotate()))

    async def SetMinimumKeyVersion(
        self,
        request: pb.SetMinimumKeyVersionRequest,
        context: grpc.aio.ServicerContext[pb.SetMinimumKeyVersionRequest, pb.SetMinimumKeyVersionResponse],
    ) -> pb.SetMinimumKeyVersionResponse:
        return pb.SetMinimumKeyVersionResponse(min_version=await self.service.set_min_version(request.min_version))


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SignerService"].full_name


def add_to_server(server: grpc.aio.Server, service: SignerService) -> list[str]:
    pb_grpc.add_SignerServiceServicer_to_server(SignerServicer(service), server)
    return [SERVICE_NAME]

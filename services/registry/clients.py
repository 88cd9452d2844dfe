"""The signing port's gRPC adapter: calls SignerService.Sign with a deadline and maps failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import grpc

from agentfactory.signer.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.channels import aio_channel
from services.common.grpc_errors import error_from_rpc, watched
from services.common.telemetry import Telemetry
from services.templates.messages import key_set_from_proto, signature_from_proto
from services.templates.signature import PublicKeyVersion, SignatureRecord

WATCH_TIMEOUT_S = 300.0  # a key watch is re-opened when its deadline ends it


@dataclass(frozen=True)
class KeySetSeen:
    """One key set from the signer: what still verifies, and the public keys to remember."""

    live: frozenset[tuple[str, int]]
    keys: list[PublicKeyVersion]
    min_versions: dict[str, int]


class GrpcSigner:
    def __init__(self, target: str, timeout_seconds: float, telemetry: Telemetry) -> None:
        self.target = target
        self.timeout_seconds = timeout_seconds
        self._channel = aio_channel(target, telemetry)
        self._stub = signer_service_pb2_grpc.SignerServiceStub(self._channel)

    async def sign(self, payload: bytes) -> SignatureRecord:
        try:
            reply = await self._stub.Sign(signer_service_pb2.SignRequest(payload=payload), timeout=self.timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, f"the signer at {self.target} signing") from exc
        return signature_from_proto(reply.signature)

    async def live_keys(self) -> frozenset[tuple[str, int]]:
        """(key id, version) of every key version the signer serves now: what a stored signature needs."""
        try:
            reply = await self._stub.GetPublicKeys(
                signer_service_pb2.GetPublicKeysRequest(), timeout=self.timeout_seconds
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, f"the signer at {self.target} listing its keys") from exc
        return frozenset((k.key_id, k.key_version) for k in reply.keys if k.key_version >= reply.min_version)

    async def watch_keys(self) -> AsyncIterator[KeySetSeen]:
        """The signer's key set now and after every change (WatchPublicKeys)."""
        call = self._stub.WatchPublicKeys(signer_service_pb2.WatchPublicKeysRequest(), timeout=WATCH_TIMEOUT_S)
        async with aclosing(watched(call, f"the signer's key watch at {self.target}")) as replies:
            async for reply in replies:
                keys, min_versions = key_set_from_proto(reply)
                yield KeySetSeen(
                    live=frozenset((k.key_id, k.key_version) for k in keys if k.key_version >= reply.min_version),
                    keys=keys,
                    min_versions=min_versions,
                )

    async def close(self) -> None:
        await self._channel.close()

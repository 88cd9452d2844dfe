"""gRPC adapters for the executor's upstreams: the registry (templates, modules, watch) and the signer
(public keys). They translate statuses into domain errors, so the service never sees grpc."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from agentfactory.registry.v1 import registry_service_pb2 as reg_pb2
from agentfactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from agentfactory.signer.v1 import signer_service_pb2 as sig_pb2
from agentfactory.signer.v1 import signer_service_pb2_grpc as sig_grpc
from services.common.errors import FailedPrecondition
from services.common.grpc_errors import error_from_rpc, watched
from services.executor.service import TemplateChange
from services.templates.messages import key_set_from_proto, template_from_proto
from services.templates.published import PublishedTemplate
from services.templates.signature import PublicKeyVersion

UNARY_TIMEOUT_S = 5.0
FETCH_TIMEOUT_S = 30.0
WATCH_TIMEOUT_S = 300.0  # a watch is re-opened from the last revision when its deadline ends it
LIST_PAGE = 500


class RegistryClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = reg_grpc.RegistryServiceStub(channel)

    async def get_template(self, name: str, version: str) -> PublishedTemplate:
        try:
            reply = await self._stub.GetTemplate(
                reg_pb2.GetTemplateRequest(name=name, version=version), timeout=UNARY_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, f"registry GetTemplate {name}@{version}") from exc
        return template_from_proto(reply.template)

    async def fetch_module(self, sha256: str, max_bytes: int) -> bytes:
        data = bytearray()
        try:
            async for chunk in self._stub.FetchModule(
                reg_pb2.FetchModuleRequest(sha256=sha256), timeout=FETCH_TIMEOUT_S
            ):
                if chunk.total_size > max_bytes or len(data) + len(chunk.chunk) > max_bytes:
                    raise FailedPrecondition(
                        f"module {sha256} is larger than the policy's {max_bytes} bytes (rule module.max_bytes)"
                    )
                data += chunk.chunk
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, f"registry FetchModule {sha256}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise FailedPrecondition(f"module fetched for {sha256} hashes to {hashlib.sha256(data).hexdigest()}")
        return bytes(data)

    async def list_published(self) -> list[PublishedTemplate]:
        out: list[PublishedTemplate] = []
        token = ""
        try:
            while True:
                reply = await self._stub.ListTemplates(
                    reg_pb2.ListTemplatesRequest(page_size=LIST_PAGE, page_token=token), timeout=UNARY_TIMEOUT_S
                )
                for message in reply.templates:
                    try:
                        out.append(template_from_proto(message))
                    except FailedPrecondition:
                        continue  # a malformed entry is skipped here and refused if anyone runs it
                token = reply.next_page_token
                if not token:
                    return out
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "registry ListTemplates") from exc

    async def watch(self, after_revision: int) -> AsyncIterator[TemplateChange]:
        call = self._stub.WatchTemplates(
            reg_pb2.WatchTemplatesRequest(after_revision=after_revision), timeout=WATCH_TIMEOUT_S
        )
        async with aclosing(watched(call, "registry WatchTemplates")) as events:
            async for event in events:
                try:
                    template = template_from_proto(event.template)
                except FailedPrecondition:
                    continue
                deprecated = event.kind == reg_pb2.TEMPLATE_EVENT_KIND_DEPRECATED
                yield TemplateChange(event.revision, deprecated, template)


class SignerClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = sig_grpc.SignerServiceStub(channel)

    async def public_keys(self) -> tuple[list[PublicKeyVersion], dict[str, int]]:
        try:
            reply = await self._stub.GetPublicKeys(sig_pb2.GetPublicKeysRequest(), timeout=UNARY_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "signer GetPublicKeys") from exc
        return key_set_from_proto(reply)

    async def watch_keys(self) -> AsyncIterator[tuple[list[PublicKeyVersion], dict[str, int]]]:
        """The signer's key set now and after every change, until the stream's planned deadline."""
        call = self._stub.WatchPublicKeys(sig_pb2.WatchPublicKeysRequest(), timeout=WATCH_TIMEOUT_S)
        async with aclosing(watched(call, "signer WatchPublicKeys")) as replies:
            async for reply in replies:
                yield key_set_from_proto(reply)

"""RegistryService over gRPC: protobuf in, domain call, protobuf out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from agentfactory.registry.v1 import registry_service_pb2 as pb
from agentfactory.registry.v1 import registry_service_pb2_grpc
from agentfactory.registry.v1.template_pb2 import Template
from services.common.errors import InvalidArgument
from services.registry.service import Registry
from services.registry.storage import KIND_DEPRECATED, KIND_PUBLISHED
from services.templates.messages import template_to_proto
from services.templates.published import PublishedTemplate

_KINDS = {
    KIND_PUBLISHED: pb.TEMPLATE_EVENT_KIND_PUBLISHED,
    KIND_DEPRECATED: pb.TEMPLATE_EVENT_KIND_DEPRECATED,
}


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _proto(self, template: PublishedTemplate) -> Template:
        message = template_to_proto(template)
        if self.registry.revoked(template):
            message.signature_revoked = True
        return message

    async def PublishTemplate(
        self,
        request_iterator: AsyncIterator[pb.PublishTemplateRequest],
        context: grpc.aio.ServicerContext[pb.PublishTemplateRequest, pb.PublishTemplateResponse],
    ) -> pb.PublishTemplateResponse:
        messages = aiter(request_iterator)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument("the publish stream is empty; send the header first", field="header") from None
        if first.WhichOneof("part") != "header":
            raise InvalidArgument("the first message of a publish stream must be the header", field="header")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        "only the first message may be the header; the following ones carry module chunks",
                        field="header",
                    )
                yield message.chunk

        files = [(f.path, f.size) for f in first.header.files]
        result = await self.registry.publish(first.header.manifest_json, first.header.module_size, chunks(), files)
        return pb.PublishTemplateResponse(template=self._proto(result.template), created=result.created)

    async def GetTemplate(
        self,
        request: pb.GetTemplateRequest,
        context: grpc.aio.ServicerContext[pb.GetTemplateRequest, pb.GetTemplateResponse],
    ) -> pb.GetTemplateResponse:
        template = await self.registry.get(request.name, request.version)
        return pb.GetTemplateResponse(template=self._proto(template))

    async def ListTemplates(
        self,
        request: pb.ListTemplatesRequest,
        context: grpc.aio.ServicerContext[pb.ListTemplatesRequest, pb.ListTemplatesResponse],
    ) -> pb.ListTemplatesResponse:
        page = await self.registry.list(
            request.name, request.label_selector, request.page_size, request.page_token, request.include_deprecated
        )
        return pb.ListTemplatesResponse(
            templates=[self._proto(t) for t in page.templates], next_page_token=page.next_page_token
        )

    async def FetchModule(
        self,
        request: pb.FetchModuleRequest,
        context: grpc.aio.ServicerContext[pb.FetchModuleRequest, pb.FetchModuleResponse],
    ) -> AsyncIterator[pb.FetchModuleResponse]:
        async for chunk, total in self.registry.fetch_module(request.sha256):
            yield pb.FetchModuleResponse(chunk=chunk, total_size=total)

    async def DeprecateTemplate(
        self,
        request: pb.DeprecateTemplateRequest,
        context: grpc.aio.ServicerContext[pb.DeprecateTemplateRequest, pb.DeprecateTemplateResponse],
    ) -> pb.DeprecateTemplateResponse:
        template = await self.registry.deprecate(request.name, request.version, request.reason)
        return pb.DeprecateTemplateResponse(template=self._proto(template))

    async def ResignTemplates(
        self,
        request: pb.ResignTemplatesRequest,
        context: grpc.aio.ServicerContext[pb.ResignTemplatesRequest, pb.ResignTemplatesResponse],
    ) -> pb.ResignTemplatesResponse:
        result = await self.registry.resign(request.name, request.version, request.all_revoked)
        return pb.ResignTemplatesResponse(
            templates=[self._proto(t) for t in result.templates], unchanged=result.unchanged
        )

    async def WatchTemplates(
        self,
        request: pb.WatchTemplatesRequest,
        context: grpc.aio.ServicerContext[pb.WatchTemplatesRequest, pb.WatchTemplatesResponse],
    ) -> AsyncIterator[pb.WatchTemplatesResponse]:
        async for event in self.registry.watch(request.after_revision):
            response = event.encoded.get("pb")
            if not isinstance(response, pb.WatchTemplatesResponse):  # None: the first watcher to send a live
                # event encodes it for all of them
                response = event.encoded["pb"] = pb.WatchTemplatesResponse(
                    revision=event.revision, kind=_KINDS[event.kind], template=self._proto(event.template)
                )
            yield response

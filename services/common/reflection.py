"""Server reflection as grpcurl, ghz, buf curl and Postman expect it: both protocol versions, every
symbol a client may ask for, and field JSON names in the descriptors.

grpcio-reflection serves only ``grpc.reflection.v1alpha``; newer clients ask ``grpc.reflection.v1``
first. The two protocols have the same messages (same field numbers), so one servicer answers both,
and v1's file descriptor (v1alpha's, renamed) is added to the pool so ``describe`` works for it too.

Two gaps of the stock servicer are closed here:
- a method (``pkg.Service.Method``) is a symbol clients look up (``grpcurl describe`` of a method,
  ghz resolving ``--call``), but the Python descriptor pool finds only services, messages, enums
  and fields; the file of the method's service is the answer;
- descriptors copied from the pool carry no ``json_name``, so a client printing JSON from reflection
  used other field names than one reading the protoset that ``buf build`` makes (which has them).

None of this runs on a service's own RPCs: reflection is a separate stream grpcurl opens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import cache

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as pb
from grpc_reflection.v1alpha._base import BaseReflectionServicer

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _camel(name: str) -> str:
    """protoc's default JSON name of a field: snake_case to lowerCamelCase."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _with_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in message.field:
            if not field.HasField("json_name"):
                field.json_name = _camel(field.name)
        _with_json_names(message.nested_type)


@cache
def _serialized(file: descriptor.FileDescriptor) -> bytes:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    _with_json_names(proto.message_type)
    return proto.SerializeToString()


def _closure(file: descriptor.FileDescriptor) -> list[bytes]:
    """The file and every file it imports, transitively (a client needs them all to build types)."""
    seen: dict[str, descriptor.FileDescriptor] = {}
    todo = [file]
    while todo:
        f = todo.pop()
        if f.name not in seen:
            seen[f.name] = f
            todo.extend(f.dependencies)
    return [_serialized(f) for f in seen.values()]


def _ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Adds grpc/reflection/v1/reflection.proto to the pool: v1alpha's file under v1's package."""
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    proto.name, proto.package = _V1_FILE, "grpc.reflection.v1"
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(proto)


class ReflectionServicer(BaseReflectionServicer):
    """Answers ServerReflectionInfo for both protocol versions (registered twice, see enable)."""

    # Set and defined by BaseReflectionServicer (grpcio-reflection); its stubs leave these private parts out.
    _pool: descriptor_pool.DescriptorPool
    _file_containing_extension: Callable[[pb.ServerReflectionRequest, str, int], pb.ServerReflectionResponse]
    _all_extension_numbers_of_type: Callable[[pb.ServerReflectionRequest, str], pb.ServerReflectionResponse]
    _list_services: Callable[[pb.ServerReflectionRequest], pb.ServerReflectionResponse]

    def _files(
        self, request: pb.ServerReflectionRequest, file: descriptor.FileDescriptor
    ) -> pb.ServerReflectionResponse:
        return pb.ServerReflectionResponse(
            file_descriptor_response=pb.FileDescriptorResponse(file_descriptor_proto=_closure(file)),
            original_request=request,
        )

    def _not_found(self, request: pb.ServerReflectionRequest, what: str) -> pb.ServerReflectionResponse:
        # The symbol or file name comes from the client: say what was missing without echoing it all.
        return pb.ServerReflectionResponse(
            error_response=pb.ErrorResponse(error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message=what),
            original_request=request,
        )

    def _file_by_filename(self, request: pb.ServerReflectionRequest, filename: str) -> pb.ServerReflectionResponse:
        try:
            return self._files(request, self._pool.FindFileByName(filename))
        except KeyError:
            return self._not_found(request, "file not found")

    def _file_containing_symbol(self, request: pb.ServerReflectionRequest, symbol: str) -> pb.ServerReflectionResponse:
        try:
            return self._files(request, self._pool.FindFileContainingSymbol(symbol))
        except KeyError:
            pass
        # pkg.Service.Method: the pool knows the service, and the method lives in its file.
        service_name, _, method_name = symbol.rpartition(".")
        try:
            service = self._pool.FindServiceByName(service_name)
        except KeyError:
            return self._not_found(request, "symbol not found")
        if method_name not in service.methods_by_name:
            return self._not_found(request, "symbol not found")
        return self._files(request, service.file)

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterator[pb.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[pb.ServerReflectionRequest, pb.ServerReflectionResponse],
    ) -> AsyncIterator[pb.ServerReflectionResponse]:
        async for request in request_iterator:
            kind = request.WhichOneof("message_request")
            if kind == "file_by_filename":
                yield self._file_by_filename(request, request.file_by_filename)
            elif kind == "file_containing_symbol":
                yield self._file_containing_symbol(request, request.file_containing_symbol)
            elif kind == "file_containing_extension":
                ext = request.file_containing_extension
                yield self._file_containing_extension(request, ext.containing_type, ext.extension_number)
            elif kind == "all_extension_numbers_of_type":
                yield self._all_extension_numbers_of_type(request, request.all_extension_numbers_of_type)
            elif kind == "list_services":
                yield self._list_services(request)
            else:
                yield pb.ServerReflectionResponse(
                    error_response=pb.ErrorResponse(
                        error_code=grpc.StatusCode.INVALID_ARGUMENT.value[0], error_message="empty reflection request"
                    ),
                    original_request=request,
                )


def enable(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Serves reflection v1 and v1alpha for ``service_names`` (plus the two reflection services)."""
    pool = descriptor_pool.Default()
    _ensure_v1_descriptor(pool)
    servicer = ReflectionServicer([*service_names, V1, V1ALPHA], pool=pool)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=pb.ServerReflectionRequest.FromString,
        response_serializer=pb.ServerReflectionResponse.SerializeToString,
    )
    for name in (V1, V1ALPHA):
        # As generated code registers a service: registered methods are found by exact path, so the
        # server's lookup for every other call (RunAgent included) is what it was.
        methods = {"ServerReflectionInfo": handler}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, methods),))
        server.add_registered_method_handlers(name, methods)


def api_service_names() -> list[str]:
    """Every service of the Agent Factory API: what the gateway's reflection upstream describes, since
    every client's reflection call reaches that one service (mesh/topology.yaml reflection_upstream)."""
    from agentfactory.executor.v1 import executor_service_pb2
    from agentfactory.registry.v1 import registry_service_pb2
    from agentfactory.scheduler.v1 import scheduler_service_pb2
    from agentfactory.signer.v1 import signer_service_pb2

    modules = (registry_service_pb2, signer_service_pb2, executor_service_pb2, scheduler_service_pb2)
    return [svc.full_name for m in modules for svc in m.DESCRIPTOR.services_by_name.values()]

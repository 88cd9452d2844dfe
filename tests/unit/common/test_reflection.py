"""Server reflection answers what grpcurl, ghz and buf curl ask (services/common/reflection.py)."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as pb

from services.common import reflection

API = reflection.api_service_names()


def _servicer() -> reflection.ReflectionServicer:
    reflection._ensure_v1_descriptor(descriptor_pool.Default())
    return reflection.ReflectionServicer([*API, reflection.V1, reflection.V1ALPHA])


def _files(reply: pb.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
    out = {}
    for raw in reply.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        out[proto.name] = proto
    return out


def test_the_whole_api_is_listed() -> None:
    assert API == [
        "agentfactory.registry.v1.RegistryService",
        "agentfactory.signer.v1.SignerService",
        "agentfactory.executor.v1.ExecutorService",
        "agentfactory.scheduler.v1.SchedulerService",
    ]
    listed = [s.name for s in _servicer()._list_services(pb.ServerReflectionRequest()).list_services_response.service]
    assert set(listed) == {*API, reflection.V1, reflection.V1ALPHA}


def test_every_method_resolves_to_its_file_with_imports() -> None:
    servicer = _servicer()
    pool = descriptor_pool.Default()
    for name in API:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            files = _files(servicer._file_containing_symbol(pb.ServerReflectionRequest(), method.full_name))
            assert service.file.name in files, method.full_name
            assert {d.name for d in service.file.dependencies} <= set(files), method.full_name


def test_unknown_symbols_and_files_are_not_found_without_echoing_them() -> None:
    servicer = _servicer()
    long_name = "agentfactory.scheduler.v1.SchedulerService." + "x" * 10_000
    for reply in (
        servicer._file_containing_symbol(pb.ServerReflectionRequest(), long_name),
        servicer._file_containing_symbol(pb.ServerReflectionRequest(), "no.such.Symbol"),
        servicer._file_by_filename(pb.ServerReflectionRequest(), "x" * 10_000),
    ):
        assert reply.error_response.error_code == 5  # NOT_FOUND
        assert len(reply.error_response.error_message) < 40


def test_fields_carry_json_names_like_a_buf_protoset() -> None:
    files = _files(_servicer()._file_containing_symbol(pb.ServerReflectionRequest(), API[-1]))
    (scheduler,) = [f for name, f in files.items() if name.endswith("scheduler_service.proto")]
    agent = next(m for m in scheduler.message_type if m.name == "Agent")
    assert {f.name: f.json_name for f in agent.field}["template_name"] == "templateName"
    assert all(f.json_name for m in scheduler.message_type for f in m.field)


def test_v1_is_v1alpha_under_its_own_package() -> None:
    _servicer()
    service = descriptor_pool.Default().FindServiceByName(reflection.V1)
    (method,) = service.methods
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming

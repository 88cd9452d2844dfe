"""Server reflection served on a loopback port, in process: both protocol versions answer under their
method paths as grpcurl and ghz call them (the servicer's answers: tests/unit/common/test_reflection.py)."""

from __future__ import annotations

import grpc
from grpc_reflection.v1alpha import reflection_pb2 as pb

from services.common import reflection

API = reflection.api_service_names()


async def test_both_versions_answer_on_a_served_port() -> None:
    # In process, on loopback: the same servicer under both method paths, as grpcurl and ghz call them.
    server = grpc.aio.server()
    reflection.enable(server, API)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for service in (reflection.V1, reflection.V1ALPHA):
                call = channel.stream_stream(
                    f"/{service}/ServerReflectionInfo",
                    request_serializer=pb.ServerReflectionRequest.SerializeToString,
                    response_deserializer=pb.ServerReflectionResponse.FromString,
                )
                replies = [r async for r in call(iter([pb.ServerReflectionRequest(list_services="")]), timeout=10)]
                names = {s.name for s in replies[0].list_services_response.service}
                assert set(API) <= names and reflection.V1 in names, service
    finally:
        await server.stop(None)
